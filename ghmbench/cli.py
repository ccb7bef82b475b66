"""The ``ghmbench`` command line (Typer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from ghmbench import __version__ as ghmbench_version
from ghmbench.config.compose import compose_config, searchpath_overrides, validate
from ghmbench.errors import ConfigError
from ghmbench.store.fields import COMPLETE_STATUSES, COMPLETED, DIVERGED

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},  # every command inherits it (click contexts)
    help=(
        "Benchmark classification losses for one-stage detectors: cross-entropy, Focal Loss and "
        "GHM (GHM-C / GHM-R), with COCO AP.\n\n"
        "Every command takes Hydra overrides of the configs in `conf/`: groups `loss` (ce, focal, ghm, custom), "
        "`regression` (smooth_l1, l1, ghm, custom), `model` (small, sparse, resnet18, retinanet_r18), `dataset` "
        "(digits, digits_sparse, coco, voc, yolo), "
        "`train`, plus `seed`, `device` and `paths.runs_dir`; `--config-dir DIR` adds your own config groups and "
        "presets."
    ),
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"ghmbench {ghmbench_version}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run `ghmbench COMMAND --help` for a command's overrides and examples."""


err = Console(stderr=True)
out = Console()
if not out.is_terminal:  # logs and pipes: wide enough for the summary table
    out.width = max(out.width, 120)

TRAIN_HELP = """Train one configuration, evaluate it with COCO metrics, and write its run folder.

OVERRIDES are Hydra overrides, e.g.:

* `ghmbench train` (focal loss + smooth L1 on the embedded digits dataset)

* `ghmbench train loss=focal loss.gamma=1 loss.alpha=0.5 regression=ghm seed=3`

* `ghmbench train loss=ce loss.alpha=0.75`

* `ghmbench train loss=ghm loss.bins=10 loss.momentum=0.5 train.epochs=6`

* `ghmbench train model=resnet18 device=cuda paths.runs_dir=/data/runs`

* `ghmbench train device=cuda train.amp=bf16 train.channels_last=true` (bfloat16 forward; losses and GHM
weights stay float32)

* `ghmbench train loss=custom loss._target_=my_pkg.MyLoss +loss.my_param=3 loss.name=my_loss` (a loss of
  your own: a torch.nn.Module with `forward(pred, target, label_weight, avg_factor=None, level_ids=None)`, importable;
  every key but `name` is passed to it; `regression=custom` likewise)

* `ghmbench train --config-dir my_conf experiment=my_ci loss=my_loss` (your own presets and losses as
  `my_conf/experiment/my_ci.yaml`, `my_conf/loss/my_loss.yaml`, beside the built-in ones)

* `torchrun --nproc_per_node=4 -m ghmbench train device=cuda loss=ghm` (one run on 4 GPUs: the global batch
  `train.batch_size` is split over the processes, GHM counts its density over the global batch; also under
  `srun` with one task per GPU)

Exit codes: 0 done (and, with `experiment=smoke`, the smoke check passed); 1 the run diverged or
failed, or the smoke check failed; 2 a bad override, config or loss target (one line, nothing trained), or the run
folder is being trained by another process.

The run folder `<paths.runs_dir>/<loss>-<regression>-s<seed>-<key>` holds config.yaml,
metrics.json, detections.json (COCO results), train.log and checkpoint.pt. The key is derived
from the config, so repeating a finished command reuses its record (use --force to retrain),
and an interrupted one resumes from its last checkpoint.
"""


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


SHOWN_METRICS = ["AP", "AP50", "AP75", "AR100"]  # the records tables' metric columns


