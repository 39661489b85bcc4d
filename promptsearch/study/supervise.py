"""The coordinator of ``run --workers N``: keep the worker processes alive until the study has its budget.

A worker that exits abnormally (killed, out of memory, crashed) is started again after a short back-off
(``restart_delay``, doubled for each restart of the same slot), at most ``max_restarts`` times per slot. Its
running trial is marked with what happened ("worker 0 died (SIGKILL) during epoch 3"), failed by the heartbeat
check (a worker's, or this loop's own when none is running) and retried once. Before it returns, the loop waits
for the trials of dead workers to go stale and fails them, so no trial stays RUNNING behind a finished run.
:class:`Supervision` says whether the budget was reached and, if not, why.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from optuna.trial import TrialState

from promptsearch.redact import scrub
from promptsearch.study.records import (
    TrialRecord,
    counts_towards_budget,
    exit_text,
    note_lost,
    trial_record,
)
from promptsearch.study.storage import recover_stale

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["MAX_RESTARTS", "RESTART_DELAY", "Death", "Launcher", "Supervision", "supervise"]

logger = logging.getLogger(__name__)
MAX_RESTARTS = 3  # restarts of one worker slot before the run gives up on it
RESTART_DELAY = 5.0  # seconds before the first restart of a slot; doubled for each further one
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class Launcher(Protocol):
    """What starts worker ``index`` (:class:`promptsearch.study.workers.WorkerLauncher`)."""

    def start(self, index: int, *, timeout: float | None = None) -> subprocess.Popen[bytes]: ...

    def log(self, index: int) -> Path: ...


@dataclass(frozen=True)
class Death:
    """A worker process that exited abnormally."""

    worker: int
    pid: int
    returncode: int
    log: Path

    def describe(self) -> str:
        return f"worker {self.worker} died ({exit_text(self.returncode)})"


@dataclass(frozen=True)
class Supervision:
    """How the workers' run ended: the counted trials against the budget, and every worker that died."""

    done: int
    target: int
    deaths: tuple[Death, ...] = ()
    gave_up: tuple[int, ...] = ()  # worker slots whose restarts were used up
    timed_out: bool = False
    storage_error: str | None = None  # the storage could not be read at the end
    still_running: tuple[int, ...] = ()  # trials still running on workers that are not this run's

    @property
    def missing(self) -> int:
        return max(0, self.target - self.done)

    @property
    def complete(self) -> bool:
        """The budget was reached, or the time limit ended the run (as it ends a run of one process)."""
        return self.storage_error is None and (self.missing == 0 or self.timed_out)

    def problems(self, max_restarts: int) -> list[str]:
        """One line per dead worker slot (its exits, whether it was given up, its log), and the storage's error."""
        lines = []
        for index in sorted({d.worker for d in self.deaths}):
            mine = [d for d in self.deaths if d.worker == index]
            exits = ", ".join(exit_text(d.returncode) for d in mine)
            times = "once" if len(mine) == 1 else f"{len(mine)} times"
            given = f", and was not restarted again (--max-restarts {max_restarts})" if index in self.gave_up else ""
            last = _last_line(mine[-1].log) if mine[-1].returncode > 0 else ""
            said = f"; it last wrote: {last}" if last else ""
            lines.append(f"worker {index} died {times} ({exits}){given}{said}; its output: {mine[-1].log}")
        if self.storage_error is not None:
            lines.append(f"the study's storage could not be read: {self.storage_error}")
        return lines


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes]
    restarts: int = 0
    restart_at: float | None = None
    ended: str | None = None  # "done", "gave up" or "time limit"


@dataclass
class _Watch:
    """What the loop reads from the storage: stale trials failed, counts, finished trials passed to callbacks."""

    study: optuna.Study
    heartbeat: float
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]]
    url: str = ""  # the storage URL, whose password no message shows
    done: int = 0
    running: list[FrozenTrial] = field(default_factory=list)
    error: str | None = None
    _seen: set[int] = field(default_factory=set)
    _failed_at: dict[int, float] = field(default_factory=dict)

    def check(self) -> None:
        try:
            recover_stale(self.study, self.heartbeat)
            trials = self.study.get_trials(deepcopy=False)
        except Exception as exc:  # a database gone away raises many types; the workers' exits tell the rest
            self.error = _first_line(exc, self.url)
            return
        self.error = None
        self.done = sum(1 for t in trials if counts_towards_budget(t))
        self.running = [t for t in trials if t.state == TrialState.RUNNING]
        self._notify(trials)

    def flush(self) -> None:
        """Pass every finished trial not passed yet to the callbacks, without waiting for retries."""
        with suppress(Exception):
            self._notify(self.study.get_trials(deepcopy=False), wait=False)

    def _notify(self, trials: list[FrozenTrial], *, wait: bool = True) -> None:
        now = time.monotonic()
        for trial in trials:
            if trial.state not in _FINISHED or trial.number in self._seen:
                continue
            record = trial_record(self.study, trial)
            waited = now - self._failed_at.setdefault(trial.number, now)
            if wait and _awaits_retry(record) and waited < 3 * self.heartbeat:
                continue  # its retry is enqueued right after it fails: say "retried as trial N" when it is
            self._seen.add(trial.number)
            for callback in self.callbacks:
                callback(self.study, trial)

    def note(self, death: Death) -> None:
        """Write on the trial the dead worker was running what happened to it."""
        host = socket.gethostname()
        try:
            running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            for trial in running:
                worker = TrialRecord.from_trial(trial).worker or {}
                if worker.get("pid") == death.pid and worker.get("host") == host:
                    note_lost(self.study, trial, worker=death.worker, returncode=death.returncode)
        except Exception as exc:  # the storage may be what killed it; the heartbeat check still fails the trial
            logger.warning("could not note on its trial that %s: %s", death.describe(), _first_line(exc, self.url))


