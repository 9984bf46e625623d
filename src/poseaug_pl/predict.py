"""``python -m poseaug_pl.predict ckpt_path=CKPT input=FILE output=OUT.npz``: lift 2D keypoints.

Reads a COCO keypoint file, a VideoPose3D custom 2D npz or a plain (N, J, 2|3) array
(`poseaug_pl.data.keypoints`), converts it to PoseAug's 16 joints (`poseaug_pl.data.layouts`), fills
missing joints from neighbouring frames of the same track, lifts every complete pose with the
checkpoint's estimator (`poseaug_pl.inference.lifter.Lifter`) and writes ``OUT.npz``:

* ``pose3d`` (N, 16, 3) float32 root-relative camera-frame metres (NaN where ``valid`` is false);
* ``pose2d`` (N, 16, 2) float32 the normalised 2D input as given, before any upright turn (NaN
  where not valid);
* ``valid`` (N,) bool; ``frame`` (N,) int64; ``track`` (N,) str (video name, ``""`` for lone
  images); ``image_id`` (N,) int64 (COCO image id, -1 elsewhere); ``joint_names`` (16,) str;
* ``outside`` (N,) bool: the pose has a keypoint (score at least ``min_score``) more than 10% of
  the image's larger side beyond an edge of its image (`lifter.OUTSIDE_MARGIN`).
  Such poses are lifted all the same (``valid`` does not change) but their 3D is an
  extrapolation; the summary says how many poses and keypoints with one ``warning`` line.

``layout=auto`` takes the file's own layout, else guesses it from the joint count and geometry
only with confidence (`poseaug_pl.data.layouts.detect_layout`): keypoints that look like no layout
(noise) are refused. Bad input ends with one ``error:`` line, exit code 2 and no output file; an
output file that cannot be written (read-only folder, disk full) with one ``error:`` line and
exit code 1, every file written so far complete (each one atomically), the one that failed
absent or unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from poseaug_pl.cli import entry_point
from poseaug_pl.data.keypoints import read_keypoints
from poseaug_pl.data.layouts import LAYOUTS
from poseaug_pl.geometry.skeleton import JOINT_NAMES
from poseaug_pl.inference.lifter import Lifter, load_estimator, prepare
from poseaug_pl.training.config import ConfigError
from poseaug_pl.utils import atomic_output, check_writable


def check(cfg: DictConfig) -> None:
    """Refuse settings of the wrong kind before any work is done."""
    if cfg.layout not in ("auto", *LAYOUTS):
        raise ConfigError(f"config: layout must be auto or one of {', '.join(LAYOUTS)}, "
                          f"got {cfg.layout!r}")  # fmt: skip
    if not str(cfg.output).endswith(".npz"):
        raise ConfigError(f"config: output must be a .npz file, got {cfg.output!r}")
    if (
        not isinstance(cfg.min_score, (int, float))
        or isinstance(cfg.min_score, bool)
        or not (0 <= cfg.min_score <= 1)
    ):
        raise ConfigError(f"config: min_score must be a number in [0, 1], got {cfg.min_score!r}")
    for key in ("flip", "upright", "fill_missing"):
        if not isinstance(cfg.get(key, True), bool):
            raise ConfigError(f"config: {key} must be true or false, got {cfg.get(key)!r}")
    for key in ("batch_size", "figure_frames", "animation_frames", "fps"):
        v = cfg.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"config: {key} must be an integer >= 1, got {v!r}")
    for key in ("image_width", "image_height"):
        v = cfg.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
            raise ConfigError(f"config: {key} must be a positive number of pixels, got {v!r}")
    if cfg.get("figure") and not str(cfg.figure).endswith(".png"):
        raise ConfigError(f"config: figure must be a .png file, got {cfg.figure!r}")
    if cfg.get("animation") and not str(cfg.animation).endswith((".gif", ".mp4")):
        raise ConfigError(f"config: animation must be a .gif or .mp4 file, got {cfg.animation!r}")
    if cfg.get("animation") and str(cfg.animation).endswith(".mp4"):
        from matplotlib import animation

        if not animation.writers.is_available("ffmpeg"):
            raise ConfigError("config: an .mp4 animation needs ffmpeg on the PATH; use .gif")
    for key in ("output", "figure", "animation"):  # every named file, before any is written
        if cfg.get(key):
            check_writable(cfg[key])


def predict(cfg: DictConfig) -> dict:
    """Run the command; returns the summary numbers (also printed)."""
    check(cfg)
    kp = read_keypoints(cfg.input)
    prep = prepare(kp, cfg.layout, float(cfg.min_score), bool(cfg.fill_missing),
                   (cfg.image_width, cfg.image_height))  # fmt: skip
    lifter = Lifter(load_estimator(cfg.ckpt_path), device=cfg.device, flip=bool(cfg.flip),
                    batch_size=int(cfg.batch_size))  # fmt: skip
    pose3d = np.full((len(kp), len(JOINT_NAMES), 3), np.nan, np.float32)
    if cfg.get("upright", True):
        pose3d[prep.valid], turned = lifter.lift_upright(prep.pose2d[prep.valid])
    else:
        pose3d[prep.valid], turned = lifter.lift_normalised(prep.pose2d[prep.valid]), 0
    pose2d = np.where(prep.valid[:, None, None], prep.pose2d, np.nan).astype(np.float32)
    names = np.array([kp.tracks[t] if t >= 0 else "" for t in kp.track])
    with atomic_output(cfg.output) as tmp, open(tmp, "wb") as f:
        np.savez(f, pose3d=pose3d, pose2d=pose2d, valid=prep.valid, frame=kp.frame,
                 track=names, image_id=kp.image_id, joint_names=np.array(JOINT_NAMES),
                 outside=prep.outside)  # fmt: skip
    n_valid = int(prep.valid.sum())
    summary = {"poses": len(kp), "lifted": n_valid, "dropped": len(kp) - n_valid,
               "filled_joints": prep.filled, "outside_poses": int(prep.outside.sum()),
               "outside_points": prep.outside_points, "seconds": lifter.last_seconds,
               "poses_per_second": n_valid / max(lifter.last_seconds, 1e-9)}  # fmt: skip
    print(f"input    {cfg.input} ({kp.kind}, {len(kp)} poses, layout {prep.layout})")
    print(f"lifted   {n_valid} poses in {lifter.last_seconds:.2f} s "
          f"({summary['poses_per_second']:,.0f} poses/s) on {lifter.device}"
          f"{', flip test-time augmentation' if cfg.flip else ''}")  # fmt: skip
    if turned:
        print("upright  the input is filmed sideways or upside down: lifted turned upright "
              f"({turned:+d} degrees; upright=false: as given); pose3d is in the input's own "
              "camera frame")  # fmt: skip
    print(f"filled   {prep.filled} joints from neighbouring frames of their track")
    print(f"dropped  {summary['dropped']} poses with joints below min_score={cfg.min_score} that "
          "could not be filled (valid=false, NaN rows)")  # fmt: skip
    if (warning := prep.outside_warning()) is not None:
        print(f"warning  {warning} (outside=true in the output)")
    print(f"output   {cfg.output}: pose3d (N,16,3) root-relative metres, pose2d, valid, frame, "
          "track, image_id, outside")  # fmt: skip
    _draw(cfg, pose2d, pose3d, prep.valid, kp.track)
    return summary


def _draw(cfg, pose2d, pose3d, valid, track) -> None:
    """The optional figure (a few frames) and animation (the first track's valid frames)."""
    from poseaug_pl.evaluation import viz

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    rows = np.flatnonzero(valid)
    if cfg.get("figure"):
        pick = rows[
            np.linspace(0, len(rows) - 1, min(int(cfg.figure_frames), len(rows))).astype(int)
        ]
        fig = viz.pose_grid(pose3d[pick], pose2d[pick], [f"pose {i}" for i in pick],
                            cols=min(len(pick), 6))  # fmt: skip
        with atomic_output(cfg.figure) as tmp:
            fig.savefig(tmp, dpi=90, format=Path(cfg.figure).suffix.lstrip(".").lower() or "png")
        viz.close(fig)
        print(f"figure   {cfg.figure}")
    if cfg.get("animation"):
        seq = rows[track[rows] == track[rows[0]]][: int(cfg.animation_frames)]
        with atomic_output(cfg.animation, keep_suffix=True) as tmp:
            viz.lift_animation(pose2d[seq], pose3d[seq], tmp, fps=int(cfg.fps))
        print(f"animation {cfg.animation} ({len(seq)} frames)")


main = entry_point("predict", predict)


if __name__ == "__main__":
    main()
