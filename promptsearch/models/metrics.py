"""Evaluation metrics by name (``task.metric``); higher is better for all of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from promptsearch.errors import did_you_mean

__all__ = ["METRICS", "compute_metric", "register_metric"]

Metric = Callable[[Sequence[int], Sequence[int]], float]
METRICS: dict[str, Metric] = {}


def register_metric(name: str) -> Callable[[Metric], Metric]:
    def wrap(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn

    return wrap


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
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'.{did_you_mean(name, METRICS)} Available: {sorted(METRICS)}")
    return METRICS[name](gold, pred)
