"""Racing the finalists: re-evaluate the best few trials and the baseline on fresh runs before one goes to test.

The trial with the best search value is partly the luckiest: its value was chosen as the maximum of many noisy
estimates, so it is biased upwards (the winner's curse), most of all with few labelled rows. A race, in the
spirit of irace and of Hyperband's successive halving, gives the top ``search.finalists`` trials and the
baseline the same fresh evaluations (new seeds, or other folds) and ranks them on those alone; the search
value only decides who enters. The winner is the highest mean, unless a cheaper finalist is within one
standard error of it (the one-standard-error rule of Breiman et al., 1984): then the cheaper one is chosen,
and :attr:`RaceResult.reason` says so.

Pure logic: the caller passes ``evaluate(candidate, round) -> scores``, which trains and scores; here only the
bookkeeping and the choice happen, so they are tested without a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["Candidate", "Cost", "Evaluate", "RaceResult", "Standing", "race", "select_finalists"]

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True, order=True)
class Cost:
    """What a config costs to use, compared in this order: training at all, then prompt tokens per row.

    A config that needs no training (in context) is cheaper than any that trains, whatever its prompt; between
    two of the same kind, the shorter prompt is cheaper (every prediction pays for it).
    """

    trains: bool
    prompt_tokens: float

    def describe(self) -> str:
        kind = "trains" if self.trains else "no training"
        return f"{kind}, {self.prompt_tokens:.0f} prompt tokens"


@dataclass(frozen=True)
class Candidate:
    """A finalist: the Optuna trial number (the baseline is one too), its cost and its value in the search."""

    trial: int
    cost: Cost
    search_value: float | None = None
    is_baseline: bool = False

    @property
    def name(self) -> str:
        return "the baseline" if self.is_baseline else f"trial {self.trial}"


Evaluate = Callable[[Candidate, int], Sequence[float]]
"""``evaluate(candidate, round) -> scores``: train and score the candidate's config afresh, e.g. on every fold
with seed ``offset + round``; give every candidate the same seeds and folds in a round, so they are compared on
the same draws."""


@dataclass(frozen=True)
class Standing:
    """A finalist's evaluations in the race, their mean and the standard error of that mean."""

    candidate: Candidate
    scores: tuple[float, ...]
    mean: float
    std_error: float  # NaN with a single evaluation

    @property
    def n(self) -> int:
        return len(self.scores)

    def describe(self) -> str:
        """``trial 3: 0.812 ± 0.010 (8 evaluations)``."""
        spread = f" ± {self.std_error:.3f}" if not math.isnan(self.std_error) else ""
        many = "evaluation" if self.n == 1 else "evaluations"
        return f"{self.candidate.name}: {self.mean:.3f}{spread} ({self.n} {many})"


@dataclass(frozen=True)
class RaceResult:
    """The finalists ranked by their race mean (best first), the one chosen, and why."""

    standings: tuple[Standing, ...]
    winner: Standing
    rounds: int
    reason: str
    direction: Direction = "maximize"
    notes: tuple[str, ...] = field(default=())

    @property
    def best(self) -> Standing:
        """The highest mean (lowest when minimising); the winner unless a cheaper finalist was close enough."""
        return self.standings[0]

    def standing(self, trial: int) -> Standing:
        for s in self.standings:
            if s.candidate.trial == trial:
                return s
        raise KeyError(f"trial {trial} was not in the race; finalists: {[s.candidate.trial for s in self.standings]}")


def select_finalists(
    candidates: Sequence[Candidate],
    n: int,
    *,
    baseline: Candidate | None = None,
    direction: Direction = "maximize",
) -> list[Candidate]:
    """The top ``n`` candidates by search value (ties: cheaper, then lower trial number), then the baseline.

    Candidates without a search value (failed or pruned trials) and the baseline itself are not among the top
    ``n``; the baseline is appended when given, so it is re-evaluated on the same footing. ``n = 0``: no race.
    """
    if n < 0:
        raise ValueError(f"search.finalists must be 0 or more, but found {n}")
    if n == 0:
        return []
    sign = -1.0 if direction == "maximize" else 1.0
    ranked = sorted(
        (c for c in candidates if c.search_value is not None and not c.is_baseline and math.isfinite(c.search_value)),
        key=lambda c: (sign * (c.search_value or 0.0), c.cost, c.trial),
    )
    top = ranked[:n]
    if baseline is not None and all(c.trial != baseline.trial for c in top):
        top.append(baseline)
    return top


