"""A run's progress: a rich bar on a terminal, a line per epoch and per validation in a log."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


log = logging.getLogger("ghmbench")


def _bar(enabled: bool):
    """A rich progress bar of the training steps with the running mean losses (silent unless ``enabled``)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class RunProgress:
    """A run's progress on stdout: a rich bar on a terminal; elsewhere (a CI log, a file, a sweep's
    pipe) one line per epoch and one per validation, because a bar there is drawn once, at the end,
    cut to the width. Each line starts with the run's name: parallel runs share one log.

    Args:
        name: the run folder's name.
        epochs: the run's epochs.
        steps_per_epoch: training steps of one epoch.
        images_per_epoch: training images of one epoch (over all processes), for images/s.
        enabled: False prints nothing (``train.progress=false``, ranks other than 0).
        terminal: a bar (True) or lines (False); None: a bar when stdout is a terminal.
    """

    def __init__(
        self,
        name: str,
        epochs: int,
        steps_per_epoch: int,
        images_per_epoch: int,
        enabled: bool = True,
        terminal: bool | None = None,
    ) -> None:
        from rich.console import Console

        terminal = Console().is_terminal if terminal is None else terminal
        self.name, self.epochs, self.steps_per_epoch, self.images_per_epoch = (
            name,
            epochs,
            steps_per_epoch,
            images_per_epoch,
        )
        self.lines = enabled and not terminal
        self.bar = _bar(enabled and terminal)
        self._task = None
        self._started = self._epoch_started = 0.0
        self._epochs_here = 0  # epochs this process trained (a resumed run's earlier ones excluded from the ETA)

    @contextlib.contextmanager
    def running(self, epoch: int, step: int) -> Iterator[RunProgress]:
        """The bar shown (or the first line printed) while the block trains from ``epoch`` / ``step``."""
        with self.bar:
            self._task = self.bar.add_task(
                self.name, total=self.epochs * self.steps_per_epoch, completed=step, losses=""
            )
            resumed = (
                f"resumed from its checkpoint at epoch {epoch}/{self.epochs}, step {step}"
                if epoch or step
                else f"{self.epochs} epochs of {self.steps_per_epoch} steps"
            )
            self._print(f"{self.name}: {resumed}")
            self._started = time.perf_counter()
            yield self

    def epoch_started(self) -> None:
        self._epoch_started = time.perf_counter()

    def step(self, mean: Tensor) -> None:
        """After every step: the epoch's running mean (loss, cls, box) [3] on the bar."""
        self.bar.update(self._task, advance=1, losses=f"loss {mean[0]:.3f} cls {mean[1]:.3f} box {mean[2]:.3f}")

    def epoch_done(self, epoch: int, losses: dict) -> None:
        """A line with the epoch's mean losses (``state.history``'s entry), its images/s and the ETA."""
        now = time.perf_counter()
        self._epochs_here += 1
        speed = self.images_per_epoch / max(now - self._epoch_started, 1e-9)
        eta = (now - self._started) / self._epochs_here * (self.epochs - epoch)  # validation time included
        self._print(
            f"{self.name} epoch {epoch}/{self.epochs}: loss {losses['loss']:.4f} (cls {losses['loss_cls']:.4f}, box "
            f"{losses['loss_box']:.4f}), {speed:.1f} images/s, ETA {_duration(eta)}"
        )

    def validated(self, epoch: int, ap: float | None) -> None:
        """A line with the periodic validation's AP."""
        self._print(f"{self.name} epoch {epoch}/{self.epochs}: validation AP {'-' if ap is None else f'{ap:.4f}'}")

    def _print(self, line: str) -> None:
        if self.lines:
            print(line, flush=True)
