"""Synthetic motion capture: the embedded dataset that needs no download.

A kinematic 16-joint skeleton with the per-subject bone lengths of Human3.6M moves through
smooth, periodic action programs (walk, stand and gesture, sit, squat, reach and wave) with
joint angles kept within anatomical limits, grounded on the floor, inside the Human3.6M capture
area, and is filmed by the four Human3.6M cameras of its subject (lens distortion included).

The ``wild`` domain plays the cross-dataset target: wider joint ranges and random pose offsets,
leaning bodies, other body proportions, and random cameras (viewpoint, distance, focal length,
roll) without lens distortion.

Everything is batched torch on the CPU and deterministic given the seed.
"""

from __future__ import annotations

import math

import torch

from poseaug_pl.data.poseset import PoseSet
from poseaug_pl.geometry import skeleton
from poseaug_pl.geometry.camera import h36m_camera_arrays, project_to_2d, world_to_camera
from poseaug_pl.geometry.rotation import euler_yxz_to_matrix, look_at

#: Mean bone lengths (metres, PoseAug bone order) of each Human3.6M subject, computed from
#: ``data_3d_h36m.npz`` by ``scripts/bone_templates.py``. S1-S8 are the training templates.
BONE_TEMPLATES: dict[str, tuple[float, ...]] = {
    "S1": (
        0.1329,
        0.4429,
        0.4542,
        0.1329,
        0.4429,
        0.4542,
        0.2335,
        0.2571,
        0.1780,
        0.1510,
        0.2789,
        0.2517,
        0.1510,
        0.2789,
        0.2517,
    ),  # noqa: E501
    "S5": (
        0.1193,
        0.4283,
        0.4424,
        0.1193,
        0.4283,
        0.4424,
        0.2243,
        0.2541,
        0.1579,
        0.1431,
        0.2646,
        0.2486,
        0.1431,
        0.2646,
        0.2486,
    ),  # noqa: E501
    "S6": (
        0.1426,
        0.4866,
        0.4615,
        0.1426,
        0.4866,
        0.4615,
        0.2622,
        0.2600,
        0.1844,
        0.1494,
        0.3010,
        0.2579,
        0.1494,
        0.3010,
        0.2579,
    ),  # noqa: E501
    "S7": (
        0.1359,
        0.4486,
        0.4380,
        0.1359,
        0.4486,
        0.4380,
        0.2262,
        0.2554,
        0.1564,
        0.1397,
        0.2756,
        0.2473,
        0.1397,
        0.2756,
        0.2473,
    ),  # noqa: E501
    "S8": (
        0.1465,
        0.4521,
        0.4386,
        0.1465,
        0.4521,
        0.4386,
        0.2612,
        0.2510,
        0.2116,
        0.1693,
        0.2899,
        0.2442,
        0.1693,
        0.2899,
        0.2442,
    ),  # noqa: E501
    "S9": (
        0.1241,
        0.4722,
        0.4686,
        0.1241,
        0.4722,
        0.4686,
        0.2563,
        0.2504,
        0.2046,
        0.1833,
        0.2963,
        0.2490,
        0.1833,
        0.2963,
        0.2490,
    ),  # noqa: E501
    "S11": (
        0.1382,
        0.4619,
        0.4602,
        0.1382,
        0.4619,
        0.4602,
        0.2544,
        0.2499,
        0.1852,
        0.1663,
        0.2832,
        0.2483,
        0.1663,
        0.2832,
        0.2483,
    ),  # noqa: E501
}

ACTIONS: tuple[str, ...] = ("walk", "stand", "sit", "squat", "reach")

# Body frame: x = the subject's right, y = forward, z = up. Rest directions of the 15 bones
# (standing, arms hanging), normalised below.
_REST = torch.tensor([
    [1, 0, -0.1], [0, 0, -1], [0, 0, -1],          # right hip, thigh, shin
    [-1, 0, -0.1], [0, 0, -1], [0, 0, -1],         # left hip, thigh, shin
    [0, 0, 1], [0, 0, 1], [0, 0.12, 1],            # hip-spine, spine-thorax, thorax-head
    [-1, 0, -0.12], [0, 0, -1], [0, 0, -1],        # left clavicle, upper arm, forearm
    [1, 0, -0.12], [0, 0, -1], [0, 0, -1],         # right clavicle, upper arm, forearm
], dtype=torch.float32)  # fmt: skip
_REST = _REST / _REST.norm(dim=-1, keepdim=True)

