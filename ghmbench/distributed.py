"""One run across several processes with torch.distributed: start-up, rank helpers, collectives.

A process joins a process group when a launcher started it as one of several:

* ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR / MASTER_PORT in the environment);
* a submitit job with several tasks (``hydra/launcher=slurm`` or ``submitit_local`` with
  ``tasks_per_node`` > 1): rank, size and hosts come from ``submitit.JobEnvironment``;
* ``srun`` with several tasks (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, the first host of
  SLURM_JOB_NODELIST as the master); only inside a job step, never from the batch script itself.

Outside such a launch every helper here is a no-op for rank 0 of 1, so the training code is the
same for one process and for many.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

TIMEOUT = datetime.timedelta(minutes=60)
"""Collective time-out: the other ranks wait while rank 0 evaluates and writes the record."""


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process stands in a multi-process launch.

    ``master_addr`` / ``master_port`` are None where the launcher exported MASTER_ADDR and
    MASTER_PORT itself (torchrun).
    """

    rank: int
    world_size: int
    local_rank: int
    launcher: str  # torchrun | submitit | srun
    master_addr: str | None = None
    master_port: int | None = None


def launch_env() -> LaunchEnv | None:
    """This process's place in a launch of several processes (from its environment), or None
    when it runs alone."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, or any env:// launcher
        world = int(env["WORLD_SIZE"])
        if world <= 1:
            return None
        return LaunchEnv(int(env["RANK"]), world, int(env.get("LOCAL_RANK", 0)), "torchrun")
    if env.get("SUBMITIT_EXECUTOR"):
        import submitit

        job, launcher = submitit.JobEnvironment(), "submitit"
    elif "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:  # srun's task, not the batch
        from submitit.slurm.slurm import SlurmJobEnvironment

        job, launcher = SlurmJobEnvironment(), "srun"
    else:
        return None
    if job.num_tasks <= 1:
        return None
    master = "127.0.0.1" if job.num_nodes == 1 else job.hostnames[0]
    # the same port on every task of the job
    port = int(env.get("MASTER_PORT") or random.Random(str(job.job_id)).randint(20000, 60000))
    return LaunchEnv(job.global_rank, job.num_tasks, job.local_rank, launcher, master, port)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """Global rank (0 when alone; from the launcher's environment before the group exists)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    launch = launch_env()
    return launch.rank if launch else 0


def world_size() -> int:
    """Number of processes of the run (1 when alone)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    launch = launch_env()
    return launch.world_size if launch else 1


def is_main() -> bool:
    """True on rank 0: the only process that writes files, logs and prints."""
    return rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Join the launch's process group (NCCL for CUDA, gloo otherwise); idempotent.

    Returns:
        True when the process is one of several (distributed), False when it runs alone.
    """
    if dist.is_available() and dist.is_initialized():
        return is_distributed()
    launch = launch_env()
    if launch is None:
        return False
    if launch.master_addr is not None:
        os.environ.setdefault("MASTER_ADDR", launch.master_addr)
        os.environ.setdefault("MASTER_PORT", str(launch.master_port))
    if device.type == "cuda":
        torch.cuda.set_device(local_device(device, launch.local_rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method="env://",
        rank=launch.rank,
        world_size=launch.world_size,
        timeout=TIMEOUT,
    )
    return True


def local_device(device: torch.device, local_rank: int | None = None) -> torch.device:
    """``cuda`` becomes this process's GPU: cuda:LOCAL_RANK among the visible ones.

    Other devices, and a GPU named by its index, are returned unchanged.
    """
    if device.type != "cuda" or device.index is not None:
        return device
    if local_rank is None:
        launch = launch_env()
        local_rank = launch.local_rank if launch and is_distributed() else 0
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- collectives


def _comm(t: Tensor) -> Tensor:
    """NCCL only moves CUDA tensors: host tensors travel through this process's GPU."""
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        return t.to(torch.device("cuda", torch.cuda.current_device()))
    return t


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over ranks, as a new tensor on ``t``'s device (``t`` itself when alone)."""
    if not is_distributed():
        return t
    out = _comm(t.detach().clone())
    dist.all_reduce(out)
    return out.to(t.device)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s (picklable) object on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every rank."""
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it fills caches on disk), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def share_of_global(loss: Tensor, globally_normalised: bool) -> Tensor:
    """This rank's share of the global-batch loss: shares summed over ranks give the loss value.

    A loss normalised by a global quantity (positives or GHM's tot summed over ranks) already is
    one; a loss normalised by this rank's own batch (GHM with ``sync=False``, the per-GPU
    reference behaviour) is divided by the number of ranks, so that the global value is the
    mean over ranks, as data-parallel training of the reference averages it.
    """
    if globally_normalised or not is_distributed():
        return loss
    return loss / dist.get_world_size()


def backward_scale() -> int:
    """Factor of each rank's share before ``backward``: DDP averages gradients over ranks, so
    scaling by the number of ranks makes the averaged gradient that of the global-batch loss."""
    return dist.get_world_size() if is_distributed() else 1


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel (BatchNorm made synchronised), or itself when alone.

    Parameters are broadcast from rank 0. ``find_unused_parameters``: the FPN computes levels
    that no head reads (P5 when the heads use P2-P4), whose parameters get no gradient; without
    it DDP leaves the gradients of their bucket un-averaged, silently.
    """
    if not is_distributed():
        return model
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same Parameter objects, new modules
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


__all__ = [
    "LaunchEnv",
    "all_reduce_sum",
    "backward_scale",
    "barrier",
    "broadcast_object",
    "data_parallel",
    "init_from_env",
    "is_distributed",
    "is_main",
    "launch_env",
    "local_device",
    "main_first",
    "rank",
    "share_of_global",
    "shutdown",
    "world_size",
]
