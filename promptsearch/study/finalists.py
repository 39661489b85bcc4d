"""Racing the finalists on the labelled rows: the top ``search.finalists`` trials and the baseline, scored
again with fresh training seeds, before one of them goes to test. An in-context finalist trains nothing and
its demonstrations are drawn with the study's seed, so its race score repeats its search score: the race
re-estimates the trained finalists, and compares every finalist on the same rows, fold for fold.

The race runs once per search (after the last trial, before the final evaluation) and is stored in the study;
the study's best trial (:func:`promptsearch.study.records.best_trial`) is then its winner, as long as no trial
finished since. See :mod:`promptsearch.study.racing` for the rule: the highest mean over the race's
evaluations, unless a cheaper finalist (no training, then fewer prompt tokens) is within one standard error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna

from promptsearch.space.sampling import baseline_config
from promptsearch.study.objective import TrialRunner
from promptsearch.study.protocol import Protocol
from promptsearch.study.racing import Candidate, Cost, RaceResult, race, select_finalists
from promptsearch.study.records import (
    TrialRecord,
    searched_best_trial,
    store_race,
    stored_race,
    trial_records,
)

__all__ = ["RACE_SEED", "race_finalists", "race_record"]

logger = logging.getLogger(__name__)
RACE_SEED = 5000  # training seeds of the race: fresh, unlike any trial's (see Objective.seed_for)


def _candidate(record: TrialRecord) -> Candidate:
    assert record.config is not None
    trains = record.config.train.trains
    return Candidate(
        trial=record.number,
        cost=Cost(trains=trains, prompt_tokens=float(record.prompt_tokens_mean or 0.0)),
        search_value=record.dev,
        is_baseline=record.is_baseline,
    )


def race_record(result: RaceResult, *, done: int) -> dict[str, object]:
    """The race as stored in the study (JSON) and shown by the reports."""
    return {
        "done": done,
        "winner": result.winner.candidate.trial,
        "rounds": result.rounds,
        "reason": result.reason,
        "notes": list(result.notes),
        "standings": [
            {
                "trial": s.candidate.trial,
                "name": s.candidate.name,
                "baseline": s.candidate.is_baseline,
                "search_value": s.candidate.search_value,
                "mean": s.mean,
                "std_error": None if s.std_error != s.std_error else s.std_error,
                "n": s.n,
                "cost": s.candidate.cost.describe(),
                "trains": s.candidate.cost.trains,
                "prompt_tokens": s.candidate.cost.prompt_tokens,
            }
            for s in result.standings
        ],
    }


def race_finalists(
    runner: Callable[[], TrialRunner],
    study: optuna.Study,
    *,
    protocol: Protocol | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, object] | None:
    """Race the study's finalists (stored; reused while no trial finished since). None: no race to run.

    ``runner`` is called (loading the model) only when a race must run.

    Single-objective studies only (a multi-objective study recommends from its Pareto front instead).
    """
    stored = stored_race(study)
    records = trial_records(study)
    done = sum(1 for r in records if r.is_complete)
    if stored is not None and stored.get("done") == done:
        return stored
    if len(study.directions) > 1 or done < 2:
        return None
    trained = runner()  # the model loads only when there is a race to run
    space = trained.space
    n = space.spec.search.finalists
    if n == 0:
        return None
    # a config races once: with its pooled value where a repeat trained it again
    complete = [r for r in records if r.is_point and r.config is not None and r.dev is not None]
    base = next((r for r in complete if r.is_baseline), None)
    finalists = select_finalists(
        [_candidate(r) for r in complete if not r.is_baseline and r.duplicate_of is None],  # a config races once
        n,
        baseline=_candidate(base) if base is not None else None,
        direction=space.spec.search.direction,
    )
    if len(finalists) < 2:
        return None  # nothing to choose between
    configs = {r.number: r.config for r in complete}
    protocol = protocol if protocol is not None else Protocol(trained)

    def evaluate(candidate: Candidate, round_: int) -> list[float]:
        config = configs[candidate.trial] or baseline_config(space)
        if progress is not None:
            progress(f"racing the finalists: {candidate.name}")
        # The same seeds for every finalist in a round: their scores differ by config, not by seed luck
        # (common random numbers), so the race compares them pair for pair.
        score = protocol.score(config, seed=RACE_SEED + 100 * round_)
        return list(score.fold_values)

    rounds = 1 if protocol.evaluation.cross_validated else 2  # mode dev: one value per round, so two rounds
    result = race(finalists, evaluate, rounds=rounds, direction=space.spec.search.direction)
    record = race_record(result, done=done)
    store_race(study, record)
    best = searched_best_trial(study, records)
    if best is not None and best.number != result.winner.candidate.trial:
        logger.info("the race chose trial %d over the search's best, trial %d", result.winner.candidate.trial,
                    best.number)  # fmt: skip
    return record
