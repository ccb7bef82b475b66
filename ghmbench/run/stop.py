"""Stopping a run at a step boundary when a scheduler asks: SIGTERM (``scancel``, preemption, the time
limit), SIGUSR1 / SIGUSR2 (``sbatch --signal``; submitit sends SIGUSR2 before the time limit).

The handler only notes the signal. The training loop asks :func:`requested` once per step (all ranks
agree through the step's all-reduce), finishes the step, saves a checkpoint and raises
:class:`RunStopped`, so a stopped run loses at most the step in progress. When the block ends on
:class:`RunStopped` the handler that was there before hears the signal: under ``hydra/launcher=slurm``
that is submitit's, which requeues the job on SIGUSR2 (the requeued task resumes from the checkpoint)
and only logs SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

_received: list[int] = []  # the signals noted since the block began (a list: the handler only appends)


class RunStopped(BaseException):
    """A run stopped on a signal after saving its checkpoint.

    A BaseException, like KeyboardInterrupt: a stop is not a failure of the run, so the ``except
    Exception`` blocks that record failed runs let it through.
    """

    def __init__(self, signum: int, step: int) -> None:
        self.signum, self.step = signum, step
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}: checkpoint saved")


def _note(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def requested() -> int | None:
    """The first stop signal received inside :func:`stop_on_signals`, or None."""
    return _received[0] if _received else None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Note the stop signals while the block runs (a no-op outside the main thread, where Python
    cannot install handlers); on :class:`RunStopped`, pass the signal on to the previous handler
    when it is a Python function, then re-raise."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _received.clear()
    for s in STOP_SIGNALS:
        signal.signal(s, _note)
    try:
        yield
    except RunStopped as stop:
        _restore(previous)
        handler = previous[stop.signum]
        if callable(handler):  # e.g. submitit's: requeue the job (and exit) on SIGUSR2
            handler(stop.signum, None)
        raise
    finally:
        _restore(previous)
        _received.clear()


def _restore(previous: dict) -> None:
    for s, handler in previous.items():
        signal.signal(s, handler if handler is not None else signal.SIG_DFL)