#: Bone whose rotation each bone inherits (-1: the pelvis / root).
_PARENT_BONE = tuple(-1 if p == 0 else p - 1 for p, _ in skeleton.BONES)

# Joint angles are "semantic": (flexion, abduction outward, twist outward) in degrees per bone,
# the rotation carried by that bone's segment. _SIGN maps them to (x, y, z) axis angles.
_R, _L = skeleton.RIGHT_BONES, skeleton.LEFT_BONES
_SIGN = torch.ones(15, 3)
_SIGN[list(_R), 1], _SIGN[list(_L), 2] = -1.0, -1.0  # mirror abduction / twist per side
_SIGN[[2, 5, 6, 7, 8], 0] = -1.0  # knee flexion and forward trunk/neck bend rotate about -x

# Anatomical limits (degrees) of the semantic angles, per bone: (flex, abd, twist) lo / hi.
_LO = torch.tensor([
    [0, 0, 0], [-30, -25, -40], [0, -5, -10],
    [0, 0, 0], [-30, -25, -40], [0, -5, -10],
    [-30, -25, -35], [-25, -20, -35], [-40, -30, -70],
    [-15, -15, -10], [-60, -30, -70], [0, -5, -60],
    [-15, -15, -10], [-60, -30, -70], [0, -5, -60],
], dtype=torch.float32)  # fmt: skip
_HI = torch.tensor([
    [0, 0, 0], [120, 50, 40], [150, 5, 10],
    [0, 0, 0], [120, 50, 40], [150, 5, 10],
    [70, 25, 35], [40, 20, 35], [50, 30, 70],
    [15, 20, 10], [175, 170, 70], [150, 5, 60],
    [15, 20, 10], [175, 170, 70], [150, 5, 60],
], dtype=torch.float32)  # fmt: skip

# Largest random pose offset (degrees) per bone in the wild domain: limbs 25, trunk/neck 10.
_WILD_OFFSET = torch.full((15, 1), 25.0)
_WILD_OFFSET[[6, 7, 8]] = 10.0

# Named bones for the action programs.
R_HIP, R_KNEE, L_HIP, L_KNEE, SPINE, CHEST, NECK = 1, 2, 4, 5, 6, 7, 8
L_SHO, L_ELB, R_SHO, R_ELB = 10, 11, 13, 14
_MIRROR = torch.tensor(skeleton.FLIP_PERMUTATION[1:]) - 1  # bone k <-> its left/right twin

CAPTURE_CENTRE = (0.2, 0.3)  # metres, world xy of the Human3.6M capture area's middle
FPS = 25.0
_CHUNK_FRAMES = 4096  # motion frames per generation chunk


