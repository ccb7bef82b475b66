"""``ghmbench data export`` and ``ghmbench data check``: write the embedded dataset to disk, validate a
dataset and print its statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ghmbench.cli.common import config_dir_option, err, fail, out
from ghmbench.config.compose import compose_config, validate
from ghmbench.errors import ConfigError

data_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Datasets: export the embedded one as COCO or YOLO files, validate one and print its statistics.",
)

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
        fail(f"data export {name}: unknown dataset; allowed: digits")
    if fmt not in ("coco", "yolo"):
        fail(f"--format {fmt}: unknown format; allowed: coco, yolo")
    try:
        cfg = validate(compose_config([f"dataset={name}", *(overrides or [])]))
        train_split, val_split, test_split = build_datasets(cfg)
    except ConfigError as e:
        fail(str(e))
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
    config_dir: Optional[list[Path]] = config_dir_option(),
) -> None:
    import ghmbench
    from ghmbench.detection.dataset_check import check_dataset

    try:
        check = check_dataset(ghmbench.load_config(overrides or [], config_dir=config_dir or []))
    except ConfigError as e:
        fail(str(e))
    out.print(check.anchors, highlight=False, soft_wrap=True)
    out.print(_table(check.title, "", check.splits, check.overview))
    if check.warning:
        err.print(f"[yellow]warning:[/] {check.warning}", highlight=False, soft_wrap=True)
    out.print(_table("objects per class", "class", check.splits, check.per_class))


def _table(title: str, first: str, columns: list[str], rows: dict[str, list[str]]) -> Table:
    """A rich table: one row per key of ``rows``, one right-aligned column per split."""
    table = Table(title=title)
    table.add_column(first)
    for column in columns:
        table.add_column(column, justify="right")
    for key, values in rows.items():
        table.add_row(key, *values)
    return table
