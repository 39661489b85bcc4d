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

from promptsearch.io.export import atomic_write_text
from promptsearch.study.candidates import describe, generated_parts, stored_candidates
from promptsearch.study.objective import trial_config
from promptsearch.study.pareto import dev_value, is_multi_objective, recommendation_rule, study_objective_names
from promptsearch.study.storage import baseline_trial, best_trial
from promptsearch.versions import versions

__all__ = [
    "build_report",
    "fmt_score",
    "fmt_test",
    "per_model",
    "render_markdown",
    "write_report",
    "write_reports",
]

logger = logging.getLogger(__name__)


def _trial_summary(
    trial: FrozenTrial | None, test: dict[str, Any] | None, study: optuna.Study | None = None
) -> dict[str, Any] | None:
    if trial is None:
        return None
    config = trial_config(trial)
    return {
        "generated": generated_parts(study, config) if study is not None else {},
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
        "best": _trial_summary(best, (final or {}).get("best", {}).get("test"), study),
        "baseline": _trial_summary(base, (final or {}).get("baseline", {}).get("test")),
        "models": per_model(study),
        "candidates": stored_candidates(study),
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


def per_model(study: optuna.Study) -> list[dict[str, Any]]:
    """With a model list: each model's best sampled trial (the baseline not counted), in the models' order."""
    best: dict[str, FrozenTrial] = {}
    counts: dict[str, int] = {}
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    for t in study.get_trials(deepcopy=False):
        config = t.user_attrs.get("config") or {}
        model = config.get("model")
        if model is None or t.user_attrs.get("baseline"):
            continue
        counts[model] = counts.get(model, 0) + 1
        if t.state != TrialState.COMPLETE or not t.values:
            continue
        value, held = dev_value(t) or 0.0, best.get(model)
        if held is None or (value > (dev_value(held) or 0.0) if maximize else value < (dev_value(held) or 0.0)):
            best[model] = t
    return [
        {
            "model": model,
            "head": best[model].user_attrs["config"].get("head") if model in best else None,
            "trials": n,
            "best_trial": best[model].number if model in best else None,
            "dev_score": dev_value(best[model]) if model in best else None,
            "params": dict(best[model].params) if model in best else {},
        }
        for model, n in counts.items()
    ]


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
        generated = best.get("generated") or {}
        lines += [
            "## Best prompt",
            "",
            *([f"- model: {cfg['model']} ({cfg['head']} head)"] if cfg.get("model") else []),
            f"- instruction: {prompt['instruction']!r}" + _generated_note(generated.get("instruction")),
            f"- template: `{prompt['template']!r}`" if prompt["template"] else "- template: none (plain input)",
            f"- label words: {json.dumps(prompt['label_words'], ensure_ascii=False)}"
            + _generated_note(generated.get("label_words")),
            f"- demonstrations: {prompt['demonstrations']['count']} ({prompt['demonstrations']['selection']})",
            f"- calibration: {prompt.get('calibration', 'none')}",
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
    lines += _models_markdown(report.get("models") or [])
    lines += _candidates_markdown(report.get("candidates"))
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


def _generated_note(part: dict[str, Any] | None) -> str:
    return f" (generated: `{part['key']}`, {part['source']})" if part else ""


def _models_markdown(models: list[dict[str, Any]]) -> list[str]:
    if not models:
        return []
    lines = [
        "## Best trial per model",
        "",
        "| model | head | trials | best trial | dev | params |",
        "|---|---|---|---|---|---|",
    ]
    for row in models:
        params = ", ".join(f"{k}={_short(v)}" for k, v in row["params"].items() if k != "model")
        trial = row["best_trial"] if row["best_trial"] is not None else "–"
        lines.append(
            f"| {row['model']} | {row['head'] or '–'} | {row['trials']} | {trial} | {fmt_score(row['dev_score'])} "
            f"| {params} |"
        )
    return [*lines, ""]


def _candidates_markdown(candidates: dict[str, Any] | None) -> list[str]:
    lines = [f"{'  ' * level}- {text}" for level, text in describe(candidates)]
    if not lines:
        return []
    intro = "Generated once for this study (stored with it; every worker and resumed run used this list):"
    return ["## Generated candidates", "", intro, "", *lines, ""]


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
    from promptsearch.reporting.html import write_html_report
    from promptsearch.reporting.plots import write_pngs

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
