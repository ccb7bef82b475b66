"""Torch's threads under SLURM: a task started by srun / sbatch takes SLURM_CPUS_PER_TASK threads when
``train.num_threads`` is unset (torch's default would take every core of the node)."""

from __future__ import annotations

import pytest
import torch

from ghmbench.config.compose import compose_config, validate
from ghmbench.run.setup import num_threads, set_up
from ghmbench.store.records import run_dir


@pytest.mark.parametrize(
    ("configured", "slurm", "threads"),
    [(0, "3", 3), (2, "3", 2), (0, None, 0), (0, "", 0), (0, "0", 0), (0, "2(x2)", 0)],
)
def test_threads_come_from_the_config_then_slurm(monkeypatch, configured, slurm, threads):
    if slurm is None:
        monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    else:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", slurm)
    assert num_threads(configured) == threads


def test_a_run_under_slurm_sets_torchs_threads(tiny, monkeypatch):
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(wanted))
    cfg = validate(compose_config(tiny))
    try:
        set_up(cfg, run_dir(cfg))
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
