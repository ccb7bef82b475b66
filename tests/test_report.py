"""Report tables against hand-made records: seeds aggregated, diverged runs shown, best marked."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ghmbench.config import compose_config, validate
from ghmbench.report import build_tables, load_runs
from ghmbench.results import METRICS_FILE, run_dir, run_key, smoke_failures, write_json
from tests.conftest import ghmbench_cli


def write_run(root: Path, overrides: list[str], seed: int, ap: float | None, status: str = "completed") -> Path:
    """A run record as training writes it, with the given AP (AP50 = AP + .2, AP75 = AP + .1)."""
    cfg = validate(compose_config([*overrides, f"seed={seed}", f"paths.runs_dir={root}"]))
    folder = run_dir(cfg)
    metrics = None if status != "completed" else {"AP": ap, "AP50": ap + 0.2, "AP75": ap + 0.1, "APs": ap, "APm": None, "APl": None, "AR1": 0.3, "AR10": 0.5, "AR100": 0.6}
    record = {
        "run_key": run_key(cfg),
        "run_dir": str(folder),
        "loss": cfg.loss.name,
        "regression": cfg.regression.name,
        "seed": seed,
        "status": status,
        "config": OmegaConf.to_container(cfg),
        "metrics": metrics,
        "history": [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}],
        "g_hist": [1000.0, 100.0, 10.0, 5.0, 1.0] * 20,
        "wall_time_s": 1.0,
    }
    if status == "diverged":
        record["diverged_at_step"] = 7
    write_json(folder / METRICS_FILE, record)
    return folder


@pytest.fixture
def comparison(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    aps = {("ce", "smooth_l1"): [0.30, 0.40, 0.50], ("focal", "smooth_l1"): [0.60, 0.70, 0.80], ("ghm", "smooth_l1"): [0.50, 0.52]}
    for (loss, reg), values in aps.items():
        for seed, ap in enumerate(values):
            write_run(root, [f"loss={loss}", f"regression={reg}"], seed, ap)
    write_run(root, ["loss=ghm", "regression=ghm"], 0, 0.9)
    write_run(root, ["loss=ghm", "regression=ghm"], 1, None, status="diverged")
    write_run(root, ["loss=ce", "regression=ghm"], 0, None, status="diverged")
    write_run(root, ["loss=ce", "regression=ghm"], 1, None, status="failed")
    (root / "focal-ghm-s0-halfwritten").mkdir()
    (root / "focal-ghm-s0-halfwritten" / ".metrics.json.x.tmp").write_text("{")  # a killed writer's leftovers
    return root


def test_loss_comparison_table_by_hand(comparison):
    df, _ = load_runs([comparison])
    assert len(df) == 12 and set(df["status"]) == {"completed", "diverged", "failed"}
    tables = {t.name: t for t in build_tables(df, "AP", None)}
    cells = tables["loss_comparison"].cells.set_index("classification")
    assert cells.loc["ce", "smooth_l1"] == "0.400 ± 0.100 (3)"
    assert cells.loc["focal", "smooth_l1"] == "0.700 ± 0.100 (3)"
    assert cells.loc["ghm", "smooth_l1"] == "0.510 ± 0.014 (2)"  # a missing seed: n = 2
    assert cells.loc["ghm", "ghm"] == "\x000.900 (1, 1 diverged)\x00"  # best mean, with its diverged seed shown
    assert cells.loc["ce", "ghm"] == "diverged 1, failed 1 /2"
    md = tables["loss_comparison"].markdown()
    assert "**0.900 (1, 1 diverged)**" in md and "35.6" in md  # published FL + smooth L1 beside ours
    assert r"\textbf{0.900 (1, 1 diverged)}" in tables["loss_comparison"].latex()
    summary = tables["summary"].numbers.set_index(["loss", "regression"])
    assert summary.loc[("focal", "smooth_l1"), "AP_mean"] == pytest.approx(0.7)
    assert summary.loc[("focal", "smooth_l1"), "AP50_mean"] == pytest.approx(0.9)
    assert summary.loc[("ghm", "ghm"), ["runs", "completed", "diverged", "failed"]].tolist() == [2, 1, 1, 0]


def test_focal_grid_and_ce_alpha_tables_by_hand(tmp_path):
    root = tmp_path / "runs"
    grid = {(0.0, 0.25): 0.10, (0.0, 0.75): 0.30, (2.0, 0.25): 0.50, (2.0, 0.75): 0.40}
    for (gamma, alpha), ap in grid.items():
        for seed in (0, 1):
            write_run(root, ["loss=focal", f"loss.gamma={gamma}", f"loss.alpha={alpha}"], seed, ap + 0.01 * seed)
    df, _ = load_runs([root])
    tables = {t.name: t for t in build_tables(df, "AP", None)}
    focal = tables["focal_gamma_alpha"].cells.set_index("γ")
    assert focal.loc["0", "best α"] == "0.75" and focal.loc["2", "best α"] == "0.25"
    assert focal.loc["2", "α=0.25"] == "\x000.505 ± 0.007 (2)\x00"
    assert focal.loc["2", "best AP"] == "\x000.505\x00"  # best over gammas
    assert focal.loc["2", "paper best α / AP % (Table 1b)"] == "0.25 / 34"
    ce = tables["ce_alpha"].cells.set_index("α")  # gamma 0 focal runs are alpha-balanced CE
    assert ce.loc["0.75", "AP"] == "\x000.305 ± 0.007 (2)\x00" and ce.loc["0.25", "paper AP % (Table 1a)"] == "10.8"


def test_cli_report_writes_tables_figures_and_runs(comparison, tmp_path):
    out = tmp_path / "report"
    result = ghmbench_cli("report", str(comparison), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "0.700 ± 0.100 (3)" in result.stdout and "diverged" in result.stdout
    for name in ["runs.csv", "runs.parquet", "summary.md", "summary.tex", "summary.csv", "loss_comparison.md", "loss_comparison.tex", "report.md"]:
        assert (out / name).is_file(), name
    for png in ["loss_comparison.png", "gradient_norm_distribution.png", "reweighted_gradient_norm.png"]:
        assert (out / png).stat().st_size > 1000 and f"figure: {out / png}" in result.stdout.replace("\n", "")
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 12 and (runs["status"] == "diverged").sum() == 2
    by_loss = ghmbench_cli("report", str(comparison), "--out", str(out), "--group-by", "loss", "--metric", "AP50")
    assert by_loss.returncode == 0
    summary = pd.read_csv(out / "summary.csv")
    assert summary["loss"].tolist() == ["ce", "focal", "ghm"] and summary["runs"].tolist() == [5, 3, 4]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--metric", "mAP"], "--metric 'mAP' is not allowed; allowed: AP, AP50"),
        (["--group-by", "lossy"], "--group-by 'lossy' is not a column; allowed: loss, regression, seed"),
    ],
)
def test_cli_report_bad_options(comparison, args, message):
    result = ghmbench_cli("report", str(comparison), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_cli_report_empty_folder(tmp_path):
    result = ghmbench_cli("report", str(tmp_path))
    assert result.returncode == 2 and "no run records" in result.stderr


def test_smoke_failures_reasons():
    good = {"status": "completed", "history": [{"loss": 1.0}, {"loss": 0.5}], "metrics": {"AP": 0.1}}
    assert smoke_failures(good) == []
    assert "did not decrease" in smoke_failures({**good, "history": [{"loss": 1.0}, {"loss": 1.2}]})[0]
    assert smoke_failures({**good, "metrics": {"AP": 0.0}}) == ["AP is zero"]
    assert "not finite" in smoke_failures({"status": "diverged"})[0]
    assert json.dumps(good)


def test_ghm_ablation_table_by_hand(tmp_path):
    root = tmp_path / "runs"
    aps = {(10, 0.0): 0.20, (10, 0.75): 0.25, (30, 0.0): 0.40, (30, 0.75): 0.30}
    for (bins, momentum), ap in aps.items():
        write_run(root, ["loss=ghm", f"loss.bins={bins}", f"loss.momentum={momentum}"], 0, ap)
    write_run(root, ["loss=ghm", "loss.bins=30", "loss.momentum=0.9"], 0, None, status="diverged")
    df, _ = load_runs([root])
    table = {t.name: t for t in build_tables(df, "AP", None)}["ghm_bins_momentum"]
    cells = table.cells.set_index("M")
    assert cells.loc["10", "best momentum"] == "0.75" and cells.loc["30", "best momentum"] == "0"
    assert cells.loc["30", "momentum=0.9"] == "diverged (1/1)"
    assert cells.loc["30", "best AP"] == "\x000.400\x00"
    assert cells.loc["10", "paper AP % by M (GHM paper)"] == "34.6"
