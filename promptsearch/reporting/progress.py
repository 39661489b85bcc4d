"""The progress display of ``promptsearch run`` (rich): trial n/N, best dev so far, pruned and failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from promptsearch.study.records import count_done, trial_record

__all__ = ["SearchProgress", "stream_progress"]


class SearchProgress:
    """A context manager whose methods are the search's callbacks."""

    def __init__(self, console: Console, *, total: int) -> None:
        self.console = console
        self.total = total
        self._progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("search", total=total, best="best –", counts="", status="starting")
        self._synced = False

    def __enter__(self) -> SearchProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def stop(self) -> None:
        self._progress.stop()

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        try:
            best = f"best {100 * study.best_value:.2f}"
        except (ValueError, RuntimeError):  # no trial yet, or several objectives (no single best value)
            best = f"{len(study.best_trials)} on the Pareto front" if len(study.directions) > 1 else "best –"
        self._progress.update(
            self._task,
            completed=min(count_done(study), self.total),
            best=best,
            counts=f"{pruned} pruned, {failed} failed",
            status="",
        )
        if trial.state == TrialState.FAIL:
            error = trial_record(study, trial).failure or "unknown error"
            self.console.print(f"[yellow]trial {trial.number} failed:[/] {escape(str(error))}", highlight=False)

    def on_epoch(self, trial: int, epoch: int, score: float) -> None:
        self._progress.update(self._task, status=f"trial {trial}: epoch {epoch} dev {100 * score:.2f}")

    def status(self, text: str) -> None:
        self._progress.update(self._task, status=escape(text))


@contextmanager
def stream_progress(console: Console, *, label: str) -> Iterator[Callable[[int, int, int], None]]:
    """A progress bar over a file being read; yields the ``progress(done, total, rows)`` callback."""
    progress = Progress(
        TextColumn(f"[bold]{escape(label)}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task("predict", total=None, rows=0)

    def update(done: int, total: int, rows: int) -> None:
        progress.update(task, completed=done, total=total, rows=f"{rows:,}")

    with progress:
        yield update
