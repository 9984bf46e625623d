"""Batched rotation matrices: Euler angles, axis-angle, and look-at cameras."""

from __future__ import annotations

import torch


def euler_yxz_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation ``Ry(ay) @ Rx(ax) @ Rz(az)`` from angles ``(ax, ay, az)`` in radians.

    Args:
        angles: (..., 3) rotation angles about x, y and z.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    cx, cy, cz = torch.cos(angles).unbind(-1)
    sx, sy, sz = torch.sin(angles).unbind(-1)
    sysx, cysx = sy * sx, cy * sx
    entries = (
        cy * cz + sysx * sz, sysx * cz - cy * sz, sy * cx,
        cx * sz, cx * cz, -sx,
        cysx * sz - sy * cz, sy * sz + cysx * cz, cy * cx,
    )  # fmt: skip
    return torch.stack(entries, dim=-1).unflatten(-1, (3, 3))


def axis_angle_to_matrix(axis_angle: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rodrigues' formula: rotation by ``|v|`` radians about ``v / |v|``.

    Args:
        axis_angle: (..., 3) rotation vectors; zero gives the identity (with finite gradients).
        eps: floor on the angle used for normalisation.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    theta = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True)
    axis = axis_angle / theta.clamp_min(eps)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack(
        [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1),
         torch.stack([-y, x, zero], -1)], dim=-2,
    )  # fmt: skip
    s, c = torch.sin(theta).unsqueeze(-1), torch.cos(theta).unsqueeze(-1)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + s * k + (1 - c) * (k @ k)


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """World-to-camera rotation of a camera at ``eye`` looking at ``target``.

    Camera axes follow the vision convention: x right, y down, z forward.

    Args:
        eye: (..., 3) camera centres.
        target: (..., 3) points looked at.
        up: (3,) or (..., 3) world up direction (must not be parallel to the viewing direction).

    Returns:
        (..., 3, 3) rotation R with ``X_cam = R @ (X_world - eye)``.
    """
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.linalg.cross(z, up.expand_as(z)), dim=-1)
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z], dim=-2)


def quaternion_to_matrix(q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z), normalised here, -> (..., 3, 3) rotation matrices.

    Any non-zero 4-vector gives a rotation, and the gradient never saturates (unlike a
    ``tanh``-bounded axis-angle), which suits a network head that predicts rotations.
    """
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1, eps=eps).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def quaternion_to_axis_angle(q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3) axis-angle with angle in [0, pi]."""
    q = torch.nn.functional.normalize(q, dim=-1, eps=eps)
    q = torch.where(q[..., :1] < 0, -q, q)  # the same rotation with w >= 0
    v = q[..., 1:]
    norm = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(norm, q[..., :1])
    return v / norm.clamp_min(eps) * angle


def relative_angle(rot_a: torch.Tensor, rot_b: torch.Tensor) -> torch.Tensor:
    """Angle of the rotation taking ``rot_a`` to ``rot_b``. (..., 3, 3) x2 -> (...) radians."""
    trace = (rot_a.transpose(-1, -2) @ rot_b).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.arccos(((trace - 1) / 2).clamp(-1.0, 1.0))
