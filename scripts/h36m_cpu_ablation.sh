#!/usr/bin/env bash
# The CPU-sized real-data ablation of PoseAug (docs/results.md, "MPI-INF-3DHP family: MuPoTS-3D
# development half"). Per seed: a baseline
# near its plateau, a stand-alone augmentor pretraining, then three equal-budget continuations of
# the baseline (the same number of estimator updates): control (real pairs only), Variant A
# (augmentation without feedback) and PoseAug; every run tested at its last epoch on Human3.6M
# S9/S11, synthetic_wild, the HumanEva-I and MuPoTS-3D development sets, and on raised-camera
# copies of S9/S11, HumanEva-I and MuPoTS-3D (the same poses seen from 20-50 degrees higher).
# Prints the seed table and writes OUT/summary.json (seed means) and OUT/summary_std.json.
#
#   bash scripts/h36m_cpu_ablation.sh H36M_ROOT [hydra overrides for every run...]
#   env: SEEDS (3), FIRST_SEED (0: seeds FIRST_SEED .. FIRST_SEED+SEEDS-1), OUT (outputs/h36m_cpu_ablation), HUMANEVA (the HumanEva-I npz; default
#        ../shared/data/humaneva/humaneva_train_16j.npz when present), MUPOTS (the MuPoTS-3D
#        development set; default ../shared/data/mupots3d/mupots_dev_16j.npz when present),
#        PYTHON (.venv/bin/python),
#        RAISED (20,50: the raised-camera range in degrees; empty: no raised copies)
# Finished runs (OUT/seed<k>/<run>/.done) are reused, so an interrupted ablation resumes.
set -euo pipefail
ROOT=${1:?usage: $0 H36M_ROOT [overrides...]}; shift || true
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-outputs/h36m_cpu_ablation}
SEEDS=${SEEDS:-3}
FIRST_SEED=${FIRST_SEED:-0}
HUMANEVA=${HUMANEVA:-../shared/data/humaneva/humaneva_train_16j.npz}
MUPOTS=${MUPOTS:-../shared/data/mupots3d/mupots_dev_16j.npz}
RAISED=${RAISED-20,50}
EXTRA=("$@")
CROSS=()
if [[ -f "$HUMANEVA" ]]; then
  CROSS+=("+data.cross_sets.humaneva_dev=$(realpath "$HUMANEVA")")
else
  echo "warning: HumanEva-I development set not found at $HUMANEVA (set HUMANEVA=...)" >&2
fi
if [[ -f "$MUPOTS" ]]; then
  CROSS+=("+data.cross_sets.mupots_dev=$(realpath "$MUPOTS")")
else
  echo "warning: MuPoTS-3D development set not found at $MUPOTS (set MUPOTS=...)" >&2
fi
if [[ -n "$RAISED" ]]; then CROSS+=("data.raised_camera=[$RAISED]"); fi
ROOT=$(realpath -m "$ROOT")  # absolute, so `evaluate` finds the data from any folder later

run() {  # folder, overrides...: train unless the folder already holds a finished run
  local dir=$1; shift
  if [[ -f "$dir/.done" ]]; then echo "== reuse $dir"; return; fi
  echo "== $(date +%H:%M:%S) train $dir"
  rm -rf "$dir"
  $PY -m poseaug_pl.train "$@" data.root="$ROOT" hydra.run.dir="$dir" test_ckpt=last \
      callbacks.progress_bar.refresh_rate=0 "${CROSS[@]}" "${EXTRA[@]}" > "$dir.log" 2>&1 \
    || { echo "error: $dir failed; last lines of $dir.log:" >&2; tail -n 20 "$dir.log" >&2; exit 1; }
  touch "$dir/.done"
}

mkdir -p "$OUT"
start=$(date +%s)
for ((s = FIRST_SEED; s < FIRST_SEED + SEEDS; s++)); do
  D="$OUT/seed$s"; mkdir -p "$D"
  run "$D/baseline" experiment=baseline_h36m_cpu seed=$s
  run "$D/augmentor" experiment=augmentor_h36m_cpu seed=$s
  BASE="model.estimator_ckpt=$(realpath "$D/baseline/checkpoints/last.ckpt")"
  AUG="model.augmentor_ckpt=$(realpath "$D/augmentor/checkpoints/last.ckpt")"
  run "$D/control" experiment=control_h36m_cpu seed=$s "$BASE"
  run "$D/variant_a" experiment=variant_a_h36m_cpu seed=$s "$BASE" "$AUG"
  run "$D/poseaug" experiment=poseaug_h36m_cpu seed=$s "$BASE" "$AUG"
done
echo "== ablation done in $(( ($(date +%s) - start) / 60 )) min"
$PY -m poseaug_pl.ablation "$OUT"
