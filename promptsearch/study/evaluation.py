"""Trial scores that estimate test: folds over the labelled rows, one epoch for all of them, leave-one-out pools.

A dev split of 32 rows scores a trial with a standard error near 9 points, and the maximum over epochs of that
score is the luckiest of several noisy draws, so the winner of a search on it rarely holds on test (Perez, Kiela
and Cho, 2021, "True Few-Shot Learning"). With ``search.evaluation: {mode: cv, folds: K, seeds: S}`` a trial
instead:

1. pools train and dev (:func:`labelled_rows`) and splits them once per study into K stratified folds
   (:func:`stratified_folds`), the same folds for every trial, so trials are compared on the same rows;
2. trains K x S runs (:func:`plan_runs`): each run trains on K-1 folds and scores the held fold after every
   epoch, giving one curve per run;
3. takes ONE epoch for all runs, the argmax of the mean curve (:func:`choose_epoch`), never each run's own best
   epoch, and its value (the mean over runs at that epoch) is the trial's value;
4. reports to the pruner after each completed run (:func:`intermediate_value`), see there for why.

In-context trials (``train.method: none``, nothing trains) score every labelled row once, each with
demonstrations drawn only from the other rows (:func:`loo_pools`). The final model trains on
:func:`final_training_rows` for the chosen epoch. ``mode: dev`` keeps the single train/dev split.

Everything here is pure (numpy and scikit-learn, no torch), so it is tested in milliseconds.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

import numpy as np

from promptsearch.io.data import Example
from promptsearch.space.spec import EvaluationSpec

__all__ = [
    "EpochChoice",
    "Fold",
    "Intermediate",
    "Run",
    "check_folds",
    "choose_epoch",
    "final_training_rows",
    "intermediate_value",
    "labelled_rows",
    "loo_pools",
    "mean_curve",
    "plan_runs",
    "stratified_folds",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Two epochs whose mean scores differ by less than this are tied (a mean of the same scores summed in another
# order can differ in the last bits), and a tie goes to the earlier epoch.
TIE_TOLERANCE = 1e-12


# --- folds ----------------------------------------------------------------------------------------


def labelled_rows(train: Sequence[Example], dev: Sequence[Example]) -> list[Example]:
    """Train then dev, in that order: the rows that :func:`stratified_folds` indexes."""
    return [*train, *dev]


@dataclass(frozen=True)
class Fold:
    """One split of the labelled rows: the run trains on ``train`` and scores ``held`` (indices, ascending)."""

    index: int
    train: tuple[int, ...]
    held: tuple[int, ...]

    def split(self, rows: Sequence[T]) -> tuple[list[T], list[T]]:
        """``(train rows, held rows)`` of ``rows``, the list the fold was made from."""
        return [rows[i] for i in self.train], [rows[i] for i in self.held]


def check_folds(rows: Sequence[Example], k: int) -> None:
    """Raise ``ValueError`` when :func:`stratified_folds` would refuse to split ``rows`` into ``k`` folds
    (``promptsearch validate`` asks before any trial does, without loading scikit-learn)."""
    _check_fold_count(k, _distinct_texts(rows)[1])


def _distinct_texts(rows: Sequence[Example]) -> tuple[list[list[int]], list[str]]:
    """The row indices of each distinct text (:attr:`Example.key`), and the label of its first row."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, ex in enumerate(rows):
        groups.setdefault(ex.key, []).append(i)
    members = list(groups.values())
    return members, [rows[idx[0]].label for idx in members]


def _check_fold_count(k: int, labels: Sequence[str]) -> None:
    if k < 2:
        raise ValueError(f"stratified folds need k >= 2, but found k={k}; use mode 'dev' for one train/dev split")
    if len(labels) < k:
        raise ValueError(
            f"search.evaluation.folds is {k}, but the labelled rows (train and dev) hold only {len(labels)} "
            f"distinct texts; lower folds to {max(2, len(labels))} or fewer, or use mode 'dev'"
        )
    counts = Counter(labels)
    if max(counts.values()) < k:
        raise ValueError(
            f"search.evaluation.folds is {k}, but no class has {k} labelled rows (the largest has "
            f"{max(counts.values())}); lower folds to {max(2, max(counts.values()))} or fewer, or use mode 'dev'"
        )


