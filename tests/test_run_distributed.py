"""Data-parallel training with real gloo process groups on the CPU.

Two processes, each holding one half of a batch, must give what one process gives on the whole
batch: GHM weights, losses, running counts and gradients (GHM's density summed over ranks), and,
through DistributedDataParallel, the detector's parameter gradients.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ghmbench import distributed
from ghmbench.config.compose import compose_config, validate
from ghmbench.data.digits import DigitsParams, load_digits_detection
from ghmbench.data.splits import iterate_batches
from ghmbench.detection.criterion import DetectionCriterion
from ghmbench.detection.model import amp_forward, build_model
from ghmbench.errors import ConfigError
from ghmbench.losses import GHMC, GHMR, ghm_weights
from ghmbench.run.training import run
from ghmbench.store.records import METRICS_FILE
from tests.conftest import ghmbench_cli

WORLD = 2
ROWS = 96  # rows of the whole batch; each rank holds ROWS // WORLD
GHM_CASES = {  # name: (module class, keyword arguments)
    "ghmc": (GHMC, {"bins": 10, "momentum": 0.75}),
    "ghmc_per_level": (GHMC, {"bins": 10, "momentum": 0.75, "per_level": True}),
    "ghmc_no_momentum": (GHMC, {"bins": 30, "momentum": 0.0}),
    "ghmr": (GHMR, {"bins": 10, "momentum": 0.7}),
    "ghmr_per_level": (GHMR, {"bins": 10, "momentum": 0.7, "per_level": True}),
    "ghmc_unsynced": (GHMC, {"bins": 10, "momentum": 0.75, "sync": False}),
    "ghmr_unsynced": (GHMR, {"bins": 10, "momentum": 0.7, "sync": False}),
}
MODEL_CASES = {
    "ghm": ["loss=ghm", "regression=ghm"],
    "focal": ["loss=focal", "regression=smooth_l1"],
}
MODEL_CFG = ["model.backbone_width=8", "model.fpn_channels=16", "model.head_convs=1"]
BATCH = 8  # the model's global batch


def _inputs(name: str, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole batch of a GHM case: (pred, target, label_weight, level_ids)."""
    g = torch.Generator().manual_seed(1000 * step + len(name))
    if name.startswith("ghmc"):
        pred = torch.randn(ROWS, 5, generator=g) * 3
        labels = torch.randint(-1, 5, (ROWS,), generator=g)
        target = torch.zeros(ROWS, 5)
        target[labels >= 0, labels[labels >= 0]] = 1.0
    else:
        pred = torch.randn(ROWS, 4, generator=g) * 0.05
        target = torch.randn(ROWS, 4, generator=g) * 0.05
    weight = (torch.rand(ROWS, generator=g) > 0.2).float()  # ignored rows
    levels = torch.randint(0, 3, (ROWS,), generator=g)
    return pred, target, weight, levels


def _ghm_case(name: str, rank: int, world: int) -> dict:
    """Two steps of one GHM case on this rank's rows: weights, loss, gradient, running counts."""
    cls, kwargs = GHM_CASES[name]
    module = cls(**kwargs)
    rows = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    out: dict = {}
    for step in range(2):
        pred, target, weight, levels = (x[rows] for x in _inputs(name, step))
        valid = (weight > 0)[:, None].expand_as(pred)
        g = (
            (torch.sigmoid(pred) - target).abs()
            if cls is GHMC
            else (pred - target).abs() / torch.sqrt((pred - target) ** 2 + 0.02**2)
        )
        tot = valid.sum().float().reshape(1)
        w, _, _ = ghm_weights(g, valid, module.bins, tot, None, 0.0, sync=module.sync)
        pred.requires_grad_(True)
        loss = module(pred, target, weight, level_ids=levels)
        loss.backward()
        out[f"weights{step}"] = w
        out[f"loss{step}"] = loss.detach()
        out[f"grad{step}"] = pred.grad
    out["acc_sum"] = module.acc_sum.clone()
    return out


