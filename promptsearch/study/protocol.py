"""How one config is scored: K-fold runs over the labelled rows, leave-one-out in context, or the dev split.

This is where :mod:`promptsearch.study.evaluation`'s rules meet the models. ``search.evaluation.mode: cv``
(the default):

- a config that trains runs K x S times (:func:`~promptsearch.study.evaluation.plan_runs`), each run on K-1
  folds of train ∪ dev, scoring its held fold after every epoch; the value is the mean curve's best point, one
  epoch for every run (:func:`~promptsearch.study.evaluation.choose_epoch`); the pruner hears the best point of
  the mean curve so far after each run, so every trial is compared on the same folds at the same step;
- an in-context config (nothing trains) scores every labelled row once, its demonstrations drawn from the other
  rows (leave-one-out): the demonstration selectors never show a query its own row. It is scored fold by fold,
  and the pruner hears the running mean after each fold (rows, not epochs, are its resource).

``mode: dev`` trains on train and scores dev after every epoch, as promptsearch did before: the pruner hears
every epoch, and the value is the best epoch's score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.io.data import Example, TaskData
from promptsearch.space.config import TrialConfig
from promptsearch.study.evaluation import (
    Fold,
    choose_epoch,
    intermediate_value,
    labelled_rows,
    mean_curve,
    plan_runs,
    stratified_folds,
)

if TYPE_CHECKING:
    from promptsearch.models.features import Encoded
    from promptsearch.models.trainer import FitResult
    from promptsearch.study.objective import TrialRunner

__all__ = ["Protocol", "TrialScore"]

SEED_STRIDE = 7919  # training seed of repeat s of a trial: its seed + s x this (a prime, away from trial seeds)


@dataclass(frozen=True)
class TrialScore:
    """What a config scored, and how: the value the study records, the epoch used, the mean curve."""

    value: float
    epoch: int  # the epoch every run is taken at (0: in context, nothing trained)
    curve: tuple[float, ...]  # the mean over runs of the held-out score after each epoch
    runs: int  # training runs (folds x seeds; 1 in mode dev; 0 in context)
    rows: int  # labelled rows that scored it (held-out rows of all folds, or the dev rows)
    mode: str  # cv | loo | dev
    train: Encoded  # the prompts of the (first) run's training rows: what the report shows
    last: FitResult  # the last run's fit: its timings and evaluation seconds
    eval_rows: int = 0  # rows in one evaluation (the held fold, or the dev split)
    fold_values: tuple[float, ...] = ()  # the score of each run (in context: of each fold's rows) at ``epoch``

    def record(self) -> dict[str, Any]:
        """What the trial stores about how it was scored (JSON)."""
        return {
            "mode": self.mode,
            "runs": self.runs,
            "rows": self.rows,
            "epoch": self.epoch,
            "curve": [round(v, 6) for v in self.curve],
            "fold_values": [round(v, 6) for v in self.fold_values],
        }


class Protocol:
    """Scores configs of one study by its ``search.evaluation``; folds and views are made once and reused."""

    def __init__(self, runner: TrialRunner) -> None:
        self.runner = runner
        spec = runner.space.spec.search
        self.evaluation = spec.evaluation
        self.rows: list[Example] = labelled_rows(runner.data.train, runner.data.dev)
        self.folds: tuple[Fold, ...] = ()
        if self.evaluation.cross_validated:
            self.folds = stratified_folds(self.rows, self.evaluation.folds, seed=spec.seed)
        self._views: dict[object, TrialRunner] = {}

    def _view(self, key: object, train: list[Example], held: list[Example], *, test: bool = False) -> TrialRunner:
        if key not in self._views:
            data = self.runner.data
            loader = (lambda: data.test) if test and data.has_test else None
            self._views[key] = self.runner.view(TaskData(train=train, dev=held, _load_test=loader))
        return self._views[key]

    def loo_runner(self, fold: Fold | None = None) -> TrialRunner:
        """Labelled rows (one fold's, or all) scored with demonstrations from all the other labelled rows (the
        selectors skip the query's own row). The views share one calibration: their prompts' pool is the same."""
        if fold is None:
            return self._view("loo", self.rows, self.rows)
        key = ("loo", fold.index)
        if key not in self._views:
            self._views[key] = self.loo_runner().view(
                TaskData(train=self.rows, dev=fold.split(self.rows)[1]), share_calibrations=True
            )
        return self._views[key]

    def fold_runner(self, fold: Fold) -> TrialRunner:
        train, held = fold.split(self.rows)
        return self._view(("fold", fold.index), train, held)

    def final_runner(self) -> TrialRunner:
        """What the final model trains on (``final_train``) and draws demonstrations from; test stays test."""
        if self.evaluation.final_rows == "train":
            return self.runner
        return self._view("final", self.rows, self.rows, test=True)

    def steps(self, config: TrialConfig) -> int:
        """The step of the last report :meth:`score` gives the pruner for ``config`` (its value is the trial's):
        one per run in cv mode, one per fold's rows in context, one per epoch in mode dev (0: no report)."""
        if not self.evaluation.cross_validated:
            return config.train.epochs if config.train.trains else 0
        if not config.train.trains:
            return len(self.folds)
        return len(plan_runs(len(self.folds), self.evaluation.seeds))

    def score(
        self,
        config: TrialConfig,
        *,
        seed: int,
        on_epoch: Callable[[int, float], None] | None = None,
        report: Callable[[float, int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> TrialScore:
        """Score ``config``. ``on_epoch(epoch, score)`` sees every evaluation (progress); ``report(value, step)``
        is the pruner's (it may raise ``optuna.TrialPruned``)."""
        if not self.evaluation.cross_validated:
            return self._dev(config, seed=seed, on_epoch=on_epoch, report=report, timings=timings)
        if not config.train.trains:
            return self._in_context(config, seed=seed, on_epoch=on_epoch, report=report, timings=timings)
        curves: list[list[float]] = []
        first: Encoded | None = None
        result = None
        held = 0
        for run in plan_runs(len(self.folds), self.evaluation.seeds):
            fold = self.folds[run.fold]
            result, train = self.fold_runner(fold).fit(
                config, seed=seed + SEED_STRIDE * run.seed, on_epoch=on_epoch, timings=timings
            )
            first = first if first is not None else train
            held += len(fold.held) if run.seed == 0 else 0
            curves.append(list(result.history))
            if report is not None:
                step = intermediate_value(curves)
                report(step.value, step.step)
        assert first is not None and result is not None
        choice = choose_epoch(curves)
        at = max(choice.epoch - 1, 0)
        return TrialScore(
            fold_values=tuple(c[at] for c in curves),
            value=choice.value,
            epoch=choice.epoch,
            curve=tuple(mean_curve(curves)),
            runs=len(curves),
            rows=held,
            mode="cv",
            train=first,
            last=result,
            eval_rows=len(self.folds[-1].held),
        )

    def _in_context(
        self,
        config: TrialConfig,
        *,
        seed: int,
        on_epoch: Callable[[int, float], None] | None,
        report: Callable[[float, int], None] | None,
        timings: dict[str, float] | None,
    ) -> TrialScore:
        """Leave-one-out, fold by fold (so a race compares it with trained configs fold for fold).

        Rows are the resource a pruner spends here: nothing trains, so there are no epochs to report, but after
        each fold's rows the running mean goes to the pruner at step k (k folds scored). The folds are the same
        for every trial and stratified, so step k of an in-context trial scores the same rows as step k of any
        other trial, trained or not; with the default successive halving (rungs at 1, 2, 4 steps) a poor prompt
        stops after a quarter of the rows at 4 folds."""
        values: list[float] = []
        first: Encoded | None = None
        result = None
        for step, fold in enumerate(self.folds, start=1):
            result, train = self.loo_runner(fold).fit(config, seed=seed, on_epoch=on_epoch, timings=timings)
            first = first if first is not None else train
            values.append(result.best_score)
            if report is not None:
                report(sum(values) / len(values), step)
        assert first is not None and result is not None
        value = sum(values) / len(values)
        return TrialScore(
            value=value,
            epoch=0,
            curve=(value,),
            runs=0,
            rows=len(self.rows),
            mode="loo",
            train=first,
            last=result,
            eval_rows=len(self.folds[-1].held),
            fold_values=tuple(values),
        )

    def _dev(
        self,
        config: TrialConfig,
        *,
        seed: int,
        on_epoch: Callable[[int, float], None] | None,
        report: Callable[[float, int], None] | None,
        timings: dict[str, float] | None,
    ) -> TrialScore:
        def each(epoch: int, score: float) -> None:
            if on_epoch is not None:
                on_epoch(epoch, score)
            if report is not None and epoch > 0:  # in context: scored once, nothing for a pruner to stop
                report(score, epoch)

        result, train = self.runner.fit(config, seed=seed, on_epoch=each, timings=timings)
        return TrialScore(
            value=result.best_score,
            epoch=result.best_epoch,
            curve=tuple(result.history),
            runs=1 if config.train.trains else 0,
            rows=len(self.runner.data.dev),
            mode="dev",
            train=train,
            last=result,
            eval_rows=len(self.runner.data.dev),
            fold_values=(result.best_score,),
        )
