"""Print the per-subject mean bone lengths of Human3.6M (the synthetic generator's templates).

    python scripts/bone_templates.py ../shared/data/h36m

The output is the `BONE_TEMPLATES` table embedded in `poseaug_pl/data/synthetic.py`.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from poseaug_pl.data.poseset import load_npz
from poseaug_pl.geometry import skeleton


def bone_templates(root: Path) -> dict[str, list[float]]:
    """Mean bone lengths (metres, PoseAug bone order) of every subject in ``data_3d_h36m.npz``."""
    pos = load_npz(root / "data_3d_h36m.npz", ("positions_3d",))["positions_3d"]  # runs no code
    out = {}
    for s, actions in pos.items():
        x = np.concatenate([skeleton.remap_joints(v, "h36m32") for v in actions.values()])
        out[s] = skeleton.bone_lengths(torch.from_numpy(x).double()).mean(0).tolist()
    return out


if __name__ == "__main__":
    for s, lengths in bone_templates(Path(sys.argv[1] if len(sys.argv) > 1 else ".")).items():
        print(f'    "{s}": ({", ".join(f"{v:.4f}" for v in lengths)}),')
