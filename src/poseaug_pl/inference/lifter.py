"""Lift anyone's 2D keypoints to 3D with a trained estimator: `Lifter` and `prepare`.

    from poseaug_pl import Lifter
    lifter = Lifter.from_checkpoint("outputs/train/poseaug_h36m/.../checkpoints/best.ckpt")
    pose3d = lifter.lift(keypoints, image_size=(1920, 1080), layout="coco")  # (N, 16, 3) metres

The estimator takes PoseAug's 16 joints in normalised screen coordinates
(`poseaug_pl.geometry.camera.normalize_screen_coordinates`: ``x / w * 2 - [1, h / w]``) and returns
root-relative camera-frame joints in metres (x right, y down, z away from the camera).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from poseaug_pl.data.keypoints import Keypoints, from_array
from poseaug_pl.data.layouts import (
    LayoutError,
    check_layout,
    detect_layout,
    fill_from_track,
    to_poseaug16,
)
from poseaug_pl.data.poseset import DataError
from poseaug_pl.geometry.camera import (
    QUARTER,
    UPRIGHT_DEGREES,
    normalize_screen_coordinates,
    quarter_turns,
    roll_points,
)
from poseaug_pl.geometry.skeleton import NUM_JOINTS, flip_average
from poseaug_pl.models.ckpt import build_network, load_weights, read_checkpoint, sub_state

#: A keypoint lies *outside* the image when it is present (score at least ``min_score``) and
#: more than this share of the image's larger side beyond an edge: ``x < -m``, ``x > w + m``,
#: ``y < -m`` or ``y > h + m`` with ``m = OUTSIDE_MARGIN * max(w, h)``. Detectors place joints a
#: little past the frame (a cut-off foot); far beyond it the keypoints are in other units or the
#: image size is wrong, and the estimator, trained on people inside the frame, extrapolates.
OUTSIDE_MARGIN = 0.1


@dataclass
class Prepared:
    """Keypoints made ready for the estimator.

    Attributes:
        pose2d: (N, 16, 2) float32 normalised 2D (NaN in rows that are not valid).
        valid: (N,) bool: every joint present (given or filled).
        layout: the layout the input was read as.
        filled: joints filled from neighbouring frames of their track.
        outside: (N,) bool: the pose has a keypoint outside the image (`OUTSIDE_MARGIN`). Such
            poses are still lifted where valid; their 3D is an extrapolation.
        outside_points: how many given keypoints (in the input's layout) lie outside the image.
    """

    pose2d: np.ndarray
    valid: np.ndarray
    layout: str
    filled: int
    outside: np.ndarray
    outside_points: int

    def outside_warning(self) -> str | None:
        """One line about the poses with keypoints outside the image, or None if there are none."""
        if not self.outside.any():
            return None
        return (f"{int(self.outside.sum())} of {len(self.outside)} poses have keypoints outside "
                f"the image ({self.outside_points} keypoints more than {OUTSIDE_MARGIN:.0%} of its "
                "larger side past an edge): lifted, but their 3D is unreliable; check the image "
                "size and that the keypoints are pixels")  # fmt: skip


#: Image sizes accepted, in pixels (a thumbnail to a gigapixel panorama's side).
MIN_IMAGE_PX, MAX_IMAGE_PX = 16, 65536
#: A person's keypoints span at least this many pixels (a median below it means another unit).
MIN_POSE_SPAN_PX = 4.0


def prepare(kp: Keypoints, layout: str = "auto", min_score: float = 0.3, fill: bool = True,
            image_size=None, require_valid: bool = True) -> Prepared:  # fmt: skip
    """Convert read keypoints to the estimator's normalised 16-joint input.

    Args:
        kp: keypoints as read (`poseaug_pl.data.keypoints.read_keypoints` or `from_array`).
        layout: ``auto`` (the file's own layout, else by joint count and geometry) or one of
            `poseaug_pl.data.layouts.LAYOUTS`; a named layout the keypoints do not fit is refused.
        min_score: points scored below this are missing.
        fill: fill missing joints from the same track's neighbouring frames.
        image_size: ``(width, height)`` pixels, used where the file carries no image size.
        require_valid: raise if no pose can be completed (else return them all invalid).

    Raises:
        DataError: no image size, a layout that does not fit (or, with ``auto``, none that can
            be told with confidence: `poseaug_pl.data.layouts.detect_layout`), no pose left to
            lift, keypoints that are not pixels (beyond twice `MAX_IMAGE_PX`, or poses spanning
            less than `MIN_POSE_SPAN_PX`), an image size outside `MIN_IMAGE_PX` ..
            `MAX_IMAGE_PX`.
    """
    present = (kp.score >= min_score) & (kp.score > 0)  # a score of 0 is a missing point
    if present.any():  # pixels, before anything reads their shape
        xy = kp.xy[present]
        if not (np.abs(xy) <= MAX_IMAGE_PX * 2).all():
            raise DataError(f"keypoints must be pixels of the image: a coordinate of "
                            f"{np.abs(xy).max():.3g} is not one")  # fmt: skip
        rows = present.any(1)  # poses with a point
        per_pose = np.where(present[rows, :, None], kp.xy[rows], np.nan)
        span = np.nanmax(per_pose, 1) - np.nanmin(per_pose, 1)  # (N, 2) extent of each pose
        typical = float(np.median(span.max(1)))
        if typical < MIN_POSE_SPAN_PX:
            raise DataError(f"keypoints must be pixels: the median pose spans {typical:.3g} "
                            "(metres or normalised coordinates?); convert them to pixels of "
                            "the image")  # fmt: skip
    try:
        if layout == "auto":
            layout = kp.layout or detect_layout(kp.xy, present)
        check_layout(kp.xy, present, layout)
    except LayoutError as e:
        raise DataError(str(e)) from None
    size = np.full((len(kp), 2), np.nan) if kp.image_size is None else kp.image_size.copy()
    unknown = np.isnan(size).any(1)  # rows whose source has no image size
    if unknown.any():
        if image_size is None or any(v is None for v in image_size):
            raise DataError(f"the input ({kp.kind}) carries no image size for {int(unknown.sum())} "
                            "poses: pass image_width= and image_height= (pixels)")  # fmt: skip
        size[unknown] = np.asarray(image_size, dtype=np.float64)
    if not ((size >= MIN_IMAGE_PX) & (size <= MAX_IMAGE_PX)).all():
        bad = size[~((size >= MIN_IMAGE_PX) & (size <= MAX_IMAGE_PX)).all(1)][0]
        raise DataError(f"image width and height must be {MIN_IMAGE_PX} to {MAX_IMAGE_PX:,} "
                        f"pixels, got {bad[0]:g} x {bad[1]:g}")  # fmt: skip
    margin = OUTSIDE_MARGIN * size.max(1)[:, None, None]
    beyond = present & ((kp.xy < -margin) | (kp.xy > size[:, None, :] + margin)).any(-1)
    if not present.any():
        raise DataError(f"no keypoint has a score of at least min_score={min_score}")
    xy16, ok16 = to_poseaug16(kp.xy, present, layout)
    if fill:
        xy16 = fill_from_track(xy16, kp.track, kp.frame)
    have = ~np.isnan(xy16[..., 0])
    valid = have.all(1)
    if require_valid and not valid.any():
        raise DataError(
            f"no pose has all {NUM_JOINTS} joints with a score of at least "
            f"min_score={min_score} (after filling from neighbouring frames)"
        )
    norm = (
        normalize_screen_coordinates(
            torch.from_numpy(xy16), torch.from_numpy(size[:, 0:1]), torch.from_numpy(size[:, 1:2])
        )
        .numpy()
        .astype(np.float32)
    )
    valid = valid & np.isfinite(norm).all((1, 2))  # (pixels beyond float32's range: not a pose)
    return Prepared(norm, valid, layout, int((have & ~ok16).sum()),
                    beyond.any(1), int(beyond.sum()))  # fmt: skip


def load_estimator(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The estimator of a training checkpoint, in eval mode.

    Built by name from the package's own networks (`poseaug_pl.models.registry`) with the
    checkpoint's plain arguments; nothing in the file is imported or called.

    Raises:
        DataError: a missing file, a file that is not a poseaug-pl checkpoint, an unknown
            network, or weights that do not fit it (one line naming the file).
    """
    ckpt = read_checkpoint(path)
    estimator = build_network(ckpt, path, "estimator")
    load_weights(estimator, sub_state(ckpt, "estimator"), path, "the checkpoint's estimator")
    return estimator.to(device).eval()


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given.

    Raises:
        DataError: not a device name, or CUDA without a visible GPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise DataError(f"device={device!r} is not a device ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device={device} but no GPU is visible on this machine: use device=cpu")
    return device


class Lifter:
    """A trained estimator wrapped for inference on 2D keypoints.

    Args:
        estimator: (B, 16, 2) normalised 2D -> (B, 16, 3) root-relative metres.
        device: where it runs (``auto``, ``cpu``, ``cuda``, ...).
        flip: average with the left-right mirrored prediction (the cross-dataset protocol's
            test-time augmentation).
        batch_size: poses per forward pass.
    """

    def __init__(self, estimator: torch.nn.Module, device="cpu", flip: bool = True,
                 batch_size: int = 4096):  # fmt: skip
        self.device = resolve_device(device)
        self.estimator = estimator.to(self.device).eval()
        self.flip = flip
        self.batch_size = batch_size
        #: seconds spent in the estimator by the latest `lift_normalised` call
        self.last_seconds = 0.0

    @classmethod
    def from_checkpoint(cls, path: str | Path, device="cpu", **kwargs) -> Lifter:
        """A `Lifter` with the estimator of a ``train`` checkpoint (best.ckpt or last.ckpt)."""
        return cls(load_estimator(path), device=device, **kwargs)

    @torch.no_grad()
    def lift_normalised(self, pose2d) -> np.ndarray:
        """(N, 16, 2) normalised 2D (array or tensor) -> (N, 16, 3) float32 root-relative metres."""
        x = torch.as_tensor(pose2d if isinstance(pose2d, torch.Tensor) else np.asarray(pose2d))
        x = x.float()
        if x.ndim != 3 or x.shape[1:] != (NUM_JOINTS, 2):
            raise ValueError(f"pose2d must be (N, 16, 2), got {tuple(x.shape)}")
        t0 = time.perf_counter()
        out = []
        for chunk in x.split(self.batch_size):
            chunk = chunk.to(self.device)
            y = flip_average(self.estimator, chunk) if self.flip else self.estimator(chunk)
            out.append(y.float().cpu())
        self.last_seconds = time.perf_counter() - t0
        return torch.cat(out).numpy() if out else np.zeros((0, NUM_JOINTS, 3), np.float32)

    def lift_upright(self, pose2d) -> tuple[np.ndarray, int]:
        """`lift_normalised` of one piece of footage, turned upright first when it was filmed
        sideways or upside down (`geometry.camera.quarter_turns` of its poses): the 2D turns
        about the image centre, the lifted 3D turns back, so the result is in the footage's
        own camera frame. Returns the 3D and the degrees the input was turned (0: as given)."""
        x = torch.as_tensor(np.asarray(pose2d), dtype=torch.float32)
        k = quarter_turns(x) if len(x) else 0
        if not k:
            return self.lift_normalised(x), 0
        lifted = torch.as_tensor(self.lift_normalised(roll_points(x, -k * QUARTER)))
        return roll_points(lifted, k * QUARTER).numpy(), UPRIGHT_DEGREES[k]

    def lift(self, keypoints, image_size, layout: str = "coco", min_score: float = 0.3,
             fill: bool = True, on_invalid: str = "raise",
             upright: bool = True) -> np.ndarray:  # fmt: skip
        """Lift pixel keypoints of one track (the rows are frames in order) to 3D.

        Args:
            keypoints: (N, J, 2) pixels, (N, J, 3) pixels and score, or one pose (J, 2|3).
            image_size: ``(width, height)`` in pixels.
            layout: ``coco``, ``h36m17``, ``poseaug16`` or ``auto``.
            min_score: points scored below this are missing (filled from neighbouring frames
                when ``fill``).
            on_invalid: ``raise`` (a pose that cannot be completed is an error) or ``nan`` (its
                row is NaN).
            upright: lift a track filmed sideways turned upright (`lift_upright`); False: as
                given.

        Returns:
            (N, 16, 3) float32 root-relative camera-frame joints in metres (PoseAug's order).

        Warns (``UserWarning``, one line) when keypoints lie outside the image
        (`OUTSIDE_MARGIN`); those poses are lifted all the same.
        """
        if on_invalid not in ("raise", "nan"):
            raise ValueError(f"on_invalid must be 'raise' or 'nan', got {on_invalid!r}")
        prep = prepare(from_array(keypoints), layout, min_score, fill, image_size,
                       require_valid=on_invalid == "raise")  # fmt: skip
        if (message := prep.outside_warning()) is not None:
            warnings.warn(message, UserWarning, stacklevel=2)
        if on_invalid == "raise" and not prep.valid.all():
            raise DataError(
                f"{int((~prep.valid).sum())} of {len(prep.valid)} poses miss joints "
                "that could not be filled; pass on_invalid='nan' to get NaN rows"
            )
        out = np.full((len(prep.valid), NUM_JOINTS, 3), np.nan, np.float32)
        valid = prep.pose2d[prep.valid]
        out[prep.valid] = self.lift_upright(valid)[0] if upright else self.lift_normalised(valid)
        return out
