"""The study's report: ``report.json`` for programs, ``report.md`` and ``report.html`` for people."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from promptsearch.export import atomic_write_text
from promptsearch.objective import trial_config
from promptsearch.pareto import dev_value, is_multi_objective, recommendation_rule, study_objective_names
from promptsearch.study import baseline_trial, best_trial
from promptsearch.versions import versions

__all__ = ["build_report", "fmt_score", "fmt_test", "render_markdown", "write_report", "write_reports"]

logger = logging.getLogger(__name__)


def _trial_summary(trial: FrozenTrial | None, test: dict[str, Any] | None) -> dict[str, Any] | None:
    if trial is None:
        return None
    config = trial_config(trial)
    return {
        "trial": trial.number,
        "params": dict(trial.params),
        "config": config.model_dump(mode="json"),
        "dev_score": dev_value(trial),
        "dev_epoch": trial.user_attrs.get("best_epoch"),
        "test": test,
        "prompt_example": trial.user_attrs.get("prompt_example", ""),
        "prompt_parts": trial.user_attrs.get("prompt_parts"),
    }


def _duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def build_report(
    study: optuna.Study, *, space_name: str, space_file: str | None, metric: str, final: dict[str, Any] | None
) -> dict[str, Any]:
    """Everything the report shows, from the study (and the stored final evaluation, if any)."""
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    best = best_trial(study)
    base = baseline_trial(study)
    finished = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    reverse = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    top = sorted(finished, key=lambda t: dev_value(t) or 0.0, reverse=reverse)[:5]
    durations = [d for t in trials if (d := _duration(t)) is not None]
    return {
        "space": {"name": space_name, "file": space_file},
        "study": study.study_name,
        "metric": metric,
        "direction": study.directions[0].name.lower(),
        "objectives": _objectives(study),
        "best": _trial_summary(best, (final or {}).get("best", {}).get("test")),
        "baseline": _trial_summary(base, (final or {}).get("baseline", {}).get("test")),
        "trials": {
            "total": len(trials),
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "fail": states.count(TrialState.FAIL),
            "running": states.count(TrialState.RUNNING),
        },
        "top_trials": [
            {
                "trial": t.number,
                "dev_score": dev_value(t),
                "values": list(t.values),
                "params": dict(t.params),
                "baseline": bool(t.user_attrs.get("baseline")),
                "prompt_tokens_mean": t.user_attrs.get("prompt_tokens_mean"),
                "seconds": _duration(t),
            }
            for t in top
        ],
        "failures": [
            {"trial": t.number, "error": t.user_attrs.get("error") or t.system_attrs.get("fail_reason", "")}
            for t in trials
            if t.state == TrialState.FAIL
        ][:10],
        "seconds": {"trials": round(sum(durations), 2), "final_evaluation": (final or {}).get("seconds")},
        "final_seeds": len((final or {}).get("best", {}).get("seeds", [])),
        "versions": versions(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _objectives(study: optuna.Study) -> dict[str, Any]:
    info: dict[str, Any] = {
        "multi": is_multi_objective(study),
        "names": study_objective_names(study),
        "directions": [d.name.lower() for d in study.directions],
    }
    if info["multi"]:
        info["rule"] = recommendation_rule(study)
    return info


def fmt_score(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def fmt_test(test: dict[str, Any] | None) -> str:
    if not test:
        return "not evaluated"
    return f"{100 * test['mean']:.2f} ± {100 * test['std']:.2f} (n={len(test['scores'])})"


def render_markdown(report: dict[str, Any], images: Sequence[tuple[str, str]] = ()) -> str:
    """The Markdown report; ``images`` are ``(title, relative path)`` of PNG plots to embed."""
    best, base = report["best"], report["baseline"]
    lines = [
        f"# promptsearch report: {report['space']['name']}",
        "",
        f"Space file: `{report['space']['file']}` · study `{report['study']}` · metric **{report['metric']}** "
        f"(×100; test: mean ± std over seeds)",
        "",
        "| | trial | dev | test |",
        "|---|---|---|---|",
    ]
    for name, item in (("best prompt", best), ("plain fine-tuning baseline", base)):
        if item:
            lines.append(f"| {name} | {item['trial']} | {fmt_score(item['dev_score'])} | {fmt_test(item['test'])} |")
        else:
            lines.append(f"| {name} | – | – | – |")
    t = report["trials"]
    lines += [
        "",
        f"Trials: {t['total']} ({t['complete']} complete, {t['pruned']} pruned, {t['fail']} failed"
        + (f", {t['running']} running or abandoned" if t["running"] else "")
        + f"); {report['seconds']['trials']:.0f} s in trials.",
        "",
    ]
    objectives = report.get("objectives") or {}
    if objectives.get("multi"):
        lines += [
            "## Objectives",
            "",
            "Objectives: "
            + ", ".join(f"{n} ({d})" for n, d in zip(objectives["names"], objectives["directions"], strict=True))
            + f". The best prompt below is the recommended config: {objectives['rule']}. "
            "Multi-objective studies are not pruned (Optuna does not support it). "
            "See report.html for the Pareto front.",
            "",
        ]
    if best:
        cfg = best["config"]
        prompt, train = cfg["prompt"], cfg["train"]
        lines += [
            "## Best prompt",
            "",
            f"- instruction: {prompt['instruction']!r}",
            f"- template: `{prompt['template']!r}`" if prompt["template"] else "- template: none (plain input)",
            f"- label words: {json.dumps(prompt['label_words'], ensure_ascii=False)}",
            f"- demonstrations: {prompt['demonstrations']['count']} ({prompt['demonstrations']['selection']})",
            "- training: " + ", ".join(f"{k}={v}" for k, v in train.items()),
            f"- best dev epoch: {best['dev_epoch']}",
            "",
            "Example (first train prompt):",
            "",
            "```text",
            best["prompt_example"],
            "```",
            "",
        ]
    lines += ["## Top trials", "", "| trial | dev | tokens | seconds | params |", "|---|---|---|---|---|"]
    for row in report["top_trials"]:
        params = "baseline" if row["baseline"] else ", ".join(f"{k}={_short(v)}" for k, v in row["params"].items())
        secs = f"{row['seconds']:.1f}" if row["seconds"] is not None else ""
        lines.append(
            f"| {row['trial']} | {fmt_score(row['dev_score'])} | {row['prompt_tokens_mean']} | {secs} | {params} |"
        )
    if images:
        lines += ["", "## Plots", "", "Interactive versions, the Pareto front and every trial: `report.html`.", ""]
        for title, path in images:
            lines += [f"### {title}", "", f"![{title}]({path})", ""]
    if report["failures"]:
        lines += ["", "## Failed trials", ""]
        lines += [f"- trial {f['trial']}: {f['error']}" for f in report["failures"]]
    lines += [
        "",
        f"_Generated {report['created']} with " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + "._",
        "",
    ]
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_report(out_dir: Path, report: dict[str, Any], *, images: Sequence[tuple[str, str]] = ()) -> tuple[Path, Path]:
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    atomic_write_text(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(md_path, render_markdown(report, images))
    return json_path, md_path


def write_reports(out_dir: Path, study: optuna.Study, report: dict[str, Any]) -> dict[str, Path]:
    """Write report.json, report.md (with PNG plots in ``plots/``) and the self-contained report.html.

    A plot or page that cannot be drawn is logged and left out: it never costs the run its report.json/md.
    """
    from promptsearch.html_report import write_html_report
    from promptsearch.plots import write_pngs

    images: list[tuple[str, str]] = []
    try:
        images = write_pngs(out_dir, study, report)
    except Exception as exc:  # matplotlib/optuna raise many types; the text reports matter more
        logger.warning("report.md goes without plots: %s: %s", type(exc).__name__, exc)
    json_path, md_path = write_report(out_dir, report, images=images)
    written = {"json": json_path, "markdown": md_path}
    try:
        written["html"] = write_html_report(out_dir, study, report)
    except Exception as exc:
        logger.warning("could not write report.html: %s: %s", type(exc).__name__, exc)
    return written