def _records_table(records: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col in ["run", "loss", "regression", "seed", "status", *SHOWN_METRICS, "wall s"]:
        table.add_column(col, justify="right" if col not in ("run", "loss", "regression", "status") else "left")
    for record in records:
        metrics = record.get("metrics") or {}
        status = record["status"] + (f" @ step {record['diverged_at_step']}" if record["status"] == DIVERGED else "")
        shown = (_fmt(metrics.get(name)) for name in SHOWN_METRICS)
        table.add_row(
            record["run_key"],
            record["loss"],
            record["regression"],
            str(record["seed"]),
            status,
            *shown,
            f"{record.get('wall_time_s', 0):.1f}",
        )
    return table


@app.command(
    help=TRAIN_HELP,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides, KEY=VALUE or GROUP=OPTION.", show_default=False
    ),
    force: bool = typer.Option(False, "--force", help="Retrain even when a complete record exists."),
    print_config: bool = typer.Option(False, "--cfg", help="Print the resolved config and exit."),
    config_dir: Optional[list[Path]] = typer.Option(
        None,
        "--config-dir",
        help=(
            "Your own config folder (groups such as loss/, experiment/), searched after the built-in configs; "
            "repeatable."
        ),
        show_default=False,
    ),
) -> None:
    from omegaconf import OmegaConf

    import ghmbench
    from ghmbench import distributed

    if not distributed.is_main():  # under torchrun / srun only rank 0 prints
        out.quiet = err.quiet = True
    try:
        cfg = ghmbench.load_config(overrides or [], config_dir=config_dir or [])
    except ConfigError as e:
        _fail(str(e))
    if print_config:
        out.print(OmegaConf.to_yaml(cfg), highlight=False)
        return
    from ghmbench.store.lock import RunLocked

    try:
        record = ghmbench.train(cfg, force=force)
    except (ConfigError, RunLocked) as e:
        _fail(str(e))
    out.print(_records_table([record], "existing record (use --force to retrain)" if record.get("skipped") else "run"))
    out.print(f"run folder: {record['run_dir']}", highlight=False, soft_wrap=True)
    if record["status"] != COMPLETED:
        raise typer.Exit(code=1)
    if cfg.train.smoke_check:
        from ghmbench.store.records import smoke_failures

        problems = smoke_failures(record)
        if problems:
            err.print(f"[bold red]smoke check failed:[/] {'; '.join(problems)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1)
        out.print("smoke check passed: finite, decreasing loss and AP > 0", highlight=False)


SWEEP_HELP = """Train every configuration of a grid through Hydra's multirun, then print their results.

Grids are written as in Hydra; presets (`experiment=...`) bring their own grid:

* `ghmbench sweep loss=focal loss.alpha=0.25,0.5,0.75 loss.gamma=0,1,2 seed=0,1,2`

* `ghmbench sweep experiment=loss_comparison` (the fair comparison: each of CE / Focal / GHM-C is tuned
  on the same lr x batch-size grid, selected on validation AP, then run with smooth L1 and GHM-R x 3
  seeds and reported on the test split; see `protocol` below)

* `ghmbench sweep loss=ce,focal seed=0,1,2 'protocol.tune=["train.lr=0.001,0.003"]' 'protocol.tune_with=["seed=0"]'`
  (any sweep with a non-empty `protocol.tune` runs in two stages: every loss x the tuning grid with
  `protocol.tune_with` fixed, then the sweep's own grid at each loss's setting with the best
  validation `protocol.select_metric`; runs shared by both stages are trained once)

* `ghmbench sweep experiment=focal_grid` · `experiment=ghm_ablation` · `experiment=smoke loss=ce,focal,ghm`

* `ghmbench sweep --config-dir my_conf experiment=smoke loss=focal,my_loss` (your loss beside Focal: its
  YAML `my_conf/loss/my_loss.yaml` names its class with `_target_`; also in the protocol)

* `ghmbench sweep experiment=loss_comparison scale=gpu device=cuda` (a preset at GPU scale: its own regime with
  resnet18, 10x the training images, 36 epochs; `scripts/gpu_comparison.sh`. `budget=full` sizes the default run only)

* `ghmbench sweep ... hydra/launcher=joblib hydra.launcher.n_jobs=2` (parallel processes; each
  gets cores / n_jobs threads)

* `ghmbench sweep ... hydra/launcher=slurm hydra.launcher.partition=gpu device=cuda` (a SLURM cluster, one GPU
  per run; `hydra.launcher.gpus_per_node=4`: each run on 4 GPUs, one process per GPU)

* `ghmbench sweep ... device=cuda hydra/launcher=joblib hydra.launcher.n_jobs=4` (4 small runs at once on one GPU)

Every run lands in its keyed folder under `paths.runs_dir`: running the same sweep again skips
finished runs and resumes interrupted ones from their last checkpoint (`--force` retrains).
Then `ghmbench report` turns the folder into tables and figures.
"""


@app.command(help=SWEEP_HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides; comma lists are swept.", show_default=False
    ),
    force: bool = typer.Option(False, "--force", help="Retrain runs that already have a complete record."),
    config_dir: Optional[list[Path]] = typer.Option(
        None,
        "--config-dir",
        help=(
            "Your own config folder (groups such as loss/, experiment/), searched after the built-in configs; "
            "repeatable."
        ),
        show_default=False,
    ),
) -> None:
    from ghmbench.store.records import is_complete, read_record, run_dir, smoke_failures
    from ghmbench.sweep.grid import absolute_paths, expand_jobs, validate_jobs
    from ghmbench.sweep.launch import launch
    from ghmbench.sweep.protocol import protocol_of, run_protocol

    try:
        overrides = list(overrides or [])
        overrides = absolute_paths([*searchpath_overrides(config_dir or [], overrides), *overrides])
        proto = protocol_of(overrides)
        if proto is not None:
            cfgs = run_protocol(overrides, proto, force, lambda text: out.print(text, highlight=False, soft_wrap=True))
        else:
            jobs = expand_jobs(overrides)
            cfgs = validate_jobs(jobs)
    except ConfigError as e:
        _fail(str(e))
    if proto is None:
        done = sum(is_complete(run_dir(c)) for c in cfgs)
        out.print(
            f"sweep: {len(jobs)} runs, {done} with a complete "
            f"record{' (retrained: --force)' if force and done else ''}",
            highlight=False,
        )
        launch(overrides, force, runs=len(jobs))
    if not cfgs:
        err.print("[bold red]the protocol selected no setting: no tuning run completed[/]", highlight=False)
        raise typer.Exit(code=1)
    records = [
        read_record(run_dir(c))
        or {"run_key": "-", "loss": c.loss.name, "regression": c.regression.name, "seed": c.seed, "status": "missing"}
        for c in cfgs
    ]
    out.print(_records_table(records, "sweep results"))
    out.print(
        f"runs folder: {cfgs[0].paths.runs_dir}  (next: ghmbench report {cfgs[0].paths.runs_dir})",
        highlight=False,
        soft_wrap=True,
    )
    bad = [r for r in records if r["status"] not in COMPLETE_STATUSES]
    smoke = [r for c, r in zip(cfgs, records) if c.train.smoke_check and r["status"] != "missing" and smoke_failures(r)]
    if bad or smoke:
        err.print(f"[bold red]{len(bad)} failed or missing runs, {len(smoke)} failed smoke checks[/]", highlight=False)
        raise typer.Exit(code=1)


