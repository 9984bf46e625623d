"""Checked ranges of camera angles in degrees (no torch: the command-line checks use them before
the heavy imports)."""

from __future__ import annotations

import math


def elevation_range(value, name: str = "elevation range") -> tuple[float, float]:
    """Check a ``[low, high]`` camera-elevation range in degrees and return it as floats.

    Raises:
        ValueError: not two numbers with ``-80 <= low <= high <= 80`` (the message names ``name``).
    """
    try:
        if isinstance(value, str) or any(isinstance(v, (bool, str)) for v in value):
            raise TypeError
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low, high = math.nan, math.nan
    if not -80 <= low <= high <= 80:
        raise ValueError(f"{name} must be [low, high] degrees with -80 <= low <= high <= 80, "
                         f"got {value!r}")  # fmt: skip
    return low, high
