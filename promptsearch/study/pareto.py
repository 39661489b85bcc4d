"""Several objectives: the dev score plus costs (prompt length, latency), the Pareto front and one recommendation.

The Pareto front: the sampled trials no other sampled trial beats on every objective (the plain
baseline is shown beside them as a reference point, not a candidate: its prompt is always the
shortest). promptsearch recommends one config by a stated rule: **among the sampled trials, the
cheapest one on their front whose dev score is within** ``search.recommend_within`` **of the best
dev score on it** (cheapest = best on the second objective, then the third, then the higher dev
score, then the earlier trial). That trial is "the best trial" of a multi-objective study
everywhere else: the final test evaluation, the report and ``best_prompt.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    import optuna
    from optuna.study import StudyDirection

    from promptsearch.space.spec import SearchSpec

__all__ = [
    "Scored",
    "dev_value",
    "is_multi_objective",
    "objective_directions",
    "objective_names",
    "objective_values",
    "pareto_front",
    "recommend",
    "recommendation_rule",
    "signs_of",
]


class Scored(Protocol):
    """What the front needs of a trial (a :class:`promptsearch.study.records.TrialRecord` is one)."""

    @property
    def number(self) -> int: ...

    @property
    def values(self) -> Sequence[float] | None: ...

    @property
    def is_baseline(self) -> bool: ...


T = TypeVar("T", bound=Scored)


def objective_names(search: SearchSpec) -> list[str]:
    """``["dev"]``, or the metrics of ``search.objectives`` in order."""
    return [o.metric for o in search.objectives] if search.objectives else ["dev"]


def objective_directions(search: SearchSpec) -> list[Literal["maximize", "minimize"]]:
    """One direction per objective: dev follows ``search.direction``, costs default to minimize."""
    if not search.objectives:
        return [search.direction]
    return [o.direction or (search.direction if o.metric == "dev" else "minimize") for o in search.objectives]


def dev_value(trial: optuna.trial.FrozenTrial | Scored) -> float | None:
    """The trial's dev score (its first objective), or None when it has no value."""
    return trial.values[0] if trial.values else None


def is_multi_objective(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def objective_values(names: Sequence[str], *, dev: float, prompt_tokens: float, latency_ms: float) -> list[float]:
    """The values a trial returns, in the order of ``search.objectives``."""
    known = {"dev": dev, "prompt_tokens": prompt_tokens, "latency_ms": latency_ms}
    return [known[name] for name in names]


def signs_of(directions: Sequence[StudyDirection]) -> list[float]:
    """Per objective, the factor that turns its values into "smaller is better" units."""
    return [-1.0 if d.name == "MAXIMIZE" else 1.0 for d in directions]


def pareto_front(complete: Sequence[T], directions: Sequence[StudyDirection]) -> list[T]:
    """The sampled trials of ``complete`` that no other sampled trial beats on every objective, plus the
    baseline as a reference point, by trial number."""
    baseline = [t for t in complete if t.is_baseline and t.values is not None]
    return sorted(_sampled_front(complete, signs_of(directions)) + baseline, key=lambda t: t.number)


def _sampled_front(complete: Sequence[T], signs: list[float]) -> list[T]:
    """The Pareto front of the sampled trials alone (the plain baseline is a reference point, not a candidate)."""
    done = [t for t in complete if not t.is_baseline and t.values is not None]

    def dominates(a: T, b: T) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a.values or (), b.values or (), strict=True)]
        return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)

    return [t for t in done if not any(dominates(o, t) for o in done if o is not t)]


def recommend(complete: Sequence[T], directions: Sequence[StudyDirection], *, within: float) -> T | None:
    """The recommended trial among the completed trials of a multi-objective study (see the module
    docstring for the rule)."""
    signs = signs_of(directions)
    front = _sampled_front(complete, signs) or pareto_front(complete, directions)  # only the baseline finished
    if not front:
        return None

    def vals(t: T) -> Sequence[float]:
        return t.values or ()

    best_dev = min(signs[0] * vals(t)[0] for t in front)  # in "smaller is better" units
    close = [t for t in front if signs[0] * vals(t)[0] <= best_dev + within]
    return min(
        close,
        key=lambda t: (
            *[s * v for s, v in zip(signs[1:], vals(t)[1:], strict=True)],
            signs[0] * vals(t)[0],
            t.number,
        ),
    )


def recommendation_rule(names: Sequence[str], directions: Sequence[StudyDirection], within: float) -> str:
    """The rule of :func:`recommend`, in words, with these objectives and tolerance."""
    costs = " then ".join(
        f"{'lowest' if d.name == 'MINIMIZE' else 'highest'} {n}" for n, d in zip(names[1:], directions[1:], strict=True)
    )
    return (
        f"the cheapest Pareto-optimal sampled trial ({costs}) whose dev score is within {100 * within:.2f} "
        "points of the best dev score on that front (search.recommend_within); the plain baseline, whose prompt "
        "is always the shortest, is shown as a reference point but not recommended"
    )
