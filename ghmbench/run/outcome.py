"""What a finished run records: the final evaluation on validation (and test), its detections and
ground truth for the report's bootstrap, time and place, written to metrics.json by rank 0."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ghmbench import distributed
from ghmbench.detection import noisy_weight
from ghmbench.run.engine import evaluate
from ghmbench.run.setup import TrainingSetup
from ghmbench.run.state import TrainState
from ghmbench.store.fields import COMPLETED, DIVERGED
from ghmbench.store.fileio import write_json
from ghmbench.store.records import METRICS_FILE, library_versions, run_key

log = logging.getLogger("ghmbench")


def base_record(cfg: DictConfig, folder: Path) -> dict:
    return {
        "run_key": run_key(cfg),
        "run_dir": str(folder),
        "run_name": cfg.run_name,
        "loss": cfg.loss.name,
        "regression": cfg.regression.name,
        "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": library_versions(),
    }


def write_record(
    setup: TrainingSetup,
    state: TrainState,
    diverged_at: int | None,
    last_validation: tuple[dict, list[dict]] | None,
    started: float,
) -> dict:
    """The run's record: written to metrics.json by rank 0 after the final evaluation, returned on every rank."""
    train_split, val_split, test_split = setup.train_split, setup.val_split, setup.test_split
    status = COMPLETED if diverged_at is None else DIVERGED
    record = base_record(setup.cfg, setup.folder) | {
        "status": status,
        "epochs_done": state.epoch,
        "steps": state.step,
        "history": state.history,
    }
    record["dataset"] = {
        "train_images": len(train_split),
        "val_images": len(val_split),
        "test_images": len(test_split) if test_split is not None else 0,
        "classes": train_split.class_names,
        "dropped": {"train": train_split.dropped, "val": val_split.dropped}
        | ({"test": test_split.dropped} if test_split else {}),  # dataset.on_invalid=skip
    }
    record["g_hist"] = state.g_hist  # gradient norms of valid entries over the last epoch, on [0, 1]
    record["anchors"] = state.anchors  # anchors per image the matcher gave in the first epoch
    record["detector_anchors"] = {  # what the detector had: model.anchor_sizes=auto fits them to the training boxes
        "levels": list(setup.model_cfg.levels),
        "anchor_sizes": list(setup.model_cfg.anchor_sizes),
        "fitted": setup.anchors_fitted,
    }
    record["curve"] = state.curve  # validation AP during training (train.eval_every)
    if state.noisy_sums is not None:  # known label noise: the gradient weight on its anchors over training
        record["noisy_weight"] = noisy_weight.summary(state.noisy_sums)
    record["metrics_split"] = "test" if test_split is not None else "val"
    if status == DIVERGED:
        record |= {
            "diverged_at_step": diverged_at,
            "metrics": None,
            "per_class_AP": None,
            "val_metrics": None,
            "test_metrics": None,
        }
    elif distributed.is_main():  # the other ranks wait for the record below
        record |= _final_evaluation(setup, state, last_validation, record["metrics_split"])
    record |= _time_and_place(setup, state, started)
    if distributed.is_main():
        write_json(setup.folder / METRICS_FILE, record)
        setup.logger.finish(record)
    return distributed.broadcast_object(record)


def _final_evaluation(
    setup: TrainingSetup, state: TrainState, last_validation: tuple[dict, list[dict]] | None, reported_split: str
) -> dict:
    """Validation metrics (the last epoch's periodic validation when there is one), test metrics
    when there is a test split, their detections and the ground truth of ``reported_split`` on disk."""
    folder = setup.folder
    eval_start = time.perf_counter()
    fresh = last_validation is not None and state.curve and state.curve[-1]["epoch"] == state.epoch
    val_metrics, detections = last_validation if fresh else evaluate(setup, setup.val_split)
    write_json(folder / "detections.json", detections)
    val_metrics = dict(val_metrics)
    record = {"val_metrics": val_metrics, "val_per_class_AP": val_metrics.pop("per_class_AP"), "test_metrics": None}
    reported, split = val_metrics, setup.val_split
    if setup.test_split is not None:  # selection reads val_metrics; the reported numbers are the test split's
        test_metrics, test_detections = evaluate(setup, setup.test_split)
        write_json(folder / "detections_test.json", test_detections)
        test_metrics = dict(test_metrics)
        record |= {"test_metrics": test_metrics, "test_per_class_AP": test_metrics.pop("per_class_AP")}
        reported, split = test_metrics, setup.test_split
    name = reported_split
    write_json(
        folder / f"ground_truth_{name}.json", split.coco_ground_truth()
    )  # for the report's bootstrap over images
    record["eval_files"] = {
        "split": name,
        "detections": "detections_test.json" if name == "test" else "detections.json",
        "ground_truth": f"ground_truth_{name}.json",
    }
    record |= {
        "metrics": reported,
        "per_class_AP": record[f"{name}_per_class_AP"],
        "eval_time_s": time.perf_counter() - eval_start,
        "periodic_eval_time_s": state.eval_s,
    }
    log.info(
        "%s AP %.4f AP50 %.4f AP75 %.4f", name, reported["AP"] or 0.0, reported["AP50"] or 0.0, reported["AP75"] or 0.0
    )
    return record


def _time_and_place(setup: TrainingSetup, state: TrainState, started: float) -> dict:
    """Wall time, device, number of processes, training speed, GPU memory and the command of the run."""
    place = {
        "wall_time_s": time.perf_counter() - started,
        "device": str(setup.device),
        "world_size": distributed.world_size(),
    }
    train_s = state.elapsed_s - state.eval_s  # periodic validation excluded
    place["train_images_per_s"] = state.epoch * len(setup.train_split) / train_s if train_s > 0 else None
    if setup.device.type == "cuda":  # how many runs fit on one GPU
        place["cuda_max_memory_mb"] = torch.cuda.max_memory_allocated(setup.device) / 2**20
    place["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return place
