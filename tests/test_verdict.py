"""The verdict on test: a paired bootstrap interval that a hand computation reproduces, and labels that follow it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from promptsearch.models.metrics import METRICS, accuracy, macro_f1
from promptsearch.study.verdict import (
    CONFUSION_METRICS,
    Verdict,
    dev_test_gap_warning,
    paired_bootstrap,
    paired_bootstrap_metric,
    verdict_label,
)

# 1/0 correctness of 8 test rows under 2 seeds (best) and 3 seeds (baseline)
BEST = [[1, 1, 0, 1, 1, 0, 1, 1], [1, 0, 1, 1, 1, 0, 1, 1]]
BASE = [[1, 0, 0, 1, 0, 0, 1, 0], [0, 1, 0, 1, 0, 0, 1, 1], [1, 0, 0, 0, 1, 0, 1, 0]]


def test_the_interval_matches_a_hand_computation_of_the_same_resamples() -> None:
    verdict = paired_bootstrap(BEST, BASE, n_boot=500, seed=7)

    per_row = np.mean(BEST, axis=0) - np.mean(BASE, axis=0)  # average over seeds, then pair the rows
    rows = np.random.default_rng(7).integers(0, 8, size=(500, 8))  # the same rows for both configs
    deltas = [np.mean(np.mean(BEST, axis=0)[r]) - np.mean(np.mean(BASE, axis=0)[r]) for r in rows]
    assert verdict.delta == pytest.approx(per_row.mean())
    assert verdict.delta == pytest.approx(np.mean(BEST) - np.mean(BASE))
    assert verdict.ci_low == pytest.approx(np.percentile(deltas, 2.5))
    assert verdict.ci_high == pytest.approx(np.percentile(deltas, 97.5))
    assert (verdict.n_rows, verdict.n_boot, verdict.level) == (8, 500, 0.95)
    assert paired_bootstrap(BEST, BASE, n_boot=500, seed=7) == verdict  # a fixed seed, a fixed interval


def test_pairing_makes_a_constant_difference_exact() -> None:
    # rows differ wildly in difficulty, but best is always 0.1 above the baseline on the same row:
    # resampling the rows together leaves no doubt (an unpaired bootstrap would give a wide interval)
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.9, size=50)
    verdict = paired_bootstrap(base + 0.1, base)
    assert verdict.delta == pytest.approx(0.1)
    assert verdict.ci_low == pytest.approx(0.1) and verdict.ci_high == pytest.approx(0.1)
    assert verdict.label == "better"
    assert paired_bootstrap(base, base + 0.1).label == "worse"


def test_seeds_are_averaged_before_the_difference() -> None:
    # best's two seeds are each right on half the rows, the baseline's single seed scores 0.5 on every row
    verdict = paired_bootstrap([[1, 0, 1, 0], [0, 1, 0, 1]], [[0.5, 0.5, 0.5, 0.5]])
    assert (verdict.delta, verdict.ci_low, verdict.ci_high) == (0.0, 0.0, 0.0)
    assert verdict.label == "no clear difference"


@pytest.mark.parametrize(
    ("low", "high", "label"),
    [
        (0.01, 0.2, "better"),
        (-0.2, -0.01, "worse"),
        (-0.05, 0.1, "no clear difference"),
        (0.0, 0.1, "no clear difference"),  # touching zero is not clear
        (-0.1, 0.0, "no clear difference"),
    ],
)
def test_the_label_follows_the_interval(low: float, high: float, label: str) -> None:
    assert verdict_label(low, high) == label


def test_a_small_noisy_difference_is_no_clear_difference() -> None:
    verdict = paired_bootstrap(BEST, BASE)
    assert verdict.delta == pytest.approx(0.75 - 10 / 24)
    assert verdict.ci_low < verdict.delta < verdict.ci_high
    assert verdict.label == verdict_label(verdict.ci_low, verdict.ci_high)


def test_the_metric_bootstrap_agrees_with_the_row_bootstrap_for_accuracy() -> None:
    gold = [0, 1, 1, 0, 1, 0, 0, 1]
    best = [[g if ok else 1 - g for g, ok in zip(gold, seed, strict=True)] for seed in BEST]
    base = [[g if ok else 1 - g for g, ok in zip(gold, seed, strict=True)] for seed in BASE]
    by_metric = paired_bootstrap_metric(gold, best, base, "accuracy", n_boot=300, seed=3)
    assert paired_bootstrap_metric(gold, best, base, accuracy, n_boot=300, seed=3) == pytest.approx(by_metric)
    by_rows = paired_bootstrap(BEST, BASE, n_boot=300, seed=3)
    assert by_metric.delta == pytest.approx(by_rows.delta)
    assert by_metric.ci_low == pytest.approx(by_rows.ci_low)
    assert by_metric.ci_high == pytest.approx(by_rows.ci_high)


def test_the_metric_bootstrap_recomputes_macro_f1_on_each_resample() -> None:
    gold = [0, 0, 0, 0, 0, 0, 1, 1]
    best = [[0, 0, 0, 0, 0, 1, 1, 1]]
    base = [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1]]
    verdict = paired_bootstrap_metric(gold, best, base, "macro_f1", n_boot=25, seed=5)

    rows = np.random.default_rng(5).integers(0, 8, size=(25, 8))
    g, b, a = np.asarray(gold), np.asarray(best), np.asarray(base)
    hand = [np.mean([macro_f1(g[r], p[r]) for p in b]) - np.mean([macro_f1(g[r], p[r]) for p in a]) for r in rows]
    whole = np.mean([macro_f1(gold, p) for p in b]) - np.mean([macro_f1(gold, p) for p in a])
    assert verdict.delta == pytest.approx(whole)
    assert (verdict.ci_low, verdict.ci_high) == pytest.approx((np.percentile(hand, 2.5), np.percentile(hand, 97.5)))


@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize("name", ["accuracy", "macro_f1", "mcc"])
def test_metrics_from_confusion_counts_match_the_registry(name: str) -> None:
    rng = np.random.default_rng(11)
    cases: list[tuple[list[int], list[int]]] = [
        (rng.integers(0, 3, 30).tolist(), rng.integers(0, 3, 30).tolist()) for _ in range(20)
    ]
    cases += [([1, 1, 1], [1, 1, 1]), ([0, 0, 2], [0, 1, 1]), ([0, 1], [1, 0]), ([2, 2], [0, 0])]
    for gold, pred in cases:
        conf = np.zeros((3, 3))
        np.add.at(conf, (np.asarray(gold), np.asarray(pred)), 1)
        assert CONFUSION_METRICS[name](conf) == pytest.approx(METRICS[name](gold, pred), abs=1e-12)


def test_an_unknown_metric_name_gets_did_you_mean() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "unknown metric 'macro-f1'. did you mean 'macro_f1'? Available: accuracy, macro_f1, mcc; or pass the "
            "metric itself, metric(gold, pred) -> float"
        ),
    ):
        paired_bootstrap_metric([0, 1], [[0, 1]], [[0, 1]], "macro-f1")


def test_describe_reads_in_points() -> None:
    verdict = Verdict(delta=0.041, ci_low=-0.012, ci_high=0.09, label="no clear difference", n_rows=872)
    assert verdict.describe() == (
        "+4.1 points (95% CI -1.2 to +9.0, paired bootstrap over 872 test rows): no clear difference"
    )


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(
        ValueError, match=re.escape("expected both configs scored on the same test rows, but found 3 and 2 rows")
    ):
        paired_bootstrap([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match=re.escape("expected best scores as one score per test row")):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match=re.escape("expected finite baseline scores, but found [nan]")):
        paired_bootstrap([1.0], [float("nan")])
    with pytest.raises(ValueError, match=re.escape("n_boot must be at least 1, but found 0")):
        paired_bootstrap([1], [0], n_boot=0)
    with pytest.raises(ValueError, match=re.escape("level must be between 0 and 1 (0.95 for a 95% interval)")):
        paired_bootstrap([1], [0], level=95)
    with pytest.raises(ValueError, match=re.escape("but found 3, 2 and 3 rows")):
        paired_bootstrap_metric([0, 1, 1], [[0, 1]], [[0, 1, 1]], "accuracy")


# --- the dev-test gap -------------------------------------------------------------------------------


def test_the_gap_warning_names_both_scores_and_what_helps() -> None:
    assert dev_test_gap_warning(0.75, 0.52) == (
        "the chosen config scored 0.750 in the search but 0.520 on test, 23.0 points lower: the search's estimate "
        "was optimistic (chosen as the best of many noisy estimates), so its ranking of configs may be too; more "
        "folds or seeds (search.evaluation), more finalists (search.finalists) or more labelled rows make it more "
        "reliable"
    )
    assert "20.0 points higher: the search's estimate is noisy" in str(dev_test_gap_warning(0.60, 0.80))


def test_no_gap_warning_within_the_threshold() -> None:
    assert dev_test_gap_warning(0.80, 0.75) is None
    assert dev_test_gap_warning(0.80, 0.75, threshold=0.02) is not None
    assert dev_test_gap_warning(0.5, 0.25, threshold=0.25) is None  # exactly at the threshold
    with pytest.raises(ValueError, match=re.escape("threshold must be 0 or more, but found -0.1")):
        dev_test_gap_warning(0.8, 0.7, threshold=-0.1)
    with pytest.raises(ValueError, match=re.escape("expected finite scores, but found dev=nan, test=0.7")):
        dev_test_gap_warning(float("nan"), 0.7)
