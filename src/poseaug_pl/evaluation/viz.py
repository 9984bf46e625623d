"""Headless matplotlib figures of 16-joint skeletons (left side blue, right side red)."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # headless PNGs; notebooks keep their inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from poseaug_pl.geometry import skeleton  # noqa: E402
from poseaug_pl.utils import atomic_output  # noqa: E402

LEFT_COLOR, RIGHT_COLOR, CENTRE_COLOR = "tab:blue", "tab:red", "0.25"


def bone_color(k: int) -> str:
    """Colour of bone ``k``: blue for the subject's left, red for the right, grey in the middle."""
    if k in skeleton.LEFT_BONES:
        return LEFT_COLOR
    return RIGHT_COLOR if k in skeleton.RIGHT_BONES else CENTRE_COLOR


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def draw_2d(ax, pose2d, title: str | None = None, limits=None) -> None:
    """Draw a (16, 2) pose in normalised screen coordinates (image y points down).

    Args:
        limits: optional ``(xmin, xmax, ymin, ymax)`` view, so that several panels share one
            scale (a change of size or position then shows); default: fit the pose.
    """
    p = _np(pose2d)
    for k, (a, b) in enumerate(skeleton.BONES):
        ax.plot(p[[a, b], 0], p[[a, b], 1], color=bone_color(k), lw=2)
    ax.scatter(p[:, 0], p[:, 1], s=6, color="k", zorder=3)
    ax.set_aspect("equal")
    if limits is not None:
        ax.set_xlim(limits[0], limits[1])
        ax.set_ylim(limits[2], limits[3])
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def draw_3d(ax, pose3d, title: str | None = None, radius: float = 1.0) -> None:
    """Draw a (16, 3) camera-frame pose (x right, y down, z forward) upright, root-centred."""
    p = _np(pose3d)
    p = p - p[:1]
    x, y, z = p[:, 0], p[:, 2], -p[:, 1]  # plot axes: right, depth, up
    for k, (a, b) in enumerate(skeleton.BONES):
        ax.plot(x[[a, b]], y[[a, b]], z[[a, b]], color=bone_color(k), lw=2)
    ax.set_xlim(-radius, radius)
    ax.set_ylim(-radius, radius)
    ax.set_zlim(-radius, radius)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=10, azim=-80)
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.set_zticklabels([])
    if title:
        ax.set_title(title, fontsize=8)


def pose_grid(pose3d, pose2d, titles=None, cols: int = 6):
    """Figure with a 2D row and a 3D row for each group of ``cols`` poses.

    Args:
        pose3d: (N, 16, 3) camera-frame poses; pose2d: (N, 16, 2) their 2D inputs.
        titles: optional N strings.
        cols: poses per row pair.

    Returns:
        the matplotlib Figure.
    """
    n = len(pose3d)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(2.2 * cols, 4.4 * rows))
    for i in range(n):
        r, c = divmod(i, cols)
        t = titles[i] if titles is not None else None
        draw_2d(fig.add_subplot(2 * rows, cols, 2 * r * cols + c + 1), pose2d[i], t)
        draw_3d(
            fig.add_subplot(2 * rows, cols, (2 * r + 1) * cols + c + 1, projection="3d"), pose3d[i]
        )
    fig.tight_layout()
    return fig


def save_figure_keep(fig, path: str | Path) -> Path:
    """Save ``fig`` as PNG (parent folders created) and keep it open; written atomically
    (`utils.atomic_output`: a failed write raises `config.WriteFailed`, the old file kept)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90, format=path.suffix.lstrip(".").lower() or "png")
    return path


def close(fig) -> None:
    """Release a figure's memory."""
    plt.close(fig)


