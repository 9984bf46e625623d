"""The README and docs/configuration.md are true: every default their settings tables quote equals
the composed config, every setting of the model config is documented, every documented command
composes, and the README's results are docs/results.md's."""

import re

import pytest
from hydra import compose, initialize_config_dir

from poseaug_pl.utils import CONFIG_DIR

ROOT = CONFIG_DIR.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
RESULTS = (ROOT / "docs" / "results.md").read_text()
DOCS = {"README.md": README, "docs/configuration.md": CONFIGURATION}
REASONS = ("released", "paper", "measured", "extension", "protocol", "operational")


def table_after(text: str, heading: str, columns: int = 2) -> list[tuple[str, ...]]:
    """The first ``columns`` cells of each row of the first Markdown table after ``heading``."""
    rest = text[text.index(heading) :]
    lines = rest[rest.index("\n|") + 1 :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append(tuple(cells[:columns]))
    return rows


def quoted_defaults(rows, prefix=""):
    """``{key: quoted default}`` for rows naming plain keys with plain (comma-listed) defaults;
    a default in brackets (``[0.3, 1.1]``) is one list value."""
    out = {}
    for keys, default, *_ in rows:
        names = re.findall(r"`([\w./]+)`", keys)
        if not names or " / " in keys:
            continue
        plain = re.sub(r"\(.*?\)", "", default).replace("`", "").strip()
        if " or " in plain or "see " in plain or "as " in plain:
            continue
        parts = re.findall(r"\[[^\]]*\]|[^,\[\]]+", plain)  # a bracketed list is one value
        values = [v.strip() for p in parts for v in p.split(" / ") if v.strip()]
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
    if isinstance(value, ListConfig):  # a list quoted as [a, b] or as space-separated items
        items = quoted.strip("[]").replace(",", " ").split()
        try:
            return [float(v) for v in items] == [float(v) for v in value]
        except (TypeError, ValueError):
            return items == [str(v) for v in value]
    try:
        return float(quoted) == float(value)
    except (TypeError, ValueError):
        return str(value) == quoted


def compose_cfg(name, *overrides, hydra=False):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=hydra)


MODEL_ONLY = ("~experiment",)  # conf/model/poseaug.yaml with recipe=released
CASES = [
    ("README.md", "## Settings users change", "", "train", ()),
    ("docs/configuration.md", "## Train: top level", "", "train", MODEL_ONLY),
    ("docs/configuration.md", "## Model (`model.`)", "", "train", MODEL_ONLY),
    ("docs/configuration.md", "**Networks.**", "", "train", MODEL_ONLY),
    ("docs/configuration.md", "## Trainer, callbacks, logger", "", "train", MODEL_ONLY),
    ("docs/configuration.md", "### Synthetic (`data=synthetic`", "data.", "train", ()),
    ("docs/configuration.md", "### Human3.6M (`data=h36m`)", "data.", "train", ("data=h36m",)),
    ("docs/configuration.md", "`predict` (`python -m", "", "predict",
     ("ckpt_path=x", "input=y", "output=z.npz")),
]  # fmt: skip


@pytest.mark.parametrize("doc,heading,prefix,config,overrides", CASES)
def test_every_quoted_default_is_the_configs(doc, heading, prefix, config, overrides):
    """Every key a settings table names exists (a config key or a config group) and its quoted
    default is the composed config's."""
    from omegaconf import OmegaConf

    cfg = compose_cfg(config, *overrides, hydra=config == "train")
    choices = cfg.hydra.runtime.choices if config == "train" else {}
    quoted = quoted_defaults(table_after(DOCS[doc], heading), prefix)
    assert len(quoted) >= 3, f"too few checkable rows under {heading}: {quoted}"
    actual, missing = {}, []
    for key in quoted:
        if key in choices:  # a config group: the quoted default is the chosen option
            value = choices[key] or "null"
        else:
            value = OmegaConf.select(cfg, key, default="__")
        if value == "__":
            missing.append(key)
        else:
            actual[key] = value
    assert not missing, f"{doc} documents keys the config does not have: {missing}"
    wrong = {k: (v, actual[k]) for k, v in quoted.items() if not same(v, actual[k])}
    assert not wrong, f"{doc} defaults that differ from the config (quoted, actual): {wrong}"


def test_every_configuration_row_gives_a_reason():
    """Each row of a settings table in docs/configuration.md says why its default is what it is."""
    for heading in [c[1] for c in CASES if c[0] == "docs/configuration.md"]:
        for key, default, reason, *_ in table_after(CONFIGURATION, heading, 4):
            if reason:  # an empty reason: a row that only points at another row ("as synthetic")
                assert reason.split()[0].strip(";,:") in REASONS, (heading, key, reason)
            else:
                assert "as " in default, (heading, key)