REPORT_HELP = """Turn run records into tables and figures.

Reads every `<run>/metrics.json` under the given runs folders (default: `runs`) and writes to
`--out` (default: `<first folder>/report`): runs.csv and runs.parquet (every run), summary /
headline / differences / candidates / imbalance / loss_comparison / ce_alpha / focal_gamma_alpha /
ghm_bins_momentum / focal_settings and ghm_settings (with _best, _tuning, _seeds) / label_noise /
shapes tables as .md, .tex and .csv (whichever the runs allow), PNG figures, and report.md.
Diverged and failed runs are counted and shown; the best value per column is in bold.

Runs of a `protocol` sweep are compared fairly: each loss's setting is selected on validation,
and the headline (mean [95% interval] (n) over seeds; an image bootstrap for a single run) and the
paired differences use only the runs at the selected settings, on the test split when there is
one. Configurations whose validation AP still rose in the last quarter of training are marked
*not converged*. Unreadable records are skipped with a warning.

* `ghmbench report` · `ghmbench report runs other_runs --out report`

* `ghmbench report --metric AP50 --group-by loss,loss.gamma --bootstrap 0`
"""


@app.command(help=REPORT_HELP)
def report(
    runs_dirs: Optional[list[Path]] = typer.Argument(None, help="Runs folders (or run folders).", show_default=False),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", help="Output folder [default: `<first runs folder>/report`]."
    ),
    metric: str = typer.Option(
        "AP",
        "--metric",
        help="Metric of the paper-shaped tables and figures: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100.",
    ),
    group_by: Optional[str] = typer.Option(
        None,
        "--group-by",
        help=(
            "Comma-separated columns of the summary table [default: loss, regression and every config key that varies]."
        ),
    ),
    bootstrap: int = typer.Option(
        500, "--bootstrap", min=0, help="Image bootstrap replicates for single-run intervals and differences (0 = off)."
    ),
    note: Optional[str] = typer.Option(
        None,
        "--note",
        help=(
            "A line in bold under the report's title, e.g. what its runs are for (`make bench-quick`: a setup check, "
            "not a verdict)."
        ),
        show_default=False,
    ),
) -> None:
    from ghmbench.reporting.report import make_report
    from ghmbench.reporting.run_table import ReportError

    try:
        result = make_report(list(runs_dirs or [Path("runs")]), out_dir, metric, group_by, bootstrap, note)
    except ReportError as e:
        _fail(str(e))
    out.print(result.path.read_text().split("### Figures")[0], highlight=False, markup=False, soft_wrap=True)
    for fig in result.figures:
        out.print(f"figure: {fig}", highlight=False, soft_wrap=True)
    out.print(
        f"report: {result.path} (tables as .md/.tex/.csv and runs.csv/.parquet beside it)",
        highlight=False,
        soft_wrap=True,
    )