def _model_case(name: str, rank: int, world: int) -> dict:
    """One training step's losses and parameter gradients of the detector on this rank's shard."""
    cfg = validate(compose_config([*MODEL_CASES[name], *MODEL_CFG]))
    split = load_digits_detection(DigitsParams(num_train=BATCH, num_val=1), None).train
    torch.manual_seed(0)
    # float64: no rounding noise in the sums over the batch
    model = build_model(cfg.model, split.num_classes, 1).double()
    net = distributed.data_parallel(model, torch.device("cpu"))
    criterion = DetectionCriterion.from_config(cfg)
    batches = iterate_batches(
        split,
        BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(5),
        rank=rank,
        world_size=world,
    )
    images, boxes, labels, idx = next(batches)
    out = amp_forward(net, images.double(), "none")
    loss_cls, loss_box, num_pos = criterion(out, boxes, labels)
    (loss_cls + loss_box).mul(distributed.backward_scale()).backward()
    values = distributed.all_reduce_sum(torch.stack([loss_cls.detach(), loss_box.detach()]))
    return {
        "values": values,
        "num_pos": num_pos,
        "idx": idx,
        "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
    }


def _everything(rank: int, world: int) -> dict:
    return {
        "ghm": {name: _ghm_case(name, rank, world) for name in GHM_CASES},
        "model": {name: _model_case(name, rank, world) for name in MODEL_CASES},
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save(_everything(rank, WORLD), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[dict, list[dict]]:
    """(one process on the whole batch, [rank 0, rank 1] on halves)."""
    folder = tmp_path_factory.mktemp("dist")
    with pytest.MonkeyPatch.context() as env:  # for the spawned workers only
        env.setenv("OMP_NUM_THREADS", "1")
        mp.spawn(_worker, args=(str(folder / "init"), str(folder)), nprocs=WORLD, join=True)
    assert not dist.is_initialized()  # the reference runs alone
    single = _everything(0, 1)
    return single, [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in GHM_CASES if "unsynced" not in n])
def test_ghm_on_two_ranks_equals_one_process_on_the_whole_batch(two_ranks, name):
    single, ranks = two_ranks
    ref, parts = single["ghm"][name], [r["ghm"][name] for r in ranks]
    for step in range(2):
        _close(torch.cat([p[f"weights{step}"] for p in parts]), ref[f"weights{step}"])
        _close(sum(p[f"loss{step}"] for p in parts), ref[f"loss{step}"])  # each rank: its share of the global loss
        _close(torch.cat([p[f"grad{step}"] for p in parts]), ref[f"grad{step}"])
    assert (ref["acc_sum"].sum() > 0) == (GHM_CASES[name][1]["momentum"] > 0)
    for p in parts:  # running counts identical on every rank, and equal to one process's
        assert torch.equal(p["acc_sum"], parts[0]["acc_sum"])
        _close(p["acc_sum"], ref["acc_sum"])


@pytest.mark.parametrize("name", ["ghmc_unsynced", "ghmr_unsynced"])
def test_ghm_without_sync_weights_with_each_rank_s_own_density(two_ranks, name):
    single, ranks = two_ranks
    ref, parts = single["ghm"][name], [r["ghm"][name] for r in ranks]
    assert not torch.allclose(torch.cat([p["weights0"] for p in parts]), ref["weights0"], rtol=1e-3)
    assert not torch.allclose(parts[0]["acc_sum"], parts[1]["acc_sum"])
    # each rank's loss is the reference implementation's loss of its own half
    for rank, p in enumerate(parts):
        cls, kwargs = GHM_CASES[name]
        pred, target, weight, levels = (x[rank * ROWS // WORLD : (rank + 1) * ROWS // WORLD] for x in _inputs(name, 0))
        _close(p["loss0"], cls(**kwargs)(pred, target, weight, level_ids=levels))


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_ddp_step_equals_one_process_on_the_global_batch(two_ranks, name):
    single, ranks = two_ranks
    ref, parts = single["model"][name], [r["model"][name] for r in ranks]
    assert sorted(parts[0]["idx"] + parts[1]["idx"]) == sorted(ref["idx"]) and not set(parts[0]["idx"]) & set(
        parts[1]["idx"]
    )
    assert (
        int(parts[0]["num_pos"]) == int(parts[1]["num_pos"]) == int(ref["num_pos"]) > 0
    )  # global positives on every rank
    for p in parts:
        _close(p["values"], ref["values"])
        assert p["grads"].keys() == ref["grads"].keys()
        for key, grad in ref["grads"].items():  # DDP's averaged gradient = one process's, on every rank
            _close(p["grads"][key], grad)


# ----------------------------------------------------------------------------- sharding, launchers


def test_every_rank_yields_its_shard_of_each_global_batch():
    split = load_digits_detection(DigitsParams(num_train=11, num_val=1), None).train

    def batches(rank: int, world: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(3)
        return [idx for *_, idx in iterate_batches(split, 4, shuffle=True, generator=gen, rank=rank, world_size=world)]

    single = batches(0, 1)  # 4 + 4 + 3 images
    halves = [batches(r, 2) for r in range(2)]
    assert [a + b for a, b in zip(*halves)] == single  # the last batch of 3 split 2 + 1
    assert len(batches(0, 4)) == 2  # a last batch of 3 cannot feed 4 ranks: skipped on all of them
    with pytest.raises(
        ConfigError,
        match="train.batch_size=4 is not allowed with 3 processes; allowed: a multiple of 3",
    ):
        batches(0, 3)


@pytest.mark.slow
def test_launch_env_from_srun_and_not_from_the_batch_script(monkeypatch):
    for key in [
        k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_")) or k in ("RANK", "WORLD_SIZE", "MASTER_PORT")
    ]:
        monkeypatch.delenv(key)
    assert distributed.launch_env() is None
    job = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
    }
    for key, value in {
        **job,
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
    }.items():
        monkeypatch.setenv(key, value)
    assert distributed.launch_env() is None  # the batch script itself: not one of the tasks
    monkeypatch.setenv("SLURM_STEP_ID", "0")  # a task started by srun
    launch = distributed.launch_env()
    assert launch is not None and (
        launch.rank,
        launch.world_size,
        launch.local_rank,
        launch.launcher,
    ) == (5, 8, 1, "srun")
    assert launch.master_addr == "gpu07" and 20000 <= launch.master_port <= 60000
    monkeypatch.setenv("RANK", "3")  # torchrun inside the job step wins
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.launch_env() == distributed.LaunchEnv(3, 4, 3, "torchrun")


def _records(runs: Path) -> list[tuple[Path, dict]]:
    return [(p.parent, json.loads(p.read_text())) for p in runs.glob(f"*/{METRICS_FILE}")]


@pytest.mark.slow
def test_torchrun_two_processes_through_the_cli(tiny, tmp_path):
    """``torchrun --nproc_per_node=2 -m ghmbench train``: one record, written by rank 0 alone,
    with the losses of a single-process run of the same global batches."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torch's torchrun script is not installed"
    grid = ["loss=ghm", "regression=ghm"]
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "ghmbench",
        "train",
        *tiny,
        *grid,
    ]
    result = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run folder:") == 1  # only rank 0 prints
    ((folder, record),) = _records(tmp_path / "runs")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [folder.name]
    assert {p.name for p in folder.iterdir()} == {  # no .lock: a finished run leaves none
        "config.yaml",
        METRICS_FILE,
        "detections.json",
        "ground_truth_val.json",  # the reported split's annotations, for the report's image bootstrap
        "train.log",
        "checkpoint.pt",
    }
    assert record["status"] == "completed" and record["world_size"] == 2 and record["metrics"]["AP"] is not None
    log = (folder / "train.log").read_text()
    assert log.count("epoch 2/2:") == 1 and log.count(f"run {folder.name} on cpu") == 1  # one writer
    # the same run in one process (another folder) has the same losses, up to float rounding
    alone = run(
        validate(
            compose_config(
                [
                    *tiny,
                    *grid,
                    f"paths.runs_dir={tmp_path / 'alone'}",
                ]  # the last one wins
            )
        )
    )
    assert alone["world_size"] == 1 and alone["run_key"] == record["run_key"]
    for ours, ref in zip(record["history"], alone["history"], strict=True):
        for key in ("loss", "loss_cls", "loss_box"):
            assert ours[key] == pytest.approx(ref[key], rel=1e-4), (ours, ref)


@pytest.mark.slow
def test_a_run_of_two_submitit_tasks(tiny, tmp_path):
    """``hydra.launcher.tasks_per_node=2``: the ranks of one run come from submitit's environment
    (the SLURM launcher's path, here through submitit_local)."""
    launcher = [
        "hydra/launcher=submitit_local",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.cpus_per_task=1",
    ]
    result = ghmbench_cli("sweep", "loss=ghm", "regression=ghm", *tiny, *launcher)
    assert result.returncode == 0, result.stderr + result.stdout
    ((folder, record),) = _records(tmp_path / "runs")
    assert record["status"] == "completed" and record["world_size"] == 2
    assert (folder / "train.log").read_text().count("epoch 2/2:") == 1


def _sbatch_script(tmp_path, monkeypatch, overrides: list[str]) -> tuple[dict, str]:
    """The shipped launcher config composed with ``overrides``, and the sbatch script submitit makes of
    it as Hydra's launcher hands it over (no cluster: a stand-in srun on PATH, which submitit only looks for)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    from ghmbench.config.compose import conf_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[*overrides, f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True
        )
    GlobalHydra.instance().clear()
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    import submitit

    fake = tmp_path / "bin"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    given = dict(launcher)
    given.pop("_target_")
    executor = submitit.AutoExecutor(
        cluster="slurm",
        folder=given.pop("submitit_folder"),
        slurm_max_num_timeout=given.pop("max_num_timeout"),
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in base else f"slurm_{k}": v for k, v in given.items()}
    )  # as the launcher does
    return launcher, executor._executor._make_submission_file_text("python -m job", "uid")


def test_the_shipped_cpu_launcher_asks_for_one_cpu_task_and_no_gpu(tmp_path, monkeypatch):
    launcher, script = _sbatch_script(tmp_path, monkeypatch, ["hydra/launcher=slurm"])
    for line in ("--ntasks-per-node=1", "--cpus-per-task=1", "--time=60", "--mem=4GB", "--signal=USR2@120"):
        assert f"#SBATCH {line}\n" in script
    assert "gpus" not in script and "gres" not in script and "--partition" not in script  # the default partition
    _, zero = _sbatch_script(tmp_path / "zero", monkeypatch, ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0"])
    assert "#SBATCH --ntasks-per-node=1\n" in zero  # 0 GPUs: still one task


def test_the_shipped_gpu_launcher_composes_into_an_sbatch_script(tmp_path, monkeypatch):
    overrides = ["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4"]
    launcher, script = _sbatch_script(tmp_path, monkeypatch, overrides)
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == ("gpu", 4, 4)
    assert (launcher["timeout_min"], launcher["array_parallelism"], launcher["cpus_per_task"]) == (240, 32, 8)
    for line in (
        "--partition=gpu",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",  # one process per GPU
        "--cpus-per-task=8",
        "--time=240",
        "--mem=32GB",
    ):
        assert f"#SBATCH {line}\n" in script
    assert "export SUBMITIT_EXECUTOR=slurm" in script and "\nsrun " in script  # each task: one rank (see launch_env)


# ----------------------------------------------------------------------------- the GPU path on a CPU


def test_bf16_forward_gives_float32_outputs_and_losses():
    cfg = validate(compose_config(["loss=ghm", "regression=ghm", *MODEL_CFG]))
    split = load_digits_detection(DigitsParams(num_train=4, num_val=1), None).train
    model = build_model(cfg.model, split.num_classes, 1)
    images, boxes, labels, _ = next(iterate_batches(split, 4, shuffle=False))
    out32 = amp_forward(model, images, "none")
    out16 = amp_forward(model, images, "bf16")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = model(images)
    assert raw.cls_logits.dtype == torch.bfloat16  # autocast is on for the network...
    assert out16.cls_logits.dtype == out16.box_deltas.dtype == torch.float32  # ...and off for the losses
    torch.testing.assert_close(out16.cls_logits, out32.cls_logits, rtol=0.05, atol=0.05)
    criterion = DetectionCriterion.from_config(cfg)
    loss_cls, loss_box, _ = criterion(out16, boxes, labels)
    assert loss_cls.dtype == loss_box.dtype == criterion.cls_loss.acc_sum.dtype == torch.float32 and torch.isfinite(
        loss_cls + loss_box
    )


def test_run_key_counts_bf16_but_not_memory_layout_and_keeps_older_keys():
    from omegaconf import OmegaConf

    from ghmbench.store.records import run_key

    base = validate(compose_config([]))
    assert run_key(validate(compose_config(["train.amp=bf16"]))) != run_key(base)
    assert run_key(validate(compose_config(["train.channels_last=true", "train.pin_memory=false"]))) == run_key(base)
    older = OmegaConf.to_container(base)  # a record written before train.amp existed
    del (
        older["train"]["amp"],
        older["train"]["channels_last"],
        older["train"]["pin_memory"],
    )
    assert run_key(OmegaConf.create(older)) == run_key(base)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_check_script_fails_loudly_without_a_gpu(tmp_path):
    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"
    result = subprocess.run(
        ["bash", str(script), str(tmp_path / "out")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BIN": str(Path(sys.executable).parent)},
    )
    assert result.returncode == 1
    assert "gpu_check: FAILED: no CUDA GPU is visible to torch" in result.stderr
    assert not (tmp_path / "out").exists()