def test_every_model_setting_is_documented():
    """Every leaf of the composed ``model`` config (but the wiring keys) is named in
    docs/configuration.md, and none of the retired keys is offered as a setting."""
    from omegaconf import OmegaConf

    model = OmegaConf.to_container(compose_cfg("train", *MODEL_ONLY).model, resolve=False)

    def leaves(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict) and k not in ("estimator",):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    wiring = {"model._target_", "model.augment", "model.feedback", "model.recipe",
              "model.schedule", "model.estimator", "model.augmentor.name", "model.d3d.name",
              "model.d2d.name"}  # fmt: skip
    settings = CONFIGURATION[: CONFIGURATION.index("## Retired and moved settings")]
    undocumented = [k for k in leaves(model, "model.") if k not in wiring
                    and f"`{k}`" not in settings]  # fmt: skip
    assert not undocumented, f"model settings missing from docs/configuration.md: {undocumented}"
    retired = ("feedback_mode", "aug_norm", "aug_bn_stats", "estimator_update", "bone_jitter",
               "d2d_real_views", "aug_batch", "view_diversity_of", "view_diversity_cap",
               "rt_ratio", "model.ba_half_width", "model.on_collapse",
               "model.max_epochs")  # fmt: skip
    offered = [k for k in retired if k in settings or k in README]
    assert not offered, f"retired settings still documented as settings: {offered}"


def readme_commands(text: str = README) -> list[tuple[str, list[str]]]:
    """``(task, overrides)`` of every single-run ``python -m poseaug_pl.<task>`` line in the
    bash blocks of ``text``, placeholders (``...``, ``<run>``, ``CKPT``) replaced by a path."""
    import shlex

    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
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
    """Each command line of the README and the guide is a valid Hydra command (keys exist,
    groups are known)."""
    cmds = readme_commands(README)
    assert len(cmds) >= 15
    guide = ROOT / "docs" / "guide.md"
    if guide.exists():
        cmds += readme_commands(guide.read_text())
    for task, overrides in cmds:
        compose_cfg(task, *overrides)


def test_readme_results_are_docs_results():
    """The README's results table is docs/results.md's, row for row, with the same command, and
    every number the README's Results section quotes appears in docs/results.md."""
    section = README[README.index("## Results") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert len(table) >= 4, "the README's Results section has no results table"
    results_lines = set(RESULTS.splitlines())
    missing = [line for line in table if line not in results_lines]
    assert not missing, f"README results rows not in docs/results.md: {missing}"
    commands = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert commands and all(c in RESULTS for c in commands), "not docs/results.md's command"
    numbers = set(re.findall(r"\d+\.\d+", section))
    stray = [n for n in numbers if n not in RESULTS]
    assert not stray, f"README results numbers not in docs/results.md: {stray}"


def _markdown_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    """Links to files and folders of the repository (``[text](path)``, ``![fig](path)``) point at
    something that exists; web links and anchors within the page are not checked."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def test_the_install_line_names_every_extra_make_install_installs():
    makefile = (ROOT / "Makefile").read_text()
    extras = re.search(r'-e "\.\[([a-z,]+)\]"', makefile).group(1).split(",")
    lines = (ROOT / "README.md").read_text().splitlines()
    line = next(x for x in lines if x.startswith("make install"))
    assert all(e in line for e in extras), (extras, line)


def test_the_schedule_row_names_the_experiments_that_change_it():
    """README's configuration table says which experiments set ``schedule``: exactly those."""
    from hydra import compose, initialize_config_dir

    setting = {}
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for path in sorted((CONFIG_DIR / "experiment").glob("*.yaml")):
            setting[path.stem] = compose("train", [f"experiment={path.stem}"]).schedule
    phases = sorted(n for n, s in setting.items() if s == "epoch_phases")
    lines = (ROOT / "README.md").read_text().splitlines()
    row = next(x for x in lines if x.startswith("| `schedule`"))
    assert "poseaug_h36m` and the experiments built on it" in row
    assert all(n.startswith(("poseaug_h36m", "variant_a_h36m", "control_h36m", "augmentor_h36m"))
               for n in phases), phases  # fmt: skip
    assert "baseline_h36m" not in phases


def test_seed_counts_match_their_commands():
    """A results section that says N seeds gives the command that runs N seeds."""
    text = (ROOT / "docs" / "results.md").read_text()
    for m in re.finditer(r"(Three|Four|Five) seeds \((\d)-(\d)\)", text):
        n = int(m.group(3)) - int(m.group(2)) + 1
        assert {"Three": 3, "Four": 4, "Five": 5}[m.group(1)] == n, m.group(0)
        block = text[m.end(): m.end() + 600]
        command = re.search(r"```bash\n(.*?)```", block, re.S)
        if command and "h36m_cpu_ablation.sh" in command.group(1):
            assert f"SEEDS={n}" in command.group(1) or n == 3, command.group(1)