def _u(gen, n, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _program(action: str, n: int, gen: torch.Generator):
    """Sinusoidal joint-angle program of ``n`` sequences of one action.

    Returns:
        base, amp, phase: (n, 15, 3) degrees / radians; freq (n,) Hz; speed (n,) m/s.
    """
    base, amp, phase = torch.zeros(n, 15, 3), torch.zeros(n, 15, 3), torch.zeros(n, 15, 3)
    speed = torch.zeros(n)

    def u(lo, hi):
        return _u(gen, n, lo, hi)

    def rnd_phase():
        return _u(gen, n, 0, 2 * math.pi)

    for b in (L_SHO, R_SHO):  # arms hang slightly away from the body
        base[:, b, 1] = u(6, 14)
    if action == "walk":
        freq, speed = u(0.75, 1.0), u(0.9, 1.4)
        hip, knee, arm = u(18, 30), u(28, 36), u(10, 22)
        for b, off in ((R_HIP, 0.0), (L_HIP, math.pi)):
            base[:, b, 0], amp[:, b, 0], phase[:, b, 0] = u(3, 8), hip, off
            base[:, b + 1, 0], amp[:, b + 1, 0], phase[:, b + 1, 0] = knee - 8, knee, off + 0.6
        for b, off in ((R_SHO, math.pi), (L_SHO, 0.0)):
            amp[:, b, 0], phase[:, b, 0] = arm, off
            base[:, b + 1, 0], amp[:, b + 1, 0], phase[:, b + 1, 0] = u(12, 25), 0.5 * arm, off
        base[:, SPINE, 0], amp[:, SPINE, 2] = u(0, 8), u(2, 6)
        base[:, NECK, 0] = u(-5, 10)
    elif action in ("stand", "sit", "reach"):
        freq = u(0.12, 0.4) if action != "reach" else u(0.8, 2.0)
        phase.copy_(torch.rand(n, 15, 3, generator=gen) * 2 * math.pi)
        for b in (R_HIP, L_HIP):
            base[:, b, 1], amp[:, b, 0] = u(2, 9), u(0, 4)
        base[:, SPINE, 0], amp[:, SPINE, 1], amp[:, SPINE, 2] = u(-5, 12), u(0, 6), u(0, 15)
        base[:, NECK, 0], amp[:, NECK, 2] = u(-10, 15), u(0, 35)
        for b in (R_SHO, L_SHO):
            base[:, b, 0], amp[:, b, 0], amp[:, b, 1] = u(0, 40), u(5, 30), u(0, 15)
            base[:, b + 1, 0], amp[:, b + 1, 0] = u(20, 90), u(5, 35)
        if action == "stand":
            for b in (R_KNEE, L_KNEE):
                base[:, b, 0], amp[:, b, 0] = u(0, 10), u(0, 5)
        elif action == "sit":
            for b in (R_HIP, L_HIP):
                base[:, b, 0], base[:, b, 1], amp[:, b, 1] = u(75, 95), u(5, 20), u(0, 6)
                base[:, b + 1, 0], amp[:, b + 1, 0] = u(75, 100), u(0, 10)
            base[:, SPINE, 0] = u(0, 25)
            phone = torch.rand(n, generator=gen) < 0.3  # hand held at the head
            base[phone, R_SHO, 0], base[phone, R_SHO, 1] = u(30, 60)[phone], u(15, 40)[phone]
            base[phone, R_ELB, 0], amp[phone, R_ELB, 0] = u(130, 145)[phone], 0.0
        else:  # reach / wave with the right arm (mirrored below for half of them)
            base[:, R_SHO, 0], amp[:, R_SHO, 0] = u(60, 150), u(0, 15)
            base[:, R_SHO, 1] = u(10, 70)
            base[:, R_ELB, 0], amp[:, R_ELB, 0] = u(30, 70), u(15, 40)
            base[:, R_KNEE, 0] = u(0, 20)
    elif action == "squat":
        freq = u(0.12, 0.3)
        p0 = rnd_phase()
        for b, lo, hi in (
            (R_HIP, 35, 55),
            (L_HIP, 35, 55),
            (R_KNEE, 40, 62),
            (L_KNEE, 40, 62),
            (SPINE, 10, 25),
            (R_SHO, 15, 35),
            (L_SHO, 15, 35),
        ):
            a = u(lo, hi)
            base[:, b, 0], amp[:, b, 0], phase[:, b, 0] = a + u(0, 5), a, p0
        for b in (R_HIP, L_HIP):
            base[:, b, 1] = u(5, 15)
        for b in (R_ELB, L_ELB):
            base[:, b, 0], amp[:, b, 0] = u(10, 30), u(0, 10)
    else:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    return base, amp, phase, freq, speed


def _mirror(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Swap left and right bones' semantic angles for the sequences in ``which``."""
    out = x.clone()
    out[which] = x[which][:, _MIRROR]
    return out


def sample_motion_params(
    num: int, actions: torch.Tensor, gen: torch.Generator, wild: bool = False
) -> dict[str, torch.Tensor]:
    """Draw every random number of ``num`` motion sequences (evaluated by `motion_at`).

    Args:
        num: number of sequences.
        actions: (num,) index into `ACTIONS` per sequence.
        gen: random generator; wild: use the wider ``wild`` ranges.

    Returns:
        per-sequence tensors (first dimension ``num``): the joint-angle program
        (``base``, ``amp``, ``phase``, ``freq``, noise ``nfreq``/``nphase``/``noise``), the
        limits ``lo``/``hi``, and the pelvis path (``yaw0``, ``radius``, ``turn``, ``speed``,
        ``sway_f``, ``sway_p``, ``centre``, ``pitch``, ``roll``).
    """
    base, amp = torch.zeros(num, 15, 3), torch.zeros(num, 15, 3)
    phase, freq, speed = torch.zeros(num, 15, 3), torch.zeros(num), torch.zeros(num)
    for a, name in enumerate(ACTIONS):
        sel = (actions == a).nonzero().squeeze(1)
        if len(sel):
            b, m, p, f, s = _program(name, len(sel), gen)
            base[sel], amp[sel], phase[sel], freq[sel], speed[sel] = b, m, p, f, s
    flip = torch.rand(num, generator=gen) < 0.5
    base, amp, phase = _mirror(base, flip), _mirror(amp, flip), _mirror(phase, flip)
    noise, lo, hi = 3.0, _LO, _HI
    if wild:  # larger motions, random pose offsets (limbs more than trunk), wider limits
        offset = (torch.rand(num, 15, 3, generator=gen) * 2 - 1) * _WILD_OFFSET
        base, amp = base + offset, amp * _u(gen, num, 1.1, 1.4).view(num, 1, 1)
        noise, lo, hi = 6.0, _LO * 1.1, _HI * 1.1
    lean = math.radians(15 if wild else 4)
    return {
        "base": base,
        "amp": amp,
        "phase": phase,
        "freq": freq,
        "nfreq": _u(gen, num * 45, 0.05, 0.5).view(num, 15, 3),  # slow per-channel wander
        "nphase": torch.rand(num, 15, 3, generator=gen) * 2 * math.pi,
        "noise": torch.full((num,), noise),
        "lo": lo.expand(num, 15, 3),
        "hi": hi.expand(num, 15, 3),
        "yaw0": _u(gen, num, -math.pi, math.pi),
        "radius": _u(gen, num, 0.8, 1.6),
        "turn": torch.where(torch.rand(num, generator=gen) < 0.5, 1.0, -1.0),
        "speed": speed,
        "sway_f": _u(gen, num, 0.02, 0.1),
        "sway_p": _u(gen, num, 0, 2 * math.pi),
        "centre": torch.tensor(CAPTURE_CENTRE) + (torch.rand(num, 2, generator=gen) - 0.5),
        "pitch": _u(gen, num, -lean, lean),
        "roll": _u(gen, num, -lean, lean),
    }


def motion_at(p: dict[str, torch.Tensor], t: torch.Tensor):
    """Evaluate motion parameters (from `sample_motion_params`) at times ``t``.

    Args:
        p: per-sequence parameters of n sequences.
        t: (T,) times in seconds.

    Returns:
        angles (n, T, 15, 3) semantic degrees within the limits; root_rot (n, T, 3, 3)
        body-to-world pelvis rotation; root_xy (n, T, 2) metres.
    """
    n = len(p["freq"])
    tt = t.view(1, -1, 1, 1)
    w = 2 * math.pi * p["freq"].view(n, 1, 1, 1) * tt
    angles = p["base"].unsqueeze(1) + p["amp"].unsqueeze(1) * torch.sin(w + p["phase"].unsqueeze(1))
    wander = torch.sin(2 * math.pi * p["nfreq"].unsqueeze(1) * tt + p["nphase"].unsqueeze(1))
    angles = angles + p["noise"].view(n, 1, 1, 1) * wander
    angles = torch.maximum(torch.minimum(angles, p["hi"].unsqueeze(1)), p["lo"].unsqueeze(1))
    # pelvis: walkers follow a circle at their speed, the others sway and drift in place
    col = {k: p[k].view(n, 1) for k in ("yaw0", "radius", "turn", "speed", "sway_f", "sway_p")}
    walking = col["speed"] > 0
    sway = math.radians(20) * torch.sin(2 * math.pi * col["sway_f"] * t + col["sway_p"])
    yaw0 = col["yaw0"]
    yaw = torch.where(walking, yaw0 + col["turn"] * col["speed"] / col["radius"] * t, yaw0 + sway)
    # on a circle around the centre, heading along it: d/dt of the position is speed * forward
    circle = (col["turn"] * col["radius"]).unsqueeze(-1) * torch.stack(
        [torch.cos(yaw), torch.sin(yaw)], -1
    )
    drift = 0.15 * torch.stack([torch.sin(0.3 * t + yaw0), torch.cos(0.23 * t + yaw0)], -1)
    root_xy = p["centre"].unsqueeze(1) + torch.where(walking.unsqueeze(-1), circle, drift)
    lean = torch.stack([p["pitch"], p["roll"]], -1).unsqueeze(1).expand(n, len(t), 2)
    root_rot = euler_yxz_to_matrix(torch.cat([lean, yaw.unsqueeze(-1)], -1))
    return angles, root_rot, root_xy


def forward_kinematics(
    angles: torch.Tensor, lengths: torch.Tensor, root_rot: torch.Tensor
) -> torch.Tensor:
    """Joint positions (root at the origin) from semantic joint angles.

    Args:
        angles: (..., 15, 3) semantic angles in degrees (see module source for the convention).
        lengths: (..., 15) bone lengths in metres.
        root_rot: (..., 3, 3) body-to-world rotation of the pelvis.

    Returns:
        (..., 16, 3) joint positions.
    """
    local = euler_yxz_to_matrix(torch.deg2rad(angles) * _SIGN)  # (..., 15, 3, 3)
    glob, dirs = [], []
    for k in range(skeleton.NUM_BONES):
        parent = root_rot if _PARENT_BONE[k] < 0 else glob[_PARENT_BONE[k]]
        glob.append(parent @ local[..., k, :, :])
        dirs.append(glob[k] @ _REST[k])
    return skeleton.bones_to_pose(torch.stack(dirs, dim=-2) * lengths.unsqueeze(-1))


def _wild_cameras(target: torch.Tensor, gen: torch.Generator, views: int):
    """Random look-at cameras around ``target`` (n, 3): rot, trans, intrinsics per (n, views)."""
    n = len(target)
    size = (n, views)
    az = torch.rand(size, generator=gen) * 2 * math.pi
    el = torch.deg2rad(-5 + 50 * torch.rand(size, generator=gen))
    dist = 3.5 + 4.5 * torch.rand(size, generator=gen)
    eye = target.unsqueeze(1) + dist.unsqueeze(-1) * torch.stack(
        [torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1
    )
    aim = target.unsqueeze(1) + 0.2 * (torch.rand(n, views, 3, generator=gen) - 0.5)
    rot = look_at(eye, aim, torch.tensor([0.0, 0.0, 1.0]))
    roll = torch.deg2rad(20 * torch.rand(size, generator=gen) - 10)
    zeros = torch.zeros_like(roll)
    rot = euler_yxz_to_matrix(torch.stack([zeros, zeros, roll], -1)) @ rot
    focal = dist * (0.25 + 0.3 * torch.rand(size, generator=gen))  # person ~25-55% of width
    centre = 0.1 * (torch.rand(n, views, 2, generator=gen) - 0.5)
    intr = torch.cat(
        [focal.unsqueeze(-1).expand(n, views, 2), centre, torch.zeros(n, views, 5)], -1
    )
    return rot, eye, intr


def generate(
    sequences: int = 100,
    frames: int = 200,
    subjects=("S1", "S5", "S6", "S7", "S8"),
    domain: str = "h36m",
    seed: int = 0,
    name: str = "synthetic",
) -> PoseSet:
    """Generate synthetic pose pairs: ``sequences x 4 cameras x frames`` rows.

    Args:
        sequences: number of motion sequences, spread evenly over ``subjects`` and `ACTIONS`.
        frames: frames per sequence (25 fps).
        subjects: bone-length templates (keys of `BONE_TEMPLATES`); in the ``h36m`` domain each
            sequence is filmed by that subject's four Human3.6M cameras.
        domain: ``"h36m"`` (template bone lengths, Human3.6M cameras) or ``"wild"`` (wider
            motion, other proportions, random cameras without distortion).
        seed: random seed; equal seeds give identical data.
        name: the set's name.

    Returns:
        A `PoseSet` ordered by sequence, camera, frame; ``subject`` indexes ``subjects`` and
        ``action`` indexes `ACTIONS`.
    """
    if domain not in ("h36m", "wild"):
        raise ValueError(f"domain must be 'h36m' or 'wild', got {domain!r}")
    subjects = tuple(subjects)
    unknown = [s for s in subjects if s not in BONE_TEMPLATES]
    if unknown or not subjects:
        raise ValueError(f"unknown bone template(s) {unknown}; known: {sorted(BONE_TEMPLATES)}")
    if sequences < 1 or frames < 1:
        raise ValueError(f"sequences and frames must be >= 1, got {sequences}, {frames}")
    gen = torch.Generator().manual_seed(int(seed))
    wild = domain == "wild"
    seq = torch.arange(sequences)
    subject = seq % len(subjects)
    action = (seq // len(subjects)) % len(ACTIONS)
    lengths = torch.tensor([BONE_TEMPLATES[s] for s in subjects])[subject]  # (n, 15)
    if wild:
        group = torch.tensor(skeleton.BONE_SYMMETRY_GROUP)
        per_group = _u(gen, sequences * skeleton.NUM_BONE_GROUPS, 0.88, 1.12)
        per_group = per_group.view(sequences, -1)[:, group]
        lengths = lengths * _u(gen, sequences, 0.85, 1.15).view(-1, 1) * per_group
    params = sample_motion_params(sequences, action, gen, wild)
    if wild:  # cameras look at the middle of each sequence's path
        target = torch.cat([params["centre"], torch.full((sequences, 1), 0.9)], -1)
        rot, trans, intr = _wild_cameras(target, gen, views=4)
    else:
        cams = h36m_camera_arrays(subjects)
        rot, trans, intr = (cams[k][subject] for k in ("rot", "trans", "intrinsics"))
    views = rot.shape[1]
    rows = sequences * views * frames
    pose3d, pose2d = torch.empty(rows, 16, 3), torch.empty(rows, 16, 2)
    t = torch.arange(frames, dtype=torch.float32) / FPS
    chunk = max(1, _CHUNK_FRAMES // frames)  # sequences per chunk: bounded temporaries
    for s0 in range(0, sequences, chunk):
        sl = slice(s0, min(s0 + chunk, sequences))
        angles, root_rot, root_xy = motion_at({k: v[sl] for k, v in params.items()}, t)
        pose = forward_kinematics(angles, lengths[sl].unsqueeze(1), root_rot)  # (c, T, 16, 3)
        floor = pose[..., [3, 6], 2].amin(-1)  # the lowest foot touches the ground
        pose = pose + torch.cat([root_xy, -floor.unsqueeze(-1)], -1).unsqueeze(-2)
        x3 = world_to_camera(pose.unsqueeze(1), rot[sl].unsqueeze(2), trans[sl].unsqueeze(2))
        rs = slice(sl.start * views * frames, sl.stop * views * frames)
        pose3d[rs] = x3.reshape(-1, 16, 3)
        pose2d[rs] = project_to_2d(x3, intr[sl].unsqueeze(2)).reshape(-1, 16, 2)

    def per_row(v):  # (n, ...) -> (n * views * frames, ...), sequence-major like the poses
        v = v.view(sequences, -1, 1, v.shape[-1] if v.ndim == 3 else 1)
        return v.expand(sequences, views, frames, v.shape[-1]).reshape(rows, -1).squeeze(-1)

    return PoseSet(
        name=name,
        pose3d=pose3d,
        pose2d=pose2d,
        cam=per_row(intr),
        subject=per_row(subject),
        action=per_row(action),
        sequence=per_row(seq),
        subjects=subjects,
        actions=ACTIONS,
    )