data_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Datasets: export the embedded one as COCO or YOLO files, validate one and print its statistics.",
)
app.add_typer(data_app, name="data")

EXPORT_HELP = """Write a dataset to disk in COCO format (`--format coco`): `OUT/train/*.png`, `OUT/val/*.png`
(and `OUT/test/` with `dataset.num_test`), `OUT/annotations/instances_{train,val[,test]}.json`; or in YOLO
format (`--format yolo`):
`OUT/images/{train,val[,test]}/*.png`, `OUT/labels/{train,val[,test]}/*.txt` and `OUT/data.yaml`.

* `ghmbench data export digits --format coco /tmp/digits_coco`

* `ghmbench data export digits --format yolo /tmp/digits_yolo`

* `ghmbench data export digits --format coco /tmp/d dataset.num_train=500 dataset.class_freq=[10,1,1,1,1,1,1,1,1,1]`

Train on the export with `ghmbench train dataset=coco dataset.root=OUT dataset.train_split=train
dataset.val_split=val dataset.image_size=64 dataset.channels=1` (COCO) or `ghmbench train dataset=yolo
dataset.root=OUT dataset.image_size=64 dataset.channels=1` (YOLO).
"""


@data_app.command(
    "export", help=EXPORT_HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def data_export(
    name: str = typer.Argument(..., help="Dataset to export: digits."),
    out_dir: Path = typer.Argument(..., help="Output folder (created)."),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides of dataset.* (e.g. dataset.num_train=500).", show_default=False
    ),
    fmt: str = typer.Option("coco", "--format", help="Output format: coco or yolo."),
) -> None:
    from ghmbench.data.builder import build_datasets
    from ghmbench.data.formats.export import export_coco, export_yolo

    if name != "digits":
        _fail(f"data export {name}: unknown dataset; allowed: digits")
    if fmt not in ("coco", "yolo"):
        _fail(f"--format {fmt}: unknown format; allowed: coco, yolo")
    try:
        cfg = validate(compose_config([f"dataset={name}", *(overrides or [])]))
        train_split, val_split, test_split = build_datasets(cfg)
    except ConfigError as e:
        _fail(str(e))
    for split_name, split in (("train", train_split), ("val", val_split), ("test", test_split)):
        if split is None:
            continue
        if fmt == "yolo":
            written = export_yolo(split, out_dir, split_name, train_split.class_names)
            where = f"{out_dir / 'images' / split_name}/, {out_dir / 'labels' / split_name}/, {written}"
        else:
            where = f"{out_dir / split_name}/, {export_coco(split, out_dir, split_name)}"
        out.print(
            f"{split_name}: {len(split)} images, {sum(map(len, split.boxes))} objects -> {where}",
            highlight=False,
            soft_wrap=True,
        )
    size, channels = train_split.images.shape[-1], train_split.images.shape[1]
    dataset = (
        f"dataset=yolo dataset.root={out_dir}"
        if fmt == "yolo"
        else f"dataset=coco dataset.root={out_dir} dataset.train_split=train dataset.val_split=val"
    )
    out.print(
        f"train on it: ghmbench train {dataset} dataset.image_size={size} dataset.channels={channels}",
        highlight=False,
        soft_wrap=True,
    )