def stratified_folds(rows: Sequence[Example], k: int, *, seed: int = 0) -> tuple[Fold, ...]:
    """K disjoint folds that together hold every row once, each with the class balance of the whole.

    scikit-learn's ``StratifiedKFold(k, shuffle=True, random_state=seed)`` does the split, so each fold holds
    the floor or the ceiling of 1/K of every class. Two rules on top:

    * Rows with the same texts (:attr:`Example.key`) always share a fold, so a run never scores a row it
      trained on. The split is made over distinct texts, each counted with its first row's label.
    * A class with fewer than K rows is dealt one row per fold to as many folds as it has rows; the other folds
      score none of that class (a warning is logged). When every class has fewer than K rows there is nothing
      to stratify and the split is refused; so is one with fewer distinct rows than K.

    Compute the folds once per study (same rows, same ``seed``): then every trial is scored on the same folds.

    >>> rows = [Example({"text": f"t{i}"}, "ab"[i % 2]) for i in range(8)]
    >>> [len(f.held) for f in stratified_folds(rows, 4)]
    [2, 2, 2, 2]
    """
    from sklearn.model_selection import StratifiedKFold

    members, labels = _distinct_texts(rows)
    _check_fold_count(k, labels)
    counts = Counter(labels)
    rare = {label: n for label, n in sorted(counts.items()) if n < k}
    if rare:
        listed = ", ".join(f"'{label}' ({n})" for label, n in rare.items())
        logger.warning(
            "search.evaluation.folds is %d, but some classes have fewer labelled rows: %s; each of their rows "
            "goes to a different fold, and the other folds score none of them",
            k,
            listed,
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        parts = list(splitter.split(np.zeros(len(members)), labels))
    folds = []
    for index, (train_groups, held_groups) in enumerate(parts):
        train = sorted(i for g in train_groups for i in members[g])
        held = sorted(i for g in held_groups for i in members[g])
        folds.append(Fold(index=index, train=tuple(train), held=tuple(held)))
    return tuple(folds)


@dataclass(frozen=True)
class Run:
    """One training run of a trial: fold ``fold`` (0 in mode dev) with the trial's ``seed``-th seed."""

    fold: int
    seed: int


def plan_runs(folds: int, seeds: int) -> tuple[Run, ...]:
    """The runs of a trial in the order to train them: every fold with seed 0, then every fold with seed 1, ...

    Covering every fold before repeating one makes each intermediate value (:func:`intermediate_value`) score
    as many different rows as possible. Mode dev is ``plan_runs(1, seeds)``.
    """
    if folds < 1 or seeds < 1:
        raise ValueError(f"a trial needs at least one fold and one seed, but found folds={folds}, seeds={seeds}")
    return tuple(Run(fold=f, seed=s) for s in range(seeds) for f in range(folds))


# --- one epoch for all runs -----------------------------------------------------------------------


class EpochChoice(NamedTuple):
    """The epoch chosen on the mean curve (1 = after the first epoch) and the mean score there."""

    epoch: int
    value: float


def mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """The mean over runs of the score after each epoch; every curve must have the same number of epochs.

    >>> mean_curve([[0.5, 0.75], [0.25, 0.75]])
    [0.375, 0.75]
    """
    if not curves:
        raise ValueError("no curves to average: a trial needs at least one completed run")
    lengths = sorted({len(c) for c in curves})
    if len(lengths) > 1 or lengths[0] == 0:
        raise ValueError(
            f"expected one score per epoch in every run, all of the same length, but found lengths "
            f"{[len(c) for c in curves]}; average only runs that trained the same number of epochs"
        )
    matrix = np.asarray(curves, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"expected finite scores, but found {matrix[~np.isfinite(matrix)].tolist()} in the curves")
    return [float(v) for v in matrix.mean(axis=0)]


def choose_epoch(
    curves: Sequence[Sequence[float]],
    *,
    direction: Literal["maximize", "minimize"] = "maximize",
    first_epoch: int = 1,
) -> EpochChoice:
    """ONE epoch for all runs: the best of the mean curve, ties to the earliest; never each run's own best.

    A per-run maximum picks, in every fold, the epoch that happened to suit that fold's rows, and its mean is
    biased upwards by as much as the folds disagree; the mean curve's best epoch is one choice that the final
    model can repeat. ``first_epoch`` numbers the first score (1: a training curve; 0 when the curve starts
    with the untrained model).

    >>> choose_epoch([[0.5, 0.9, 0.6], [0.7, 0.5, 0.8]])
    EpochChoice(epoch=2, value=0.7)
    """
    mean = np.asarray(mean_curve(curves))
    best = mean.max() if direction == "maximize" else mean.min()
    index = int(np.flatnonzero(np.abs(mean - best) <= TIE_TOLERANCE)[0])
    return EpochChoice(epoch=index + first_epoch, value=float(mean[index]))


# --- what the pruner sees -------------------------------------------------------------------------


class Intermediate(NamedTuple):
    """What to report to Optuna after a completed run: ``trial.report(value, step)``."""

    step: int
    epoch: int
    value: float


def intermediate_value(
    curves: Sequence[Sequence[float]],
    *,
    direction: Literal["maximize", "minimize"] = "maximize",
    first_epoch: int = 1,
) -> Intermediate:
    """The running estimate after the completed runs ``curves`` (in :func:`plan_runs` order): report it at step
    ``len(curves)``.

    Why runs, not epochs, are the steps. Folds are trained one after the other (fold-major), each to the end,
    and the pruner hears from a trial once per completed run, with :func:`choose_epoch` of the runs so far:

    * Comparable across trials: step r always covers the same first r runs, that is the same folds (the folds
      are fixed for the study and every trial trains them in :func:`plan_runs` order), so two trials at step r
      are scored on exactly the same rows. A per-epoch report of fold 1 alone would be comparable too, but a
      running mean over folds at mixed epochs would not, and neither would anything at epoch e when
      ``train.epochs`` is itself searched (epoch 3 of a 3-epoch schedule is not epoch 3 of a 10-epoch one).
    * The last report is the trial's value: after all runs it is the mean curve's best, as returned.
    * One model in memory at a time: lockstep training (all folds advancing epoch by epoch, reporting the mean
      at epoch e) would hold K models and optimizer states at once, or swap them every epoch.
    * Successive halving with ``min_resource: 1, reduction_factor: 2`` then has rungs at 1, 2, 4, ... runs, so
      a poor trial stops after one run (1/K of its cost).

    The cost is that a trial is never stopped inside its first run. With a single run in all (mode dev, one
    seed) the objective keeps reporting each epoch's dev score, as before.
    """
    choice = choose_epoch(curves, direction=direction, first_epoch=first_epoch)
    return Intermediate(step=len(curves), epoch=choice.epoch, value=choice.value)


# --- in-context trials: leave one out ---------------------------------------------------------------


def loo_pools(rows: Sequence[Example]) -> Iterator[tuple[Example, list[Example]]]:
    """Each labelled row with the rows its demonstrations may come from: all the others, except any row with
    the same texts (whose label would give the answer away).

    An in-context trial scores every labelled row this way, so no row is both a query and its own
    demonstration. The demonstration selectors already leave out pool rows with the query's texts
    (:meth:`promptsearch.prompts.demos.DemoSelector.candidates`), so one selector built on all labelled rows,
    asked for each of them in turn, draws exactly from these pools; this function states the rule and lets
    tests check it. Such a trial is scored once, so it reports nothing to the pruner.
    """
    for i, query in enumerate(rows):
        yield query, [ex for j, ex in enumerate(rows) if j != i and ex.key != query.key]


# --- the final model --------------------------------------------------------------------------------


def final_training_rows(evaluation: EvaluationSpec, train: Sequence[Example], dev: Sequence[Example]) -> list[Example]:
    """What the final model trains on, for the epoch the trial chose (``search.evaluation.final_train``).

    ``all``: train and dev (no row is left to choose an epoch on, so the trial's chosen epoch is used: train
    with the trial's schedule of ``train.epochs`` epochs and stop after the chosen one). ``train``: the train
    split alone, as before (in mode dev the final run may still keep its best epoch on dev).
    """
    return labelled_rows(train, dev) if evaluation.final_rows == "all" else list(train)
