"""The README is true: every default its settings tables quote equals the composed config."""

import re

import pytest
from hydra import compose, initialize_config_dir

from poseaug_pl.utils import CONFIG_DIR

README = (CONFIG_DIR.parent / "README.md").read_text()


def table_after(heading: str) -> list[tuple[str, str]]:
    """(first cell, second cell) of the first Markdown table after ``heading``."""
    rest = README[README.index(heading) :]
    lines = rest[rest.index("\n|") + 1 :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0], cells[1]))
    return rows


def quoted_defaults(rows, prefix=""):
    """``{key: quoted default}`` for rows naming plain keys with plain (comma-listed) defaults."""
    out = {}
    for keys, default in rows:
        names = re.findall(r"`([\w.]+)`", keys)
        if not names or " / " in keys or "/" in keys.replace("` / `", ""):
            continue
        plain = re.sub(r"\(.*?\)", "", default).replace("`", "").strip()
        if " or " in plain or "see " in plain:
            continue
        values = [v.strip() for v in re.split(r",| / ", plain)]
        if len(values) == 1:  # one default for several keys
            values = values * len(names)
        if len(values) != len(names):
            continue
        out.update({prefix + n: v for n, v in zip(names, values)})
    return out


def same(quoted: str, value) -> bool:
    from omegaconf import DictConfig, ListConfig

    if isinstance(value, DictConfig):  # a config group: the quoted option is the chosen one
        return quoted in value or (quoted == "{}" and len(value) == 0)
    if quoted in ("null", "none", "all"):  # None, or that very word as a string setting
        return value is None or value == quoted
    if quoted in ("true", "false"):
        return value is (quoted == "true")
    if isinstance(value, ListConfig):  # a list quoted as space-separated items
        return quoted.split() == [str(v) for v in value]
    try:
        return float(quoted) == float(value)
    except (TypeError, ValueError):
        return str(value) == quoted


def compose_cfg(name, *overrides):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


CASES = [
    ("### Settings users change", "", "train", ()),
    ("### Synthetic data", "data.", "train", ()),
    ("and point `data.root` at it", "data.", "train", ("data=h36m",)),
    ("## Use a trained model", "", "predict", ("ckpt_path=x", "input=y", "output=z.npz")),
]


@pytest.mark.parametrize("heading,prefix,config,overrides", CASES)
def test_every_quoted_default_is_the_configs(heading, prefix, config, overrides):
    from omegaconf import OmegaConf

    cfg = compose_cfg(config, *overrides)
    quoted = quoted_defaults(table_after(heading), prefix)
    checked = {k: v for k, v in quoted.items() if OmegaConf.select(cfg, k, default="__") != "__"}
    assert len(checked) >= 3, f"too few checkable rows under {heading}: {quoted}"
    wrong = {k: (v, OmegaConf.select(cfg, k)) for k, v in checked.items()
             if not same(v, OmegaConf.select(cfg, k))}  # fmt: skip
    assert not wrong, f"README defaults that differ from the config (quoted, actual): {wrong}"


def readme_commands() -> list[tuple[str, list[str]]]:
    """``(task, overrides)`` of every single-run ``python -m poseaug_pl.<task>`` line in the
    README's bash blocks, placeholders (``...``, ``<run>``, ``CKPT``) replaced by a path."""
    import shlex

    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            m = re.search(r"python -m poseaug_pl\.(\w+)(.*)", line.split(" #")[0])
            if not m or m.group(1) not in ("train", "evaluate", "predict", "export", "bench",
                                           "prepare_data"):  # fmt: skip
                continue
            tokens = shlex.split(m.group(2))
            if "-m" in tokens:  # a multirun: its sweep syntax is Hydra's, tested in test_scale
                continue
            overrides = []
            for t in (t for t in tokens if "=" in t):
                key, value = t.split("=", 1)
                if "..." in value or "<" in value or value.isupper():
                    value = "/tmp/placeholder"
                overrides.append(f"{key}={value}")
            cmds.append((m.group(1), overrides))
    return cmds


def test_every_readme_command_composes():
    """Each documented command line is a valid Hydra command (keys exist, groups are known)."""
    cmds = readme_commands()
    assert len(cmds) >= 15
    for task, overrides in cmds:
        compose_cfg(task, *overrides)
