"""Report tables against hand-made records: seeds aggregated, diverged runs shown, best marked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ghmbench.config.compose import compose_config, validate
from ghmbench.reporting import figures
from ghmbench.reporting.report import build_tables
from ghmbench.reporting.run_table import load_runs
from ghmbench.store.fileio import write_json
from ghmbench.store.records import METRICS_FILE, run_dir, run_key, smoke_failures
from tests.conftest import ghmbench_cli


def write_run(
    root: Path,
    overrides: list[str],
    seed: int,
    ap: float | None,
    status: str = "completed",
    protocol: dict | None = None,
    **fields,
) -> Path:
    """A run record as training writes it, with the given AP (AP50 = AP + .2, AP75 = AP + .1),
    ``config.protocol`` and any further record fields (val_metrics, curve, anchors, ...)."""
    cfg = validate(compose_config([*overrides, f"seed={seed}", f"paths.runs_dir={root}"]))
    folder = run_dir(cfg)
    metrics = (
        None
        if status != "completed"
        else {
            "AP": ap,
            "AP50": ap + 0.2,
            "AP75": ap + 0.1,
            "APs": ap,
            "APm": None,
            "APl": None,
            "AR1": 0.3,
            "AR10": 0.5,
            "AR100": 0.6,
        }
    )
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
    record["config"]["protocol"] = protocol
    record.update(fields)
    write_json(folder / METRICS_FILE, record)
    return folder


def shown(table, index: str | list[str]) -> pd.DataFrame:
    """The table's cells as its Markdown shows them (best ones in **), indexed by ``index``."""
    text = table.cells.astype(str)
    return text.where(~table.best, "**" + text + "**").set_index(index)


