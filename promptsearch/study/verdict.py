"""An honest verdict on test: is the chosen config better than the baseline, or could the difference be chance?

The final evaluation scores the chosen config and the baseline on the same test rows with several seeds. A
paired bootstrap (Efron and Tibshirani, 1993; Koehn, 2004, for NLP) resamples the test rows with replacement,
the same rows for both configs, averages each config's score over its seeds on the resample, and takes the
difference. The 95% percentile interval of those differences gives the verdict: ``better`` when it lies above
zero, ``worse`` below, and ``no clear difference`` when it holds zero.

:func:`paired_bootstrap` takes per-row scores (1/0 correctness for accuracy, or a continuous score), whose mean
is the metric; :func:`paired_bootstrap_metric` recomputes a metric that is not a mean over rows (macro-F1, MCC)
on each resample. Both draw the resampled rows as ``numpy.random.default_rng(seed).integers(0, n_rows,
size=(n_boot, n_rows))``, so a fixed seed gives a fixed interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from promptsearch.errors import did_you_mean

__all__ = [
    "CONFUSION_METRICS",
    "Verdict",
    "VerdictLabel",
    "dev_test_gap_warning",
    "paired_bootstrap",
    "paired_bootstrap_metric",
    "verdict_label",
]

VerdictLabel = Literal["better", "worse", "no clear difference"]
N_BOOT = 2000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Verdict:
    """Best minus baseline on test, the bootstrap interval of that difference, and what it means."""

    delta: float
    ci_low: float
    ci_high: float
    label: VerdictLabel
    level: float = LEVEL
    n_rows: int = 0
    n_boot: int = N_BOOT

    def describe(self) -> str:
        """``+4.1 points (95% CI -1.2 to +9.0, paired bootstrap over 872 test rows): no clear difference``."""
        pct = f"{100 * self.level:g}%"
        return (
            f"{100 * self.delta:+.1f} points ({pct} CI {100 * self.ci_low:+.1f} to {100 * self.ci_high:+.1f}, "
            f"paired bootstrap over {self.n_rows} test rows): {self.label}"
        )


def verdict_label(ci_low: float, ci_high: float) -> VerdictLabel:
    """``better`` when the whole interval is above zero, ``worse`` when below, else ``no clear difference``."""
    if ci_low > 0:
        return "better"
    if ci_high < 0:
        return "worse"
    return "no clear difference"


def _seeds_by_rows(scores: npt.ArrayLike, what: str) -> npt.NDArray[np.float64]:
    array = np.asarray(scores, dtype=float)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"expected {what} as one score per test row, or one such list per seed, but found shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"expected finite {what}, but found {array[~np.isfinite(array)].tolist()[:5]}")
    return array


def _resamples(n_rows: int, n_boot: int, seed: int, level: float) -> npt.NDArray[np.int64]:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, but found {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (0.95 for a 95% interval), but found {level}")
    return np.random.default_rng(seed).integers(0, n_rows, size=(n_boot, n_rows))


def _verdict(delta: float, deltas: npt.NDArray[np.float64], level: float, n_rows: int) -> Verdict:
    alpha = 1 - level
    low, high = (float(v) for v in np.quantile(deltas, [alpha / 2, 1 - alpha / 2]))
    return Verdict(
        delta=delta,
        ci_low=low,
        ci_high=high,
        label=verdict_label(low, high),
        level=level,
        n_rows=n_rows,
        n_boot=len(deltas),
    )


def paired_bootstrap(
    best: npt.ArrayLike,
    baseline: npt.ArrayLike,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Verdict:
    """Paired bootstrap interval of ``mean(best) - mean(baseline)`` over test rows, for per-row scores.

    ``best`` and ``baseline`` are ``[seeds][rows]`` (or one list of rows): the score of each test row under each
    final seed, row i being the same test row in both. Each config's scores are first averaged over its seeds
    (the mean over seeds of the mean over a resample is the mean over the resample of the per-row seed means),
    then the same resampled rows are taken for both.

    >>> paired_bootstrap([1, 1, 0, 1], [0, 1, 0, 1]).delta
    0.25
    """
    b = _seeds_by_rows(best, "best scores").mean(axis=0)
    a = _seeds_by_rows(baseline, "baseline scores").mean(axis=0)
    if len(a) != len(b):
        raise ValueError(f"expected both configs scored on the same test rows, but found {len(b)} and {len(a)} rows")
    diff = b - a
    idx = _resamples(len(diff), n_boot, seed, level)
    return _verdict(float(diff.mean()), diff[idx].mean(axis=1), level, len(diff))


MetricFn = Callable[[Sequence[int], Sequence[int]], float]


def _accuracy(conf: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    total = conf.sum(axis=(-2, -1))
    trace = np.trace(conf, axis1=-2, axis2=-1)
    return np.divide(trace, total, out=np.zeros_like(trace), where=total > 0)


def _macro_f1(conf: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # as scikit-learn's f1_score(average="macro", zero_division=0): the mean over the classes that occur in the
    # gold labels or the predictions
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    gold, pred = conf.sum(axis=-1), conf.sum(axis=-2)
    denom = gold + pred
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    return np.divide(
        (f1 * present).sum(axis=-1), present.sum(axis=-1), out=np.zeros(f1.shape[:-1]), where=present.sum(axis=-1) > 0
    )


def _mcc(conf: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # as scikit-learn's matthews_corrcoef: 0 when either marginal has a single class
    t_sum, p_sum = conf.sum(axis=-1), conf.sum(axis=-2)
    n = conf.sum(axis=(-2, -1))
    correct = np.trace(conf, axis1=-2, axis2=-1)
    cov_tp = correct * n - (t_sum * p_sum).sum(axis=-1)
    cov_pp = n**2 - (p_sum * p_sum).sum(axis=-1)
    cov_tt = n**2 - (t_sum * t_sum).sum(axis=-1)
    denom = np.sqrt(cov_tt * cov_pp)
    return np.divide(cov_tp, denom, out=np.zeros_like(cov_tp), where=denom > 0)


# Metrics computed from confusion counts, for every resample at once: the names of task.metric.
CONFUSION_METRICS: dict[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]] = {
    "accuracy": _accuracy,
    "macro_f1": _macro_f1,
    "mcc": _mcc,
}
_CHUNK = 256  # resamples per block of confusion counts: bounds memory on large test sets


def _metric_deltas(
    y: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    a: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64],
    metric: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
) -> npt.NDArray[np.float64]:
    """Best minus baseline for each row of ``weights`` (how often each test row is drawn), from confusion counts."""
    k = int(max(y.max(), b.max(), a.max())) + 1

    def mean_over_seeds(preds: npt.NDArray[np.int64], w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        scores = []
        for p in preds:
            cells = np.zeros((len(y), k * k))
            cells[np.arange(len(y)), y * k + p] = 1.0  # which confusion cell each row falls in
            scores.append(metric((w @ cells).reshape(len(w), k, k)))
        return np.mean(scores, axis=0)

    blocks = np.array_split(weights, max(1, -(-len(weights) // _CHUNK)))
    return np.concatenate([mean_over_seeds(b, w) - mean_over_seeds(a, w) for w in blocks])


def paired_bootstrap_metric(
    gold: Sequence[int],
    best: npt.ArrayLike,
    baseline: npt.ArrayLike,
    metric: str | MetricFn,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Verdict:
    """Paired bootstrap of ``metric`` (best minus baseline, each averaged over its seeds) for any metric.

    ``gold`` holds the test labels (class indices), ``best`` and ``baseline`` the predicted class of each row
    under each seed (``[seeds][rows]``). Every resample scores both configs' seeds on the same rows; use this
    for macro-F1 and MCC, which are not means over rows. ``metric`` is a ``task.metric`` name (``accuracy``,
    ``macro_f1``, ``mcc``: computed from confusion counts for all resamples at once, in milliseconds) or any
    ``metric(gold, pred) -> float`` (called once per resample and seed: slow with scikit-learn's metrics).
    """
    y = np.asarray(gold, dtype=np.int64)
    b = _seeds_by_rows(best, "best predictions").astype(np.int64)
    a = _seeds_by_rows(baseline, "baseline predictions").astype(np.int64)
    if not (len(y) == b.shape[1] == a.shape[1]):
        raise ValueError(
            f"expected gold labels and both configs' predictions for the same test rows, but found {len(y)}, "
            f"{b.shape[1]} and {a.shape[1]} rows"
        )
    if min(y.min(), b.min(), a.min()) < 0:
        raise ValueError("expected class indices (0, 1, ...), but found a negative one")
    idx = _resamples(len(y), n_boot, seed, level)
    if isinstance(metric, str):
        if metric not in CONFUSION_METRICS:
            raise ValueError(
                f"unknown metric '{metric}'.{did_you_mean(metric, CONFUSION_METRICS)} Available: "
                f"{', '.join(CONFUSION_METRICS)}; or pass the metric itself, metric(gold, pred) -> float"
            )
        fast = CONFUSION_METRICS[metric]
        weights = np.stack([np.bincount(rows, minlength=len(y)) for rows in idx]).astype(float)
        deltas = _metric_deltas(y, b, a, weights, fast)
        delta = float(_metric_deltas(y, b, a, np.ones((1, len(y))), fast)[0])
        return _verdict(delta, deltas, level, len(y))

    def one(rows: npt.NDArray[np.int64] | slice) -> float:
        gold_rows = y[rows].tolist()
        mean_b = np.mean([metric(gold_rows, p[rows].tolist()) for p in b])
        mean_a = np.mean([metric(gold_rows, p[rows].tolist()) for p in a])
        return float(mean_b - mean_a)

    return _verdict(one(slice(None)), np.array([one(rows) for rows in idx]), level, len(y))


def dev_test_gap_warning(dev: float, test: float, threshold: float = 0.10) -> str | None:
    """A warning when the chosen config's search estimate and its test score differ by more than ``threshold``.

    ``dev`` is the estimate the search chose on (the race mean when there was a race, else the trial value),
    ``test`` the final test score, both in the metric's units (``threshold=0.10`` is 10 points). None when they
    agree within the threshold.

    >>> print(dev_test_gap_warning(0.75, 0.52))  # doctest: +ELLIPSIS
    the chosen config scored 0.750 in the search but 0.520 on test, 23.0 points lower: ...
    """
    if not (math.isfinite(dev) and math.isfinite(test)):
        raise ValueError(f"expected finite scores, but found dev={dev}, test={test}")
    if threshold < 0:
        raise ValueError(f"threshold must be 0 or more, but found {threshold}")
    gap = dev - test
    if abs(gap) <= threshold:
        return None
    head = f"the chosen config scored {dev:.3f} in the search but {test:.3f} on test"
    if gap > 0:
        return (
            f"{head}, {100 * gap:.1f} points lower: the search's estimate was optimistic (chosen as the best of "
            "many noisy estimates), so its ranking of configs may be too; more folds or seeds "
            "(search.evaluation), more finalists (search.finalists) or more labelled rows make it more reliable"
        )
    return (
        f"{head}, {100 * -gap:.1f} points higher: the search's estimate is noisy (few labelled rows), so its "
        "ranking of configs is uncertain; more folds or seeds (search.evaluation) or more labelled rows make it "
        "more reliable"
    )