def _standing(candidate: Candidate, scores: list[float]) -> Standing:
    values = np.asarray(scores, dtype=float)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return Standing(candidate=candidate, scores=tuple(scores), mean=float(values.mean()), std_error=se)


def _checked(candidate: Candidate, round_: int, scores: Sequence[float]) -> list[float]:
    values = [float(s) for s in scores]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(
            f"evaluate({candidate.name}, round {round_}) must return one or more finite scores, but returned "
            f"{list(scores)!r}"
        )
    return values


def race(
    candidates: Sequence[Candidate],
    evaluate: Evaluate,
    *,
    rounds: int = 1,
    direction: Direction = "maximize",
    tolerance_se: float = 1.0,
) -> RaceResult:
    """Evaluate every candidate ``rounds`` times, rank them on those evaluations alone, and choose one.

    Each round calls ``evaluate(candidate, round)`` once per candidate (round 0, 1, ...) and keeps every score it
    returns. The best is the highest mean (lowest when minimising). The winner is the cheapest candidate
    (:class:`Cost`) whose mean is within ``tolerance_se`` standard errors of the best's mean (the standard error
    of the best's scores); with a single evaluation each there is no standard error and the best wins.
    """
    if not candidates:
        raise ValueError("no finalists to race: pass the top trials (select_finalists) and the baseline")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, but found {rounds}")
    if tolerance_se < 0:
        raise ValueError(f"tolerance_se must be 0 or more, but found {tolerance_se}")
    trials = [c.trial for c in candidates]
    if len(set(trials)) != len(trials):
        raise ValueError(f"each finalist must be a different trial, but found trial numbers {trials}")

    scores: dict[int, list[float]] = {c.trial: [] for c in candidates}
    for round_ in range(rounds):
        for candidate in candidates:
            scores[candidate.trial].extend(_checked(candidate, round_, evaluate(candidate, round_)))

    sign = -1.0 if direction == "maximize" else 1.0
    order = {c.trial: i for i, c in enumerate(candidates)}
    standings = sorted(
        (_standing(c, scores[c.trial]) for c in candidates),
        key=lambda s: (sign * s.mean, s.candidate.cost, order[s.candidate.trial]),
    )
    best = standings[0]
    margin = 0.0 if math.isnan(best.std_error) else tolerance_se * best.std_error
    close = [s for s in standings if sign * (s.mean - best.mean) <= margin]
    winner = min(close, key=lambda s: (s.candidate.cost, sign * s.mean, order[s.candidate.trial]))
    return RaceResult(
        standings=tuple(standings),
        winner=winner,
        rounds=rounds,
        reason=_reason(standings, winner, tolerance_se, direction),
        direction=direction,
        notes=_notes(standings, direction),
    )


def _reason(standings: list[Standing], winner: Standing, tolerance_se: float, direction: Direction) -> str:
    best = standings[0]
    word = "highest" if direction == "maximize" else "lowest"
    if winner is best:
        others = "; ".join(s.describe() for s in standings[1:])
        return f"{best.describe()} has the {word} mean on the re-evaluations" + (f" (then {others})" if others else "")
    within = "one standard error" if tolerance_se == 1 else f"{tolerance_se:g} standard errors"
    return (
        f"{winner.describe()} is within {within} of the {word} mean, {best.describe()}, and cheaper "
        f"({winner.candidate.cost.describe()}, against {best.candidate.cost.describe()}): chosen"
    )


def _notes(standings: list[Standing], direction: Direction) -> tuple[str, ...]:
    """Where the race disagreed with the search: the search's favourite lost its place on fresh evaluations."""
    entered = [s for s in standings if s.candidate.search_value is not None and not s.candidate.is_baseline]
    if not entered:
        return ()
    sign = -1.0 if direction == "maximize" else 1.0
    favourite = min(entered, key=lambda s: sign * (s.candidate.search_value or 0.0))
    rank = standings.index(favourite) + 1
    if rank == 1:
        return ()
    return (
        f"the search's best, {favourite.candidate.name} ({favourite.candidate.search_value:.3f} in the search), "
        f"ranks {rank} of {len(standings)} on the re-evaluations ({favourite.mean:.3f}): its search value was "
        "partly luck",
    )
