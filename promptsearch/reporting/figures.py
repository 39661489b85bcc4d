"""The interactive plots of the HTML report, as plotly figures (most from ``optuna.visualization``).

Each builder returns a :class:`Figure` entry: a plotly figure, or a note saying why there is none
(too few trials, no intermediate values in a multi-objective study, ...). A plot that cannot be
drawn never stops the report.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.study.pareto import dev_value, is_multi_objective, pareto_front
from promptsearch.study.records import TrialRecord, trial_records

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from promptsearch.reporting.schema import Report

__all__ = ["Figure", "report_figures", "sampled_trials_study"]

logger = logging.getLogger(__name__)
MIN_TRIALS_FOR_IMPORTANCE = 3


@dataclass
class Figure:
    key: str
    title: str
    figure: Any | None = None  # a plotly.graph_objects.Figure
    note: str = ""


def sampled_trials_study(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of ``study`` without the baseline (whose empty params hide every parameter)."""
    import optuna
    from optuna.trial import TrialState

    copy = optuna.create_study(directions=study.directions)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    copy.add_trials(
        [
            t
            for t in study.get_trials(deepcopy=False, states=finished)
            if t.params and not TrialRecord.from_trial(t).is_baseline
        ]
    )
    return copy


def _dev_target(study: optuna.Study) -> Callable[[FrozenTrial], float] | None:
    """Multi-objective plots need a target; single-objective ones use the study's value."""
    if not is_multi_objective(study):
        return None

    def target(trial: FrozenTrial) -> float:
        value = dev_value(trial)
        return float("nan") if value is None else value

    return target


def _scores(report: Report) -> Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    best, base = report.best, report.baseline
    rows = [("best prompt", best), ("baseline", base)]
    if best and base and best.trial == base.trial:
        rows = [("baseline (also the best)", base)]
    names = [name for name, item in rows if item]
    dev = [100 * (item.dev_score or 0.0) for _, item in rows if item]
    fig.add_trace(go.Bar(name="dev (search)", x=names, y=dev))
    tests = [item.test if item else None for _, item in rows]
    if any(tests):
        fig.add_trace(
            go.Bar(
                name="test (mean ± std over seeds)",
                x=names,
                y=[100 * t.mean if t else None for t in tests[: len(names)]],
                error_y={"type": "data", "array": [100 * t.std if t else 0 for t in tests[: len(names)]]},
            )
        )
        for name, t in zip(names, tests, strict=False):
            if t:
                fig.add_trace(
                    go.Scatter(
                        x=[name] * len(t.scores),
                        y=[100 * s for s in t.scores],
                        mode="markers",
                        marker={"color": "black", "size": 7},
                        name=f"test per seed ({name})",
                        showlegend=False,
                    )
                )
    fig.update_layout(barmode="group", yaxis_title=f"{report.metric} × 100", height=380)
    return Figure("scores", "Dev and test scores against the baseline", fig)


def _try(key: str, title: str, build: Callable[[], Any], note_on_error: str) -> Figure:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Figure(key, title, build())
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
        logger.info("no %s plot: %s", key, exc)
        return Figure(key, title, note=f"{note_on_error} ({exc})")


def report_figures(study: optuna.Study, report: Report, records: Sequence[TrialRecord] | None = None) -> list[Figure]:
    """Every plot of the HTML report, in the order shown."""
    import optuna.visualization as vis
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState

    target = _dev_target(study)
    dev_name = f"dev {report.metric}"
    records = trial_records(study) if records is None else records
    sampled = sampled_trials_study(study)
    complete = [t for t in sampled.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    figures = [_scores(report)]
    if is_multi_objective(study):
        figures.append(_pareto(study, report, records))
    figures.append(
        _try(
            "history",
            "Optimization history",
            lambda: vis.plot_optimization_history(study, target=target, target_name=dev_name),
            "no finished trial yet",
        )
    )
    if is_multi_objective(study):
        figures.append(
            Figure(
                "intermediate",
                "Intermediate values (pruning curves)",
                note="Multi-objective studies report no intermediate values: Optuna cannot prune them "
                "(Trial.report and Trial.should_prune are not supported), so every trial runs all its epochs.",
            )
        )
    else:
        figures.append(
            _try(
                "intermediate",
                "Intermediate values (pruning curves)",
                lambda: vis.plot_intermediate_values(study),
                "no trial reported intermediate values",
            )
        )
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        figures.append(
            Figure(
                "importance",
                "Parameter importances (fANOVA)",
                note=f"fANOVA needs at least {MIN_TRIALS_FOR_IMPORTANCE} completed sampled trials; "
                f"this study has {len(complete)}.",
            )
        )
    else:
        figures.append(
            _try(
                "importance",
                "Parameter importances (fANOVA)",
                lambda: vis.plot_param_importances(
                    sampled, evaluator=FanovaImportanceEvaluator(seed=0), target=target, target_name=dev_name
                ),
                "importances cannot be computed for these trials",
            )
        )
    figures.append(
        _try(
            "parallel",
            "Parallel coordinates of the prompt and training parameters",
            lambda: vis.plot_parallel_coordinate(sampled, target=target, target_name=dev_name),
            "no completed sampled trial with parameters",
        )
    )
    figures.append(
        _try(
            "slice",
            "Slice view: dev score against each parameter",
            lambda: vis.plot_slice(sampled, target=target, target_name=dev_name),
            "no completed sampled trial with parameters",
        )
    )
    for fig in figures:
        if fig.figure is not None:
            fig.figure.update_layout(title=None, margin={"t": 30, "l": 60, "r": 20, "b": 50})
            if fig.key == "slice":  # optuna sizes it for a notebook; let it fit the page instead
                fig.figure.update_layout(width=None, height=380, autosize=True)
    return figures


def _pareto(study: optuna.Study, report: Report, records: Sequence[TrialRecord]) -> Figure:
    import plotly.graph_objects as go

    names = report.objectives.names or ["dev"]
    complete = [r for r in records if r.is_point and r.values and len(r.values) >= 2]
    front = {r.number for r in pareto_front(complete, study.directions)}
    chosen = next((r for r in complete if report.best is not None and r.number == report.best.trial), None)
    fig = go.Figure()
    for on_front, label, color in ((False, "other trials", "#9aa5b1"), (True, "Pareto front", "#1f77b4")):
        pts = [t for t in complete if (t.number in front) == on_front]
        fig.add_trace(
            go.Scatter(
                x=[t.values[1] for t in pts if t.values],
                y=[100 * t.values[0] for t in pts if t.values],
                mode="markers",
                name=label,
                marker={"color": color, "size": 10},
                text=[f"trial {t.number}" for t in pts],
                hovertemplate="%{text}<br>%{x}<br>dev %{y:.2f}<extra></extra>",
            )
        )
    if chosen is not None and chosen.values:
        fig.add_trace(
            go.Scatter(
                x=[chosen.values[1]],
                y=[100 * chosen.values[0]],
                mode="markers",
                name=f"recommended (trial {chosen.number})",
                marker={"color": "#d62728", "size": 16, "symbol": "star"},
            )
        )
    fig.update_layout(xaxis_title=names[1], yaxis_title=f"dev {report.metric} × 100", height=400)
    return Figure("pareto", "Pareto front", fig)
