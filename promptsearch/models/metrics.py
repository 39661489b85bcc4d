"""Evaluation metrics by name (``task.metric``); higher is better for all of them.

The names live in :data:`promptsearch.space.registry.METRICS` (so the search space accepts them without importing
this module); :func:`register_metric` adds one from outside.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from promptsearch.space.registry import METRICS

__all__ = ["METRICS", "compute_metric", "register_metric"]

Metric = Callable[[Sequence[int], Sequence[int]], float]


def register_metric(name: str, *, replace: bool = False) -> Callable[[Metric], Metric]:
    """Decorator: ``fn(gold, predicted) -> float`` (higher is better) as ``task.metric: <name>``."""
    return METRICS.decorator(name, replace=replace)


@register_metric("accuracy")
def accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    return float(np.mean(np.asarray(gold) == np.asarray(pred))) if len(gold) else 0.0


@register_metric("macro_f1")
def macro_f1(gold: Sequence[int], pred: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, average="macro", zero_division=0))


@register_metric("mcc")
def mcc(gold: Sequence[int], pred: Sequence[int]) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(gold, pred))


def compute_metric(name: str, gold: Sequence[int], pred: Sequence[int]) -> float:
    fn: Metric = METRICS[METRICS.check(name)]
    return fn(gold, pred)
