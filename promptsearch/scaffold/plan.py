"""Choose the data set-up of a new space from the sizes of a :class:`~promptsearch.scaffold.profile.DataProfile`.

A large train file is sampled few-shot (``task.few_shot``: K rows per class, and dev the same way when there
is no dev file), as LM-BFF's k-shot splits are; a small one is used whole, with its dev file or, without one,
a stratified share carved from it (``task.dev_from_train``). The trials are then scored by K-fold
cross-validation over train and dev (the default of ``search.evaluation``), with as many folds as the classes
allow.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from promptsearch.errors import DataError
from promptsearch.scaffold.profile import DataProfile
from promptsearch.space.spec import DevFromTrain, EvaluationSpec, FewShot

__all__ = ["LARGE_ROWS_PER_CLASS", "DataPlan", "K", "plan_data"]

K = 16  # rows per class of a few-shot sample (LM-BFF's k-shot splits)
SEED = 13  # the seed of LM-BFF's first split
LARGE_ROWS_PER_CLASS = 64  # a split with more rows than this per class (on average) is sampled few-shot
DEV_FRACTION = 0.25  # the share of a small train file that becomes dev
FOLDS = EvaluationSpec.model_fields["folds"].default  # the evaluation's default number of folds


@dataclass(frozen=True)
class DataPlan:
    """How the space reads the data: few-shot sampling or a carved dev, and the folds of the evaluation."""

    few_shot: FewShot | None
    dev_from_train: DevFromTrain | None
    folds: int
    labelled: Counter[str]  # rows per class that the search scores (train and dev after sampling)
    notes: tuple[str, ...] = field(default=())  # why, one line each (written as comments and printed)
    warnings: tuple[str, ...] = field(default=())


def _large(counts: Counter[str]) -> bool:
    return sum(counts.values()) > LARGE_ROWS_PER_CLASS * len(counts)


def plan_data(profile: DataProfile) -> DataPlan:
    """The data set-up for ``profile``: see the module's docstring. Raises :class:`DataError` when the rows are
    too few to score a trial (fewer than two rows in every class)."""
    train = profile.train.counts
    dev = profile.dev.counts if profile.dev is not None else None
    labels = profile.labels
    least = min(train[c] for c in labels)
    rare = [c for c in labels if train[c] == least]
    notes: list[str] = []
    warnings: list[str] = []
    few: FewShot | None = None
    carve: DevFromTrain | None = None
    if dev is not None:
        k = min(K, least) if _large(train) else None
        dev_least = min(dev.get(c, 0) for c in labels)
        dev_k = min(K, dev_least) if _large(dev) and dev_least > 0 else None
        if k is not None or dev_k is not None:
            few = FewShot(k=k if k is not None else least, dev_k=dev_k, seed=SEED)
            parts = [f"train {few.k} per class", f"dev {dev_k} per class" if dev_k else "dev as it is"]
            notes.append(f"a large file: few-shot sampling, {' and '.join(parts)} (seed {SEED})")
            if k is None and least < max(train.values()):
                warnings.append(
                    f"the dev file is large, so task.few_shot samples it, and then train too: {least} rows per "
                    f"class (the rarest class, {rare[0]!r}, has {least}); edit task.few_shot.k to change it"
                )
        else:
            notes.append("train and dev are small: every row is used, as it is")
        train_rows = {c: few.k if few is not None else train[c] for c in labels}
        labelled = Counter({c: train_rows[c] + (dev_k or dev.get(c, 0)) for c in labels})
    elif _large(train) and least >= 2:
        k = min(K, least // 2)
        dev_k = min(K, least - k)
        few = FewShot(k=k, dev_k=dev_k, seed=SEED)
        labelled = Counter({c: k + dev_k for c in labels})
        notes.append(
            f"{profile.train.rows} train rows and no dev file: few-shot sampling, {k} rows per class for train and "
            f"{dev_k} per class for dev from the rest (seed {SEED}); the other rows are not read by the search"
        )
    else:
        carve = DevFromTrain(fraction=DEV_FRACTION, seed=SEED)
        labelled = Counter(train)
        notes.append(
            f"{profile.train.rows} train rows and no dev file: every row is used, and a quarter of each class "
            f"becomes dev (seed {SEED})"
        )
    if few is not None and few.k < K and _large(train):
        warnings.append(
            f"class {rare[0]!r} has only {least} train rows, so task.few_shot samples {few.k} train rows per class, "
            f"not {K}: every class gets the same number; add rows of {rare[0]!r} for a larger sample"
        )
    distinct = Counter(ex.label for ex in {ex.key: ex for ex in profile.labelled()}.values())
    if max(distinct.values()) < 2:
        raise DataError(
            f"{profile.train.source}: every class has a single distinct text, too few to score a trial on rows it "
            "did not train on; add rows (two or more per class)"
        )
    folds = min(FOLDS, max(min(labelled[c], distinct[c]) for c in labels), sum(distinct.values()))
    folds = max(2, folds)
    if folds < FOLDS:
        notes.append(f"{folds}-fold cross-validation: the largest class has {folds} labelled rows")
    return DataPlan(
        few_shot=few,
        dev_from_train=carve,
        folds=folds,
        labelled=labelled,
        notes=tuple(notes),
        warnings=tuple(warnings),
    )
