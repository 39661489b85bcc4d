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
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from promptsearch.space.spec import SearchSpec

__all__ = [
    "OBJECTIVES_ATTR",
    "dev_value",
    "is_multi_objective",
    "objective_directions",
    "objective_names",
    "objective_values",
    "pareto_front",
    "recommend",
    "recommendation_rule",
    "study_objective_names",
]

OBJECTIVES_ATTR = "objectives"


def objective_names(search: SearchSpec) -> list[str]:
    """``["dev"]``, or the metrics of ``search.objectives`` in order."""
    return [o.metric for o in search.objectives] if search.objectives else ["dev"]


def objective_directions(search: SearchSpec) -> list[Literal["maximize", "minimize"]]:
    """One direction per objective: dev follows ``search.direction``, costs default to minimize."""
    if not search.objectives:
        return [search.direction]
    return [o.direction or (search.direction if o.metric == "dev" else "minimize") for o in search.objectives]


def dev_value(trial: FrozenTrial) -> float | None:
    """The trial's dev score (its first objective), or None when it has no value."""
    return trial.values[0] if trial.values else None


def is_multi_objective(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def objective_values(names: Sequence[str], *, dev: float, prompt_tokens: float, latency_ms: float) -> list[float]:
    """The values a trial returns, in the order of ``search.objectives``."""
    known = {"dev": dev, "prompt_tokens": prompt_tokens, "latency_ms": latency_ms}
    return [known[name] for name in names]


def _objectives(study: optuna.Study) -> dict[str, Any]:
    stored = study.user_attrs.get(OBJECTIVES_ATTR) or {}
    names = stored.get("names") or ["dev"] + [f"objective {i}" for i in range(1, len(study.directions))]
    return {"names": list(names), "within": float(stored.get("recommend_within", 0.0))}


def study_objective_names(study: optuna.Study) -> list[str]:
    """The study's objective names (``dev`` first), as stored when it was created."""
    names: list[str] = _objectives(study)["names"]
    return names


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The sampled trials that no other sampled trial beats on every objective, plus the baseline as a reference
    point, by trial number."""
    import optuna

    signs = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    baseline = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.user_attrs.get("baseline") and t.values is not None
    ]
    return sorted(_sampled_front(study, signs) + baseline, key=lambda t: t.number)


def _sampled_front(study: optuna.Study, signs: list[float]) -> list[FrozenTrial]:
    """The Pareto front of the sampled trials alone (the plain baseline is a reference point, not a candidate)."""
    import optuna

    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not t.user_attrs.get("baseline") and t.values is not None
    ]

    def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a.values, b.values, strict=True)]
        return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)

    return [t for t in done if not any(dominates(o, t) for o in done if o is not t)]


def recommend(study: optuna.Study, *, within: float | None = None) -> FrozenTrial | None:
    """The recommended trial of a multi-objective study (see the module docstring for the rule)."""
    import optuna

    signs = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    front = _sampled_front(study, signs) or pareto_front(study)  # only the baseline has finished: all there is
    if not front:
        return None
    within = _objectives(study)["within"] if within is None else within
    best_dev = min(signs[0] * t.values[0] for t in front)  # in "smaller is better" units
    close = [t for t in front if signs[0] * t.values[0] <= best_dev + within]
    return min(
        close,
        key=lambda t: (
            *[s * v for s, v in zip(signs[1:], t.values[1:], strict=True)],
            signs[0] * t.values[0],
            t.number,
        ),
    )


def recommendation_rule(study: optuna.Study) -> str:
    """The rule of :func:`recommend`, in words, with this study's objectives and tolerance."""
    info = _objectives(study)
    costs = " then ".join(
        f"{'lowest' if d.name == 'MINIMIZE' else 'highest'} {n}"
        for n, d in zip(info["names"][1:], study.directions[1:], strict=True)
    )
    return (
        f"the cheapest Pareto-optimal sampled trial ({costs}) whose dev score is within {100 * info['within']:.2f} "
        "points of the best dev score on that front (search.recommend_within); the plain baseline, whose prompt "
        "is always the shortest, is shown as a reference point but not recommended"
    )