def _awaits_retry(record: TrialRecord) -> bool:
    """Failed by a heartbeat check (no error of its own) and not retried yet: the retry is on its way."""
    own = record.error is not None or record.interrupted or record.surplus
    return record.state == TrialState.FAIL and not own and record.retried_as is None and record.retry_of is None


def supervise(
    launcher: Launcher,
    study: optuna.Study,
    *,
    workers: int,
    target: int,
    heartbeat: float,
    max_restarts: int = MAX_RESTARTS,
    restart_delay: float = RESTART_DELAY,
    timeout: float | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    progress: Callable[[str], None] | None = None,
    storage_url: str = "",
    poll: float | None = None,
) -> Supervision:
    """Start ``workers`` workers and keep them alive until each has exited normally or used up its restarts.

    ``target``: the counted trials the study needs (sampled + baseline). Each newly finished trial is passed to
    ``callbacks``. Ctrl-C stops every worker (their running trials are recorded as interrupted) and re-raises.
    """
    poll = min(1.0, heartbeat / 2) if poll is None else poll
    started = time.monotonic()

    def left() -> float | None:
        return None if timeout is None else timeout - (time.monotonic() - started)

    watch = _Watch(study, heartbeat, callbacks, url=storage_url)
    deaths: list[Death] = []
    slots = [_Slot(i, launcher.start(i, timeout=timeout)) for i in range(workers)]
    try:
        while any(s.ended is None for s in slots):
            watch.check()
            for slot in slots:
                death = _tend(slot, launcher, watch, target=target, left=left(), max_restarts=max_restarts,
                              restart_delay=restart_delay)  # fmt: skip
                if death is not None:
                    deaths.append(death)
            if progress is not None:
                progress(_status(slots, watch))
            time.sleep(poll)
        _sweep(watch, heartbeat, poll)
    except KeyboardInterrupt:
        _stop(slots)
        raise
    remaining = left()
    return Supervision(
        done=watch.done,
        target=target,
        deaths=tuple(deaths),
        gave_up=tuple(s.index for s in slots if s.ended == "gave up"),
        timed_out=remaining is not None and remaining <= 0,
        storage_error=watch.error,
        still_running=tuple(t.number for t in watch.running),
    )


def _tend(
    slot: _Slot,
    launcher: Launcher,
    watch: _Watch,
    *,
    target: int,
    left: float | None,
    max_restarts: int,
    restart_delay: float,
) -> Death | None:
    """Look after one slot: restart it when its back-off is over, or notice that its worker exited."""
    if slot.ended is not None:
        return None
    if slot.restart_at is not None:
        if time.monotonic() < slot.restart_at:
            return None
        slot.restart_at = None
        if watch.done >= target and watch.error is None:
            slot.ended = "done"  # the other workers finished the budget meanwhile
        elif left is not None and left <= 0:
            slot.ended = "time limit"
        else:
            slot.restarts += 1
            logger.warning("restarting worker %d (restart %d of %d)", slot.index, slot.restarts, max_restarts)
            slot.proc = launcher.start(slot.index, timeout=left)
        return None
    code = slot.proc.poll()
    if code is None:
        return None
    if code == 0:
        slot.ended = "done"
        return None
    death = Death(worker=slot.index, pid=slot.proc.pid, returncode=code, log=launcher.log(slot.index))
    watch.note(death)
    if slot.restarts >= max_restarts:
        slot.ended = "gave up"
        logger.warning("%s; its restarts are used up; its output is in %s", death.describe(), death.log)
    else:
        delay = restart_delay * 2**slot.restarts
        slot.restart_at = time.monotonic() + delay
        logger.warning("%s; restarting it in %g s; its output is in %s", death.describe(), delay, death.log)
    return death


def _sweep(watch: _Watch, heartbeat: float, poll: float) -> None:
    """Wait until the trials of dead workers are stale, and fail them (each retried once); a trial that keeps
    beating runs on a worker of another machine and is left to it."""
    watch.check()
    deadline = time.monotonic() + max(2.0, 3 * heartbeat) + 2 * heartbeat + 1
    while watch.running and watch.error is None and time.monotonic() < deadline:
        time.sleep(poll)
        watch.check()
    watch.flush()
    for trial in watch.running:
        logger.warning("trial %d is still running on a worker this run did not start", trial.number)


def _status(slots: Sequence[_Slot], watch: _Watch) -> str:
    alive = sum(1 for s in slots if s.ended is None and s.restart_at is None)
    waiting = [s for s in slots if s.restart_at is not None]
    text = f"{alive} workers, {len(watch.running)} trials running"
    if waiting:
        text += "; restarting " + ", ".join(
            f"worker {s.index} in {max(0.0, (s.restart_at or 0) - time.monotonic()):.0f} s" for s in waiting
        )
    if watch.error is not None:
        text += f"; storage unreachable: {watch.error}"
    return text


def _stop(slots: Sequence[_Slot]) -> None:
    running = [s.proc for s in slots if s.ended is None and s.restart_at is None and s.proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGINT)  # each worker records its running trial as interrupted
    for proc in running:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _first_line(exc: BaseException, url: str) -> str:
    text = str(exc).strip()
    return scrub(text.splitlines()[0][:300] if text else type(exc).__name__, url)


def _last_line(log: Path) -> str:
    """The last line a worker wrote (its error message, when it exited with one)."""
    try:
        with log.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [x for x in fh.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""