@pytest.fixture
def comparison(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    aps = {
        ("ce", "smooth_l1"): [0.30, 0.40, 0.50],
        ("focal", "smooth_l1"): [0.60, 0.70, 0.80],
        ("ghm", "smooth_l1"): [0.50, 0.52],
    }
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
    best = tables["loss_comparison"].best.set_index(cells.index)
    assert cells.loc["CE", "smooth L1"] == "0.400 ± 0.100 (3)"  # losses by their names: GHM-C, GHM-R
    assert cells.loc["Focal", "smooth L1"] == "0.700 ± 0.100 (3)"
    assert cells.loc["GHM-C", "smooth L1"] == "0.510 ± 0.014 (2)"  # a missing seed: n = 2
    assert (
        cells.loc["GHM-C", "GHM-R"] == "0.900 (1, 1 diverged)" and best.loc["GHM-C", "GHM-R"]
    )  # best mean, with its diverged seed shown
    assert best.to_numpy().sum() == 1
    assert cells.loc["CE", "GHM-R"] == "diverged 1, failed 1 /2"
    md = tables["loss_comparison"].markdown()
    assert "**0.900 (1, 1 diverged)**" in md and "0.356" in md  # published FL + smooth L1 beside ours, on our scale
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
    focal = shown(tables["focal_gamma_alpha"], "γ")
    assert focal.loc["0", "best α"] == "0.75" and focal.loc["2", "best α"] == "0.25"
    assert focal.loc["2", "α=0.25"] == "**0.505 ± 0.007 (2)**"
    assert focal.loc["2", "best AP"] == "**0.505**"  # best over gammas
    assert focal.loc["2", "paper best α / AP (Focal Loss paper Table 1b, ResNet-50 on COCO, 0-1)"] == "0.25 / 0.340"
    ce = shown(tables["ce_alpha"], "α")  # gamma 0 focal runs are alpha-balanced CE
    assert ce.loc["0.75", "AP"] == "**0.305 ± 0.007 (2)**"
    assert ce.loc["0.25", "paper AP (Focal Loss paper Table 1a, ResNet-50 on COCO, 0-1)"] == "0.108"  # 10.8%


@pytest.mark.slow
def test_cli_report_writes_tables_figures_and_runs(comparison, tmp_path):
    out = tmp_path / "report"
    result = ghmbench_cli("report", str(comparison), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "0.700 ± 0.100 (3)" in result.stdout and "diverged" in result.stdout
    for name in [
        "runs.csv",
        "runs.parquet",
        "summary.md",
        "summary.tex",
        "summary.csv",
        "loss_comparison.md",
        "loss_comparison.tex",
        "report.md",
    ]:
        assert (out / name).is_file(), name
    for png in ["loss_comparison.png", "gradient_norm_distribution.png", "reweighted_gradient_norm.png"]:
        assert (out / png).stat().st_size > 1000 and f"figure: {out / png}" in result.stdout.replace("\n", "")
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 12 and (runs["status"] == "diverged").sum() == 2
    report = (out / "report.md").read_text()
    figures = re.findall(r"^!\[(\w+)\]\(\w+\.png\)\n\n\*(.+)\*$", report, flags=re.M)  # each with its caption
    assert {name for name, _ in figures} >= {"loss_comparison", "reweighted_gradient_norm"}
    assert all(len(caption) > 80 for _, caption in figures)
    assert "setup check" not in (out / "report.md").read_text()
    note = "A setup check at 12 epochs, not a verdict."  # what make bench-quick writes under the title
    by_loss = ghmbench_cli(
        "report", str(comparison), "--out", str(out), "--group-by", "loss", "--metric", "AP50", "--note", note
    )
    assert by_loss.returncode == 0
    assert (out / "report.md").read_text().startswith(
        f"# ghmbench report\n\n**{note}**\n"
    ) and f"**{note}**" in by_loss.stdout
    summary = pd.read_csv(out / "summary.csv")
    assert summary["loss"].tolist() == ["ce", "focal", "ghm"] and summary["runs"].tolist() == [5, 3, 4]


@pytest.mark.slow
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


@pytest.mark.slow
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
    cells = shown(table, "M")
    assert cells.loc["10", "best momentum"] == "0.75" and cells.loc["30", "best momentum"] == "0"
    assert cells.loc["30", "momentum=0.9"] == "diverged (1/1)"
    assert cells.loc["30", "best AP"] == "**0.400**"
    assert cells.loc["10", "paper AP by M (GHM paper, ResNet-50 on COCO, 0-1)"] == "0.346"


# ----------------------------------------------------------------------------- the fair comparison

PROTOCOL = {"tune": ["train.lr=0.001,0.002"], "tune_with": ["regression=smooth_l1", "seed=0"], "select_metric": "AP"}


def rising_curve(rise: float, steps: int = 200) -> list[dict]:
    """Validation points every 25 steps, flat until 75% of training, then rising by ``rise``."""
    return [
        {"epoch": k, "step": 25 * k, "AP": 0.3 + max(0.0, rise * (25 * k - 0.75 * steps) / (0.25 * steps)), "AP50": 0.5}
        for k in range(1, steps // 25 + 1)
    ]


def write_protocol_run(
    root: Path,
    loss: str,
    reg: str,
    lr: float,
    seed: int,
    val: float,
    test: float,
    rise: float = 0.0,
    split: str = "test",
) -> Path:
    """A protocol run: reported (test) AP ``test``, validation AP ``val``, a validation curve."""
    metrics = {"AP": test, "AP50": test + 0.2}
    return write_run(
        root,
        [f"loss={loss}", f"regression={reg}", f"train.lr={lr}"],
        seed,
        test,
        protocol=PROTOCOL,
        metrics_split=split,
        val_metrics={"AP": val, "AP50": val + 0.2},
        test_metrics=metrics if split == "test" else None,
        curve=rising_curve(rise),
        steps=200,
        anchors={
            "positive_per_image": 10.0,
            "negative_per_image": 2000.0,
            "ignored_per_image": 5.0,
            "neg_per_pos": 200.0,
        },
    )


@pytest.fixture
def protocol_runs(tmp_path: Path) -> Path:
    """ce selects lr .002 (val .40 > .30) though its test AP is lower there; focal selects .001
    though the unselected .002 has the higher test AP; focal + GHM-R is still rising."""
    root = tmp_path / "runs"
    write_protocol_run(root, "ce", "smooth_l1", 0.001, 0, val=0.30, test=0.90)
    write_protocol_run(root, "focal", "smooth_l1", 0.002, 0, val=0.45, test=0.95)
    test_ap = {
        ("ce", "smooth_l1"): [0.20, 0.22, 0.24],
        ("ce", "ghm"): [0.25, 0.26, 0.30],
        ("focal", "smooth_l1"): [0.40, 0.43, 0.44],
        ("focal", "ghm"): [0.39, 0.47, 0.44],
    }
    lr = {"ce": 0.002, "focal": 0.001}
    for (loss, reg), values in test_ap.items():
        for seed, test in enumerate(values):
            val = {"ce": 0.40, "focal": 0.50}[loss] if (reg, seed) == ("smooth_l1", 0) else 0.1
            write_protocol_run(
                root,
                loss,
                reg,
                lr[loss],
                seed,
                val=val,
                test=test,
                rise=0.02 if (loss, reg) == ("focal", "ghm") else 0.0,
            )
    return root


def t_cell(values: list[float]) -> str:
    from scipy import stats

    ci = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    return f"{sum(values) / len(values):.3f} [{ci.low:.3f}, {ci.high:.3f}] ({len(values)})"


def test_protocol_headline_reports_test_metric_of_final_runs(protocol_runs):
    df, _ = load_runs([protocol_runs])
    assert df["final"].sum() == 12 and df.loc[(df["loss"] == "ce") & (df["train.lr"] == 0.001), "final"].tolist() == [
        False
    ]
    tables = {t.name: t for t in build_tables(df, "AP", None)}
    head = tables["headline"]
    cells = shown(head, "classification")
    assert cells.loc["CE", "smooth L1"] == t_cell(
        [0.20, 0.22, 0.24]
    )  # test AP of lr .002, not val, not the lr .001 run's .90
    assert cells.loc["Focal", "smooth L1"] == t_cell([0.40, 0.43, 0.44])  # not the unselected lr .002 run's .95
    assert cells.loc["Focal", "GHM-R"] == "**" + t_cell([0.39, 0.47, 0.44]) + " not converged**"  # the best mean
    assert "not converged" not in cells.loc["CE", "GHM-R"]
    assert (
        cells.loc["CE", "selected on val AP"] == "train.lr=0.002"
        and cells.loc["Focal", "selected on val AP"] == "train.lr=0.001"
    )
    assert "test AP" in head.title and any("held-out test split" in n for n in head.notes)
    cands = tables["candidates"].numbers
    assert cands[["loss", "train.lr", "val_AP", "selected"]].values.tolist() == [
        ["ce", 0.001, 0.30, False],
        ["ce", 0.002, 0.40, True],
        ["focal", 0.001, 0.50, True],
        ["focal", 0.002, 0.45, False],
    ]
    candidates = shown(tables["candidates"], "loss")
    assert candidates["val_AP"].tolist()[1] == "**0.400 (selected)**"
    assert list(candidates.columns) == ["train.lr", "val_AP", "runs"] and candidates["runs"].tolist() == ["1/1"] * 4
    summary = tables["summary"].cells.set_index(["loss", "regression", "train.lr"])
    assert summary.loc[("Focal", "GHM-R", "0.001"), "converged"].startswith("not converged (+0.020")
    assert summary.loc[("CE", "GHM-R", "0.002"), "converged"] == "yes"
    diffs = tables["differences"].cells.set_index(["A − B", "under"])
    assert diffs.loc[("Focal − CE", "regression smooth L1"), "verdict"] == "Focal > CE"
    assert diffs.loc[("Focal − CE", "regression smooth L1"), "paired"] == "paired by seed (n=3)"
    assert diffs.loc[("GHM-R − smooth L1", "classification Focal"), "verdict"] == "no clear difference"
    assert diffs.loc[("GHM-R − smooth L1", "classification CE"), "verdict"] == "GHM-R > smooth L1"  # +.05, +.04, +.06


def test_validation_only_protocol_says_so(tmp_path):
    root = tmp_path / "runs"
    for loss, lr, val in (("ce", 0.001, 0.3), ("ce", 0.002, 0.4), ("focal", 0.001, 0.5), ("focal", 0.002, 0.2)):
        write_protocol_run(root, loss, "smooth_l1", lr, 0, val=val, test=val, split="val")
    df, _ = load_runs([root])
    head = {t.name: t for t in build_tables(df, "AP", None)}["headline"]
    assert "val AP" in head.title and any("used the same split" in n for n in head.notes)
    assert head.cells.set_index("classification").loc["CE", "smooth L1"] == "0.400 (1)"  # no eval files: no interval


def write_eval_run(root: Path, loss: str, gt: dict, detections: list[dict]) -> Path:
    folder = write_run(root, [f"loss={loss}"], 0, 0.0)
    record = json.loads((folder / METRICS_FILE).read_text())
    from ghmbench.detection.evaluation import coco_evaluate

    metrics = {k: v for k, v in coco_evaluate(gt, detections).items() if k != "per_class_AP"}
    write_json(folder / "ground_truth_test.json", gt)
    write_json(folder / "detections_test.json", detections)
    record |= {
        "metrics": metrics,
        "test_metrics": metrics,
        "metrics_split": "test",
        "eval_files": {"split": "test", "detections": "detections_test.json", "ground_truth": "ground_truth_test.json"},
    }
    write_json(folder / METRICS_FILE, record)
    return folder


def test_single_runs_get_image_bootstrap_intervals_and_differences(tmp_path):
    from tests.test_reporting_intervals import tiny_coco

    gt, perfect, noisy = tiny_coco(30)
    root = tmp_path / "runs"
    write_eval_run(root, "focal", gt, perfect)
    write_eval_run(root, "ce", gt, noisy)
    df, _ = load_runs([root])
    tables = {t.name: t for t in build_tables(df, "AP", None, n_boot=100)}
    cells = shown(tables["headline"], "classification")
    assert cells.loc["Focal", "smooth L1"] == "**1.000 [1.000, 1.000] (1, image bootstrap)**"
    assert cells.loc["CE", "smooth L1"].endswith("(1, image bootstrap)") and cells.loc["CE", "smooth L1"] != "-"
    diff = tables["differences"].numbers.iloc[0]
    assert (
        diff["paired"].startswith("paired image bootstrap (B=100")
        and diff["verdict"] == "Focal > CE"
        and diff["lo"] > 0
    )
    again = {t.name: t for t in build_tables(df, "AP", None, n_boot=100)}
    assert again["headline"].cells.equals(tables["headline"].cells)  # seeded: the same intervals


def test_imbalance_table(tmp_path):
    root = tmp_path / "runs"
    for loss, base in (("ce", 0.2), ("ghm", 0.3)):
        for objects, ratio in ((1, 600.0), (4, 150.0)):
            for seed in (0, 1):
                ap = base + 0.05 * objects + 0.01 * seed
                write_run(
                    root,
                    [f"loss={loss}", f"dataset.max_objects={objects}", f"dataset.min_objects={objects}"],
                    seed,
                    ap,
                    anchors={"neg_per_pos": ratio + seed},
                )
    df, _ = load_runs([root])
    table = {t.name: t for t in build_tables(df, "AP", None)}["imbalance"]
    nums = table.numbers
    assert nums[["loss", "dataset.max_objects", "neg_per_pos", "n"]].values.tolist() == [
        ["ce", 4, 150.5, 2],
        ["ce", 1, 600.5, 2],
        ["ghm", 4, 150.5, 2],
        ["ghm", 1, 600.5, 2],
    ]
    assert table.cells.loc[0, "AP"] == t_cell([0.4, 0.41]) and table.cells.loc[0, "neg:pos"] == "150"
    figure = figures.imbalance(table.numbers, df, "AP", tmp_path)
    assert figure.path.stat().st_size > 1000
    assert re.match(r"(Test|Validation) AP\b", figure.caption), figure.caption  # the metric keeps its case


@pytest.mark.slow
def test_cli_report_protocol_runs(protocol_runs, tmp_path):
    (protocol_runs / "broken-run").mkdir()
    (protocol_runs / "broken-run" / METRICS_FILE).write_text('{"run_key": ')
    out = tmp_path / "report"
    result = ghmbench_cli("report", str(protocol_runs), "--out", str(out), "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        len(warnings) == 1
        and "broken-run" in warnings[0]
        and "skipped" in warnings[0]
        and "Traceback" not in result.stderr
    )
    assert "; 1 unreadable metrics.json skipped." in result.stdout  # counted in the report's header
    assert (
        "Headline: test AP" in result.stdout
        and "held-out test split" in result.stdout
        and "(selected)" in result.stdout
    )
    assert t_cell([0.20, 0.22, 0.24]) in result.stdout and "not converged" in result.stdout
    for name in [
        "headline.md",
        "headline.csv",
        "candidates.csv",
        "differences.csv",
        "learning_curves.png",
        "loss_comparison.png",
    ]:
        assert (out / name).is_file() and (out / name).stat().st_size > 100, name
    head = pd.read_csv(out / "headline.csv")
    assert head["not_converged"].tolist() == [False, False, False, True] and head["split"].eq("test").all()
    check_verdicts_by_budget(out, tmp_path)


def check_verdicts_by_budget(report: Path, tmp_path: Path) -> None:
    """scripts/verdicts_by_budget.py on a report the CLI wrote: one column per report, the
    verdicts of differences.csv, and the pairs that involve a *not converged* cell marked so."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "verdicts_by_budget", Path(__file__).parents[1] / "scripts" / "verdicts_by_budget.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    table = script.verdict_table({"first": report, "again": report}).set_index(["A − B", "under"])
    assert table["first"].equals(table["again"])
    assert table.loc[("Focal − CE", "regression smooth L1"), "first"].endswith("Focal > CE")
    assert table.loc[("GHM-R − smooth L1", "classification CE"), "first"].endswith("GHM-R > smooth L1")
    for key in [
        ("Focal − CE", "regression GHM-R"),
        ("GHM-R − smooth L1", "classification Focal"),
    ]:  # focal + GHM-R is still rising
        assert table.loc[key, "first"].endswith("(not converged)"), key
    assert not table.loc[("GHM-R − smooth L1", "classification CE"), "first"].endswith("(not converged)")
    assert script.main([f"x={tmp_path / 'missing'}"]) == 2


def test_summary_rows_are_sorted_by_their_keys(tmp_path):
    root = tmp_path / "runs"
    for loss, lr in (("ghm", 0.003), ("focal", 0.01), ("ce", 0.003), ("focal", 0.002), ("ghm", 0.001)):
        write_run(root, [f"loss={loss}", f"train.lr={lr}"], 0, 0.3)
    df, _ = load_runs([root])
    summary = {t.name: t for t in build_tables(df, "AP", None)}["summary"]
    assert summary.cells[["loss", "train.lr"]].values.tolist() == [
        ["CE", "0.003"],
        ["Focal", "0.002"],
        ["Focal", "0.01"],  # by value, not as text
        ["GHM-C", "0.001"],
        ["GHM-C", "0.003"],
    ]
    assert summary.numbers["loss"].tolist() == ["ce", "focal", "focal", "ghm", "ghm"]  # the CSV keeps the keys


def test_reweighted_gradient_curves_share_one_total():
    import numpy as np

    from ghmbench.reporting.gradient_figures import focal_reweighted, scaled

    g = (np.arange(1000) + 0.5) / 1000
    frac = np.r_[0.97, np.full(9, 0.03 / 9)]  # the flood of easy entries in the first of 10 bins
    weights = np.interp(g, (np.arange(10) + 0.5) / 10, frac)
    focal = scaled(focal_reweighted(g, 2.0), g, frac)
    assert np.sum(weights * focal) == pytest.approx(np.sum(weights * g))  # the same total gradient as CE
    ratio = focal / focal_reweighted(g, 2.0)
    assert np.allclose(ratio, ratio[0]) and ratio[0] > 1  # one factor: the shape kept, Focal's total raised


def test_iou_aware_claims_by_hand(tmp_path):
    """VFL gains .10 AP75 and .02 AP50 over Focal at every seed, QFL the same at both thresholds (a noisy gain)."""
    root = tmp_path / "runs"
    for seed, ap in enumerate([0.40, 0.45, 0.50]):
        write_run(root, ["loss=focal"], seed, ap)
        vfl = write_run(root, ["loss=vfl"], seed, ap + 0.05)
        record = json.loads((vfl / METRICS_FILE).read_text())
        record["metrics"] |= {"AP50": ap + 0.22, "AP75": ap + 0.2}  # Focal: + .2 and + .1
        write_json(vfl / METRICS_FILE, record)
        write_run(root, ["loss=qfl"], seed, ap + [0.03, -0.02, 0.01][seed])
    tables = {t.name: t for t in build_tables(load_runs([root])[0], "AP", None, n_boot=0)}
    got = shown(tables["iou_aware"], "claim")
    assert got.loc["VFL > Focal (AP75)", "Δ [95% interval]"] == "+0.100 [+0.100, +0.100]"
    assert got.loc["VFL > Focal (AP50)", "Δ [95% interval]"] == "+0.020 [+0.020, +0.020]"
    assert got.loc["VFL gains more in AP75 than in AP50 (IoU-aware)", "verdict"] == "reproduces"
    assert got.loc["QFL > Focal (AP)", "verdict"] == "no clear difference"
    qfl_gap = got.loc["QFL gains more in AP75 than in AP50 (IoU-aware)", "Δ [95% interval]"]
    assert float(qfl_gap.split()[0]) == pytest.approx(0.0, abs=1e-9)
    assert "VFL: RetinaNet R-50 1x, Focal 0.365 -> 0.374" in tables["iou_aware"].markdown()
    differences = shown(tables["differences"], "A − B")
    assert differences.loc["VFL − Focal", "verdict"] == "VFL > Focal"
