"""The embedded digits keep their run keys: every experiment preset's sweep jobs, the default run and
the budgets compose to the keys they had before photos got augmentation and fitted detectors (issue 27),
so the committed results' run folders are still recognised (``tests/data/digits_run_keys.json``,
written by this file's ``write_keys`` at commit 5df3778, before those changes)."""

from __future__ import annotations

import json
from pathlib import Path

KEYS_FILE = Path(__file__).parent / "data" / "digits_run_keys.json"
PRESETS = ["focal_grid", "ghm_ablation", "imbalance", "label_noise", "loss_comparison", "smoke"]
SINGLE = [[], ["budget=quick"], ["budget=full"], ["dataset=digits_sparse"], ["model=sparse"], ["model=resnet18"]]


def digits_run_keys() -> dict[str, list[str]]:
    """Run keys by command: each preset's sweep jobs (also at scale=gpu), and single runs."""
    from ghmbench.config.compose import compose_config, validate
    from ghmbench.store.records import run_key
    from ghmbench.sweep.grid import expand_jobs

    commands = {f"experiment={p}": [f"experiment={p}"] for p in PRESETS}
    commands |= {f"experiment={p} scale=gpu": [f"experiment={p}", "scale=gpu"] for p in PRESETS if p != "smoke"}
    out = {}
    for name, overrides in commands.items():
        out[name] = [run_key(validate(compose_config(job))) for job in expand_jobs(overrides)]
    for overrides in SINGLE:
        out[" ".join(overrides) or "(default)"] = [run_key(validate(compose_config(overrides)))]
    return out


def write_keys() -> None:
    KEYS_FILE.write_text(json.dumps(digits_run_keys(), indent=1, sort_keys=True) + "\n")


def test_every_digits_preset_keeps_its_run_keys():
    """Every pinned key is still made by its command (a preset that gains jobs, e.g. a new loss, keeps
    the old ones' keys)."""
    got = digits_run_keys()
    for name, keys in json.loads(KEYS_FILE.read_text()).items():
        assert set(keys) <= set(got[name]), name