CHECK_HELP = """Validate a dataset and print its statistics: images, objects per class, box sizes,
and the anchor imbalance it gives the configured detector (positive : negative : ignored anchors
per image), the quantity these losses exist for. Warns (one line, as at the start of a run) when more
than 20% of the training objects are matched only by the low-quality rule: the anchors do not fit
the objects' sizes. Invalid content is reported as in training
(one line naming the file and annotation, exit code 2; `dataset.on_invalid=skip` counts drops).

* `ghmbench data check` (the embedded digits dataset)

* `ghmbench data check dataset=coco dataset.root=/data/coco model=retinanet_r18`

* `ghmbench data check dataset=voc dataset.root=/data/voc dataset.on_invalid=skip`

* `ghmbench data check dataset=yolo dataset.root=/data/my_yolo/data.yaml model=retinanet_r18`
"""


@data_app.command("check", help=CHECK_HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def data_check(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides (dataset=..., dataset.*, model.*).", show_default=False
    ),
    config_dir: Optional[list[Path]] = typer.Option(
        None,
        "--config-dir",
        help=(
            "Your own config folder (groups such as loss/, experiment/), searched after the built-in configs; "
            "repeatable."
        ),
        show_default=False,
    ),
) -> None:
    import ghmbench
    from ghmbench.data.builder import build_datasets
    from ghmbench.detection import anchor_fit
    from ghmbench.detection.model import build_model

    try:
        cfg = ghmbench.load_config(overrides or [], config_dir=config_dir or [])
        train_split, val_split, test_split = build_datasets(cfg)
    except ConfigError as e:
        _fail(str(e))
    channels = train_split.images.shape[1]
    anchors = anchor_fit.detector_anchors(
        build_model(cfg, train_split.num_classes, channels), channels, cfg.dataset.image_size
    )
    splits = tuple(
        (n, s) for n, s in (("train", train_split), ("val", val_split), ("test", test_split)) if s is not None
    )
    overview = Table(title=f"dataset={cfg.dataset.name} (input {cfg.dataset.image_size} px)")
    overview.add_column("")
    for split_name, _ in splits:
        overview.add_column(split_name, justify="right")
    rows: dict[str, list[str]] = {"images": [str(len(s)) for _, s in splits]}
    rows["images without objects"] = [str(sum(len(b) == 0 for b in s.boxes)) for _, s in splits]
    for split_name, split in splits:
        for key, value in anchor_fit.box_sizes(split).items():
            rows.setdefault(key, []).append(str(value))
        for key, value in anchor_fit.anchor_imbalance(split, anchors, split.num_classes, cfg.model).items():
            rows.setdefault(key, []).append(str(value))
    rows["dropped (on_invalid=skip)"] = [
        ", ".join(f"{k} {n}" for k, n in s.dropped.items()) or "none" for _, s in splits
    ]
    for key, values in rows.items():
        overview.add_row(key, *values)
    out.print(overview)
    warning = anchor_fit.anchor_fit_warning(train_split, anchors, cfg.model, cfg.dataset.image_size)
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    per_class = Table(title="objects per class")
    per_class.add_column("class")
    for split_name, _ in splits:
        per_class.add_column(split_name, justify="right")
    counts = [anchor_fit.class_counts(s) for _, s in splits]
    for k, name in enumerate(train_split.class_names):
        per_class.add_row(name, *(str(c[k]) for c in counts))
    out.print(per_class)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="ghmbench")


if __name__ == "__main__":
    sys.exit(main())