def save_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` as PNG (parent folders created) and close it."""
    path = save_figure_keep(fig, path)
    close(fig)
    return path


def shared_limits(*poses2d, margin: float = 0.1) -> tuple[float, float, float, float]:
    """One square ``(xmin, xmax, ymin, ymax)`` view holding every given (16, 2) pose."""
    pts = np.concatenate([_np(p).reshape(-1, 2) for p in poses2d])
    lo, hi = pts.min(0), pts.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + margin) + 1e-3
    return centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half


def augmentation_figure(src3d, src2d, out: dict, titles_left=None):
    """Fig. S2 of the supplement, one row per pose: x, X, X after BA, after BL, x', X'.

    Args:
        src3d: (N, 16, 3) source poses X; src2d: (N, 16, 2) their 2D x.
        out: the augmentor's output dict for them (``ba``, ``bl``, ``rt``, ``rt_2d``).
        titles_left: optional N labels for the rows.

    Returns:
        the matplotlib Figure (2D panels in normalised image coordinates, both of a row at
        the same scale, 3D panels upright and root-centred, left side blue and right side red).
    """
    cols = (
        ("x", src2d, "2d"), ("X", src3d, "3d"), ("X after BA", out["ba"], "3d"),
        ("after BL", out["bl"], "3d"), ("x'", out["rt_2d"], "2d"), ("X'", out["rt"], "3d"),
    )  # fmt: skip
    n = len(src3d)
    fig = plt.figure(figsize=(2.2 * len(cols), 2.4 * n))
    for r in range(n):
        limits = shared_limits(src2d[r], out["rt_2d"][r])
        for c, (name, poses, kind) in enumerate(cols):
            title = name if r == 0 else None
            if kind == "2d":
                ax = fig.add_subplot(n, len(cols), r * len(cols) + c + 1)
                draw_2d(ax, poses[r], title, limits)
            else:
                ax = fig.add_subplot(n, len(cols), r * len(cols) + c + 1, projection="3d")
                draw_3d(ax, poses[r], title)
            if c == 0 and titles_left is not None:
                ax.set_ylabel(titles_left[r], fontsize=8)
    fig.tight_layout()
    return fig


def per_joint_figure(per_joint: dict):
    """Grouped bar chart of the per-joint error (mm) of several test sets.

    Args:
        per_joint: ``{set name: 16 per-joint MPJPE values}``.

    Returns:
        the matplotlib Figure (one bar group per joint, one colour per set).
    """
    names = list(per_joint)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    width = 0.8 / max(1, len(names))
    x = np.arange(skeleton.NUM_JOINTS)
    for i, name in enumerate(names):
        values = np.asarray(per_joint[name], dtype=float)
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(skeleton.JOINT_NAMES, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("MPJPE (mm)")
    ax.set_title("per-joint error")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


#: Titles of the augmentation parameter histograms (keys of `augmentation_parameters`).
PARAMETER_TITLES = {
    "angle_change_deg": "bone angle change (deg)",
    "bone_length_ratio": "bone length ratio",
    "rotation_angle_deg": "rotation angle (deg)",
    "translation_depth": "root depth (m)",
}


def parameter_histograms(params: dict, title: str | None = None, bins: int = 40):
    """One histogram per augmentation parameter.

    Args:
        params: ``{name: 1-D array}``, e.g. from `poseaug_pl.models.augmentation_parameters`.
        title: optional figure title; bins: histogram bins.

    Returns:
        the matplotlib Figure.
    """
    fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 2.8), squeeze=False)
    for ax, (name, values) in zip(axes[0], params.items()):
        ax.hist(_np(values).ravel(), bins=bins, color="tab:purple", alpha=0.8)
        ax.set_title(PARAMETER_TITLES.get(name, name), fontsize=9)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def lift_animation(pose2d, pose3d, path: str | Path, fps: int = 10) -> Path:
    """Animate a sequence: the 2D input (left) beside the lifted 3D pose (right).

    Args:
        pose2d: (T, 16, 2) normalised 2D; pose3d: (T, 16, 3) camera-frame poses.
        path: ``.gif`` (Pillow) or ``.mp4`` (needs ffmpeg).
        fps: frames per second.

    Returns:
        the written path.

    Raises:
        ValueError: another suffix, or ``.mp4`` without ffmpeg.
    """
    from matplotlib import animation

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        writer = animation.PillowWriter(fps=fps)
    elif suffix == ".mp4":
        if not animation.writers.is_available("ffmpeg"):
            raise ValueError("writing .mp4 needs ffmpeg on the PATH; use a .gif animation instead")
        writer = animation.FFMpegWriter(fps=fps)
    else:
        raise ValueError(f"animation must be a .gif or .mp4 file, got '{path.name}'")
    limits = shared_limits(*_np(pose2d))
    fig = plt.figure(figsize=(6, 3))
    ax2, ax3 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d")

    def frame(t):
        ax2.clear()
        ax3.clear()
        draw_2d(ax2, pose2d[t], f"2D input, frame {t}", limits)
        draw_3d(ax3, pose3d[t], "lifted 3D")

    anim = animation.FuncAnimation(fig, frame, frames=len(pose2d))
    path.parent.mkdir(parents=True, exist_ok=True)
    # (written in place: the writer is given a path; callers pass `utils.atomic_output`'s
    # temporary file, as predict does)
    try:
        anim.save(path, writer=writer)
    finally:
        close(fig)
    return path
