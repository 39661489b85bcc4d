"""Racing the finalists: fresh evaluations decide, the search value only lets a trial in."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np
import pytest

from promptsearch.study.racing import Candidate, Cost, race, select_finalists

TRAINS = Cost(trains=True, prompt_tokens=60)
BASELINE = Candidate(trial=0, cost=Cost(trains=True, prompt_tokens=20), search_value=0.70, is_baseline=True)


def lookup(table: dict[int, list[list[float]]], calls: list[tuple[int, int]] | None = None):  # type: ignore[no-untyped-def]
    """``evaluate`` that returns ``table[trial][round]`` and records each call."""

    def evaluate(candidate: Candidate, round_: int) -> list[float]:
        if calls is not None:
            calls.append((candidate.trial, round_))
        return table[candidate.trial][round_]

    return evaluate


def test_the_lucky_top_trial_loses_after_re_evaluation() -> None:
    lucky = Candidate(trial=4, cost=TRAINS, search_value=0.91)  # one lucky draw in the search
    steady = Candidate(trial=7, cost=TRAINS, search_value=0.84)
    third = Candidate(trial=9, cost=TRAINS, search_value=0.80)
    finalists = select_finalists([third, lucky, steady], 3, baseline=BASELINE)
    assert finalists == [lucky, steady, third, BASELINE]

    table = {
        4: [[0.70, 0.74], [0.72, 0.68]],
        7: [[0.82, 0.84], [0.80, 0.86]],
        9: [[0.78, 0.76], [0.80, 0.78]],
        0: [[0.72, 0.70], [0.74, 0.72]],
    }
    calls: list[tuple[int, int]] = []
    result = race(finalists, lookup(table, calls), rounds=2)

    assert calls == [(4, 0), (7, 0), (9, 0), (0, 0), (4, 1), (7, 1), (9, 1), (0, 1)]  # everyone, every round
    assert result.winner.candidate is steady
    assert [s.candidate.trial for s in result.standings] == [7, 9, 0, 4]
    lucky_standing = result.standing(4)
    assert lucky_standing.scores == (0.70, 0.74, 0.72, 0.68)  # evaluations accumulate over the rounds
    assert lucky_standing.mean == pytest.approx(0.71)
    assert lucky_standing.std_error == pytest.approx(statistics.stdev([0.70, 0.74, 0.72, 0.68]) / 2)
    assert result.reason.startswith("trial 7: 0.830 ± 0.013 (4 evaluations) has the highest mean on the re-evaluations")
    assert result.notes == (
        "the search's best, trial 4 (0.910 in the search), ranks 4 of 4 on the re-evaluations (0.710): its search "
        "value was partly luck",
    )


def test_a_cheaper_finalist_within_one_standard_error_is_chosen_and_the_reason_says_so() -> None:
    best = Candidate(trial=3, cost=Cost(trains=True, prompt_tokens=120), search_value=0.85)
    cheap = Candidate(trial=5, cost=Cost(trains=False, prompt_tokens=300), search_value=0.83)
    table = {3: [[0.80, 0.90, 0.84, 0.86]], 5: [[0.82, 0.86, 0.80, 0.84]]}  # 0.85 ± 0.021 and 0.83
    result = race([best, cheap], lookup(table))

    assert result.best.candidate is best
    assert result.winner.candidate is cheap
    assert result.reason == (
        "trial 5: 0.830 ± 0.013 (4 evaluations) is within one standard error of the highest mean, "
        "trial 3: 0.850 ± 0.021 (4 evaluations), and cheaper (no training, 300 prompt tokens, against trains, "
        "120 prompt tokens): chosen"
    )
    # further than one standard error: the best stays
    table[5] = [[0.78, 0.82, 0.80, 0.80]]
    assert race([best, cheap], lookup(table)).winner.candidate is best
    # or a narrower rule
    table[5] = [[0.82, 0.86, 0.80, 0.84]]
    assert race([best, cheap], lookup(table), tolerance_se=0.5).winner.candidate is best


def test_fewer_prompt_tokens_is_cheaper_between_two_trained_configs() -> None:
    long = Candidate(trial=1, cost=Cost(trains=True, prompt_tokens=200))
    short = Candidate(trial=2, cost=Cost(trains=True, prompt_tokens=40))
    table = {1: [[0.80, 0.84]], 2: [[0.80, 0.83]]}
    assert race([long, short], lookup(table)).winner.candidate is short


def test_a_single_evaluation_has_no_standard_error_and_the_best_wins() -> None:
    best = Candidate(trial=1, cost=TRAINS)
    cheap = Candidate(trial=2, cost=Cost(trains=False, prompt_tokens=10))
    result = race([best, cheap], lookup({1: [[0.81]], 2: [[0.80]]}))
    assert math.isnan(result.best.std_error)
    assert result.winner.candidate is best
    assert result.best.describe() == "trial 1: 0.810 (1 evaluation)"


def test_minimising_ranks_the_lowest_mean_first() -> None:
    a = Candidate(trial=1, cost=TRAINS, search_value=0.2)
    b = Candidate(trial=2, cost=TRAINS, search_value=0.3)
    result = race([a, b], lookup({1: [[0.5, 0.5]], 2: [[0.3, 0.3]]}), direction="minimize")
    assert result.winner.candidate is b
    assert "lowest mean" in result.reason
    assert select_finalists([b, a], 1, direction="minimize") == [a]


def test_finalists_skip_failed_trials_and_add_the_baseline_once() -> None:
    trials = [
        Candidate(trial=1, cost=TRAINS, search_value=0.80),
        Candidate(trial=2, cost=TRAINS, search_value=None),  # failed or pruned
        Candidate(trial=3, cost=Cost(trains=False, prompt_tokens=10), search_value=0.80),  # tie: cheaper first
        BASELINE,
    ]
    assert [c.trial for c in select_finalists(trials, 2, baseline=BASELINE)] == [3, 1, 0]
    assert [c.trial for c in select_finalists(trials, 5)] == [3, 1]
    assert select_finalists(trials, 0, baseline=BASELINE) == []
    with pytest.raises(ValueError, match=re.escape("search.finalists must be 0 or more, but found -1")):
        select_finalists(trials, -1)


def test_bad_races_are_refused() -> None:
    a = Candidate(trial=1, cost=TRAINS)
    with pytest.raises(ValueError, match=re.escape("no finalists to race")):
        race([], lookup({}))
    with pytest.raises(ValueError, match=re.escape("rounds must be at least 1, but found 0")):
        race([a], lookup({1: [[0.5]]}), rounds=0)
    with pytest.raises(ValueError, match=re.escape("each finalist must be a different trial, but found trial numbers")):
        race([a, a], lookup({1: [[0.5]]}))
    with pytest.raises(
        ValueError, match=re.escape("evaluate(trial 1, round 0) must return one or more finite scores, but returned []")
    ):
        race([a], lookup({1: [[]]}))
    with pytest.raises(ValueError, match=re.escape("but returned [nan]")):
        race([a], lookup({1: [[float("nan")]]}))


def test_racing_removes_the_winners_curse_of_the_search_value() -> None:
    # 30 configs that are all equally good (0.70): the search's best value is its luckiest draw, but the race
    # mean of the same trial on fresh draws is close to the truth
    rng = np.random.default_rng(0)
    trials = [Candidate(trial=i, cost=TRAINS, search_value=float(0.70 + rng.normal(0, 0.09))) for i in range(1, 31)]
    finalists = select_finalists(trials, 3)

    def evaluate(candidate: Candidate, round_: int) -> list[float]:
        draws = np.random.default_rng([candidate.trial, round_]).normal(0.70, 0.09, size=4)
        return [float(d) for d in draws]

    result = race(finalists, evaluate, rounds=4)
    favourite = max(c.search_value or 0 for c in trials)
    assert favourite > 0.80  # the search's favourite looks 10+ points better than it is
    assert abs(result.winner.mean - 0.70) < 0.05  # the race sees through it
    assert result.winner.mean < favourite - 0.08
