#!/usr/bin/env bash
# Baseline, baseline fine-tuned as long as PoseAug (control), Variant A and PoseAug on real
# Human3.6M with the CPU-sized protocol; prints a table of every run's metrics.json.
#   bash scripts/h36m_cpu_ablation.sh /path/to/h36m [extra overrides...]
set -euo pipefail
ROOT=${1:?usage: $0 H36M_ROOT [overrides...]}; shift || true
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-outputs/h36m_cpu_ablation}
run() {  # name, overrides...
  local name=$1; shift
  $PY -m poseaug_pl.train "$@" data.root="$ROOT" hydra.run.dir="$OUT/$name" \
      callbacks.progress_bar.refresh_rate=0 "${EXTRA[@]}"
}
EXTRA=("$@")
run baseline experiment=baseline_h36m_cpu
BASE="$OUT/baseline/checkpoints/best.ckpt"
run baseline_ft experiment=baseline_h36m_cpu trainer.max_epochs=8 model.lr.estimator=1e-4 \
    experiment_name=baseline_ft_h36m_cpu model.estimator_ckpt="$BASE"
run variant_a experiment=variant_a_h36m_cpu model.estimator_ckpt="$BASE"
run poseaug experiment=poseaug_h36m_cpu model.estimator_ckpt="$BASE"
for r in baseline baseline_ft variant_a poseaug; do  # the last epoch of every run, too
  $PY -m poseaug_pl.evaluate ckpt_path="$OUT/$r/checkpoints/last.ckpt" \
      hydra.run.dir="$OUT/last/$r" > /dev/null  # the run's own data config
done
echo "== best.ckpt (selected on validation MPJPE)"
$PY -m poseaug_pl.compare "$OUT"/baseline "$OUT"/baseline_ft "$OUT"/variant_a "$OUT"/poseaug
echo "== last.ckpt"
$PY -m poseaug_pl.compare "$OUT"/last/baseline "$OUT"/last/baseline_ft "$OUT"/last/variant_a "$OUT"/last/poseaug
