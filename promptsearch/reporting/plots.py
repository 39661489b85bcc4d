"""PNG versions of the key plots, for ``report.md`` (matplotlib, no display needed).

Written to ``<run folder>/plots/``: ``scores.png`` (dev and test against the baseline, with the
spread over seeds), ``history.png`` (dev score per trial and the best so far), ``intermediate.png``
(dev score per epoch of every trial: the pruning curves), ``importance.png`` (fANOVA) and, for a
multi-objective study, ``pareto.png``. A plot that cannot be drawn is left out.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.study.pareto import dev_value, is_multi_objective, pareto_front

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure as MplFigure

    from promptsearch.reporting.schema import Report
    from promptsearch.study.records import TrialRecord

__all__ = ["write_pngs"]

logger = logging.getLogger(__name__)


def _figure() -> tuple[MplFigure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _scores(report: Report) -> MplFigure | None:
    best, base = report.best, report.baseline
    rows = [(n, item) for n, item in (("best prompt", best), ("baseline", base)) if item]
    if best and base and best.trial == base.trial:
        rows = [("baseline (also the best)", base)]
    if not rows:
        return None
    fig, ax = _figure()
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [100 * (item.dev_score or 0) for _, item in rows if item], 0.4, label="dev")
    tests = [item.test if item else None for _, item in rows]
    if any(tests):
        means = [100 * t.mean if t else 0 for t in tests]
        stds = [100 * t.std if t else 0 for t in tests]
        ax.bar([x + 0.2 for x in xs], means, 0.4, yerr=stds, capsize=4, label="test (mean ± std)")
        for x, t in zip(xs, tests, strict=True):
            if t:
                ax.plot([x + 0.2] * len(t.scores), [100 * s for s in t.scores], "k.", ms=6)
    ax.set_xticks(list(xs), [n for n, _ in rows])
    ax.set_ylabel(f"{report.metric} × 100")
    ax.legend(loc="lower right")
    return fig


def _history(study: optuna.Study, maximize: bool) -> MplFigure | None:
    points = [(t.number, v) for t in study.trials if (v := dev_value(t)) is not None]
    if not points:
        return None
    fig, ax = _figure()
    ax.plot([n for n, _ in points], [100 * v for _, v in points], "o", label="trial")
    best, running = [], None
    for _, v in points:
        running = v if running is None else (max(running, v) if maximize else min(running, v))
        best.append(100 * running)
    ax.step([n for n, _ in points], best, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("dev × 100")
    ax.legend(loc="lower right")
    return fig


def _intermediate(study: optuna.Study) -> MplFigure | None:
    curves = [(t.number, sorted(t.intermediate_values.items())) for t in study.trials if t.intermediate_values]
    if not curves:
        return None
    fig, ax = _figure()
    for number, values in curves:
        ax.plot([e for e, _ in values], [100 * v for _, v in values], marker=".", label=f"trial {number}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev × 100")
    if len(curves) <= 12:
        ax.legend(fontsize=7, ncols=2)
    return fig


def _importance(study: optuna.Study) -> MplFigure | None:
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    from promptsearch.reporting.figures import MIN_TRIALS_FOR_IMPORTANCE, sampled_trials_study

    sampled = sampled_trials_study(study)
    if len(sampled.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    target = (lambda t: t.values[0]) if is_multi_objective(study) else None
    importances = get_param_importances(sampled, evaluator=FanovaImportanceEvaluator(seed=0), target=target)
    if not importances:
        return None
    fig, ax = _figure()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (fANOVA)")
    return fig


def _pareto(
    study: optuna.Study, records: Sequence[TrialRecord], names: list[str], recommended: int | None
) -> MplFigure | None:
    trials = [t for t in study.trials if t.values and len(t.values) >= 2]
    if not trials:
        return None
    front = {r.number for r in pareto_front([r for r in records if r.is_point], study.directions)}
    fig, ax = _figure()
    others = [t for t in trials if t.number not in front]
    ax.plot([t.values[1] for t in others], [100 * t.values[0] for t in others], "o", color="#9aa5b1", label="trial")
    on = sorted((t for t in trials if t.number in front), key=lambda t: t.values[1])
    ax.plot([t.values[1] for t in on], [100 * t.values[0] for t in on], "o-", color="C0", label="Pareto front")
    chosen = next((t for t in trials if t.number == recommended), None)
    if chosen is not None:
        ax.plot([chosen.values[1]], [100 * chosen.values[0]], "*", ms=16, color="C3", label="recommended")
    ax.set_xlabel(names[1] if len(names) > 1 else "objective 2")
    ax.set_ylabel("dev × 100")
    ax.legend(loc="lower right")
    return fig


def write_pngs(
    out_dir: Path, study: optuna.Study, report: Report, records: Sequence[TrialRecord] | None = None
) -> list[tuple[str, str]]:
    """Draw the plots into ``out_dir/plots``; return ``(title, path relative to out_dir)`` for each one drawn."""
    from promptsearch.study.records import trial_records

    folder = out_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    records = trial_records(study) if records is None else records
    maximize = report.direction == "maximize"
    names = report.objectives.names or ["dev"]
    recommended = report.best.trial if report.best is not None else None
    builders = [
        ("scores", "Dev and test against the baseline", lambda: _scores(report)),
        ("history", "Optimization history", lambda: _history(study, maximize)),
        ("intermediate", "Dev score per epoch (pruning curves)", lambda: _intermediate(study)),
        ("importance", "Parameter importances (fANOVA)", lambda: _importance(study)),
    ]
    if is_multi_objective(study):
        builders.insert(1, ("pareto", "Pareto front", lambda: _pareto(study, records, names, recommended)))
    written = []
    for key, title, build in builders:
        path = folder / f"{key}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = build()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            logger.info("no %s plot: %s", key, exc)
            fig = None
        if fig is None:
            path.unlink(missing_ok=True)  # a stale plot from an earlier report must not stay linked
            continue
        fig.savefig(path)
        written.append((title, f"plots/{key}.png"))
    return written
