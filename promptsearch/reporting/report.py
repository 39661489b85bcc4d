"""The study's report: ``report.json`` for programs, ``report.md`` and ``report.html`` for people."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.io.export import atomic_write_text
from promptsearch.reporting.schema import (
    Evaluation,
    Failure,
    ModelRow,
    Objectives,
    Race,
    Report,
    ReportSeconds,
    SpaceInfo,
    TestScores,
    TopTrial,
    TrialCounts,
    TrialSummary,
    VerdictPart,
    chosen_lines,
)
from promptsearch.space.registry import head_traits
from promptsearch.study.candidates import describe, generated_parts, stored_candidates
from promptsearch.study.pareto import recommendation_rule
from promptsearch.study.records import (
    TrialRecord,
    baseline_trial,
    best_trial,
    objectives_info,
    stored_race,
    stored_run,
    trial_config,
    trial_records,
)
from promptsearch.versions import versions

if TYPE_CHECKING:
    import optuna

__all__ = [
    "Report",
    "build_report",
    "fmt_score",
    "fmt_test",
    "incomplete_note",
    "per_model",
    "render_markdown",
    "write_report",
    "write_reports",
]

logger = logging.getLogger(__name__)
_UNSET: Any = object()


def _test(final: dict[str, Any] | None, which: str) -> TestScores | None:
    test = ((final or {}).get(which) or {}).get("test")
    return TestScores.model_validate(test) if test else None


def _trial_summary(
    trial: TrialRecord | None, test: TestScores | None, study: optuna.Study | None = None
) -> TrialSummary | None:
    if trial is None:
        return None
    config = trial_config(trial)
    return TrialSummary(
        generated=generated_parts(study, config) if study is not None else {},
        trial=trial.number,
        params=dict(trial.params),
        config=config,
        dev_score=trial.dev,
        dev_epoch=trial.best_epoch,
        test=test,
        prompt_example=trial.prompt_example or "",
        prompt_parts=trial.prompt_parts,
    )


def build_report(
    study: optuna.Study,
    *,
    space_name: str,
    space_file: str | None,
    metric: str,
    final: dict[str, Any] | None,
    evaluation: dict[str, Any] | None = None,
    records: Sequence[TrialRecord] | None = None,
    best: TrialRecord | None = _UNSET,
    search_seconds: float | None = None,
    started: float | None = None,
) -> Report:
    """Everything the report shows, from the study (and the stored final evaluation, if any).

    ``records`` (:func:`~promptsearch.study.records.trial_records`) and ``best``
    (:func:`~promptsearch.study.records.best_trial`) reuse what the caller read already. A run passes
    ``search_seconds`` and ``started`` (its ``time.perf_counter()`` at the start) for its timings.
    """
    from optuna.trial import TrialState

    records = trial_records(study) if records is None else records
    best = best_trial(study, records) if best is _UNSET else best
    base = baseline_trial(study, records)
    states = [r.state for r in records]
    finished = [r for r in records if r.is_point]  # a config repeated in training is one point: its pooled value
    sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
    top = sorted(finished, key=lambda r: sign * (r.dev or 0.0))[:5]
    durations = [d for r in records if (d := r.duration) is not None]
    return Report(
        space=SpaceInfo(name=space_name, file=space_file),
        study=study.study_name,
        metric=metric,
        direction=study.directions[0].name.lower(),
        objectives=_objectives(study),
        best=_trial_summary(best, _test(final, "best"), study),
        baseline=_trial_summary(base, _test(final, "baseline")),
        models=per_model(study, records),
        candidates=stored_candidates(study),
        trials=TrialCounts(
            total=len(records),
            complete=states.count(TrialState.COMPLETE),
            pruned=states.count(TrialState.PRUNED),
            fail=states.count(TrialState.FAIL),
            running=states.count(TrialState.RUNNING),
        ),
        top_trials=[
            TopTrial(
                trial=r.number,
                dev_score=r.dev,
                values=list(r.values or ()),
                params=dict(r.params),
                baseline=r.is_baseline,
                prompt_tokens_mean=r.prompt_tokens_mean,
                seconds=r.duration,
                runs=r.runs,
            )
            for r in top
        ],
        failures=[Failure(trial=r.number, error=r.failure) for r in records if r.state == TrialState.FAIL][:10],
        seconds=ReportSeconds(
            trials=round(sum(durations), 2),
            final_evaluation=(final or {}).get("seconds"),
            search=round(search_seconds, 2) if search_seconds is not None else None,
            total=round(time.perf_counter() - started, 2) if started is not None else None,
        ),
        final_seeds=len(((final or {}).get("best") or {}).get("seeds", [])),
        versions=versions(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        evaluation=Evaluation(**evaluation, trained_on=((final or {}).get("best") or {}).get("trained_on"))
        if evaluation is not None
        else None,
        race=Race.model_validate(race)
        if (race := stored_race(study)) is not None and best is not None and race.get("winner") == best.number
        else None,
        verdict=VerdictPart.model_validate((final or {})["verdict"]) if (final or {}).get("verdict") else None,
        gap_warning=(final or {}).get("gap_warning"),
        incomplete=incomplete_note(study, records),
    )


def incomplete_note(study: optuna.Study, records: Sequence[TrialRecord]) -> str | None:
    """Why the study is short of the budget of its last run, or None when it is not (or no run stored one)."""
    run = stored_run(study)
    if run is None or run.state == "finished":  # finished: the budget or the time limit reached
        return None
    done = sum(1 for r in records if r.counts_towards_budget)
    if done >= run.target:
        return None
    why = "; ".join(run.problems) if run.problems else "its run is still going, or was stopped before the budget"
    return (
        f"{done} of {run.target} trials counted ({run.target - done} missing): {why}. "
        "Run the same command again to continue the study."
    )


def per_model(study: optuna.Study, records: Sequence[TrialRecord] | None = None) -> list[ModelRow]:
    """With a model list: each model's best sampled trial (the baseline not counted), in the models' order."""
    records = trial_records(study) if records is None else records
    best: dict[str, TrialRecord] = {}
    counts: dict[str, int] = {}
    maximize = study.directions[0].name == "MAXIMIZE"
    for r in records:
        model = r.model
        if model is None or r.is_baseline:
            continue
        counts[model] = counts.get(model, 0) + 1
        if not r.is_point:
            continue
        value, held = r.dev or 0.0, best.get(model)
        if held is None or (value > (held.dev or 0.0) if maximize else value < (held.dev or 0.0)):
            best[model] = r
    rows = []
    for model, n in counts.items():
        chosen = best.get(model)
        rows.append(
            ModelRow(
                model=model,
                head=chosen.config.head if chosen is not None and chosen.config is not None else None,
                trials=n,
                best_trial=chosen.number if chosen is not None else None,
                dev_score=chosen.dev if chosen is not None else None,
                params=dict(chosen.params) if chosen is not None else {},
            )
        )
    return rows


def _objectives(study: optuna.Study) -> Objectives:
    info = objectives_info(study)
    multi = len(study.directions) > 1
    return Objectives(
        multi=multi,
        names=info.names,
        directions=[d.name.lower() for d in study.directions],
        rule=recommendation_rule(info.names, study.directions, info.within) if multi else None,
    )


def fmt_score(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def fmt_test(test: TestScores | None) -> str:
    if not test:
        return "not evaluated"
    return f"{100 * test.mean:.2f} ± {100 * test.std:.2f} (n={len(test.scores)})"


def render_markdown(report: Report, images: Sequence[tuple[str, str]] = ()) -> str:
    """The Markdown report; ``images`` are ``(title, relative path)`` of PNG plots to embed."""
    best, base = report.best, report.baseline
    lines = [
        f"# promptsearch report: {report.space.name}",
        "",
        *([f"**Incomplete study:** {report.incomplete}", ""] if report.incomplete else []),
        f"Space file: `{report.space.file}` · study `{report.study}` · metric **{report.metric}** "
        f"(×100; test: mean ± std over seeds)",
        "",
        "| | trial | dev | test |",
        "|---|---|---|---|",
    ]
    for name, item in (("best prompt", best), ("plain fine-tuning baseline", base)):
        if item:
            lines.append(f"| {name} | {item.trial} | {fmt_score(item.dev_score)} | {fmt_test(item.test)} |")
        else:
            lines.append(f"| {name} | – | – | – |")
    t = report.trials
    lines += [
        "",
        f"Trials: {t.total} ({t.complete} complete, {t.pruned} pruned, {t.fail} failed"
        + (f", {t.running} running or abandoned" if t.running else "")
        + f"); {report.seconds.trials:.0f} s in trials.",
        "",
    ]
    chosen = chosen_lines(report)
    if chosen:
        lines += ["## How the best was chosen", ""] + [
            f"- {line.strip()}" if not line.startswith("  ") else f"  - {line.strip()}" for line in chosen
        ]
        lines.append("")
    objectives = report.objectives
    if objectives.multi:
        lines += [
            "## Objectives",
            "",
            "Objectives: "
            + ", ".join(f"{n} ({d})" for n, d in zip(objectives.names, objectives.directions, strict=True))
            + f". The best prompt below is the recommended config: {objectives.rule}. "
            "Multi-objective studies are not pruned (Optuna does not support it). "
            "See report.html for the Pareto front.",
            "",
        ]
    if best:
        cfg = best.config
        prompt = cfg.prompt
        train = cfg.model_dump(mode="json")["train"]
        generated = best.generated
        demos = prompt.demonstrations
        reads_template = head_traits(cfg.head).reads_template  # else it reads the instruction and text alone
        lines += [
            "## Best prompt" if reads_template else "## Best config",
            "",
            *([f"- model: {cfg.model} ({cfg.head} head)"] if cfg.model else []),
            f"- instruction: {prompt.instruction!r}" + _generated_note(generated.get("instruction")),
        ]
        if reads_template:
            lines += [
                f"- template: `{prompt.template!r}`" if prompt.template else "- template: none (plain input)",
                f"- label words: {json.dumps(dict(prompt.label_words), ensure_ascii=False)}"
                + _generated_note(generated.get("label_words")),
                f"- demonstrations: {demos.count} ({demos.selection})",
                f"- calibration: {prompt.calibration}",
            ]
        lines += [
            "- training: " + ", ".join(f"{k}={v}" for k, v in train.items()),
            f"- best dev epoch: {best.dev_epoch}",
            "",
            "Example (first train prompt):",
            "",
            "```text",
            best.prompt_example,
            "```",
            "",
        ]
    lines += _models_markdown(report.models)
    lines += _candidates_markdown(report.candidates)
    lines += ["## Top trials", "", "| trial | dev | tokens | seconds | params |", "|---|---|---|---|---|"]
    for row in report.top_trials:
        params = "baseline" if row.baseline else ", ".join(f"{k}={_short(v)}" for k, v in row.params.items())
        secs = f"{row.seconds:.1f}" if row.seconds is not None else ""
        dev = fmt_score(row.dev_score) + (f" (mean of {row.runs} runs)" if row.runs > 1 else "")
        lines.append(f"| {row.trial} | {dev} | {row.prompt_tokens_mean} | {secs} | {params} |")
    if images:
        lines += ["", "## Plots", "", "Interactive versions, the Pareto front and every trial: `report.html`.", ""]
        for title, path in images:
            lines += [f"### {title}", "", f"![{title}]({path})", ""]
    if report.failures:
        lines += ["", "## Failed trials", ""]
        lines += [f"- trial {f.trial}: {f.error}" for f in report.failures]
    lines += [
        "",
        f"_Generated {report.created} with " + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + "._",
        "",
    ]
    return "\n".join(lines)


def _generated_note(part: dict[str, Any] | None) -> str:
    return f" (generated: `{part['key']}`, {part['source']})" if part else ""


def _models_markdown(models: Sequence[ModelRow]) -> list[str]:
    if not models:
        return []
    lines = [
        "## Best trial per model",
        "",
        "| model | head | trials | best trial | dev | params |",
        "|---|---|---|---|---|---|",
    ]
    for row in models:
        params = ", ".join(f"{k}={_short(v)}" for k, v in row.params.items() if k != "model")
        trial = row.best_trial if row.best_trial is not None else "–"
        lines.append(
            f"| {row.model} | {row.head or '–'} | {row.trials} | {trial} | {fmt_score(row.dev_score)} | {params} |"
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


def write_report(out_dir: Path, report: Report, *, images: Sequence[tuple[str, str]] = ()) -> tuple[Path, Path]:
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    atomic_write_text(json_path, json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(md_path, render_markdown(report, images))
    return json_path, md_path


def write_reports(
    out_dir: Path, study: optuna.Study, report: Report, *, records: Sequence[TrialRecord] | None = None
) -> dict[str, Path]:
    """Write report.json, report.md (with PNG plots in ``plots/``) and the self-contained report.html.

    A plot or page that cannot be drawn is logged and left out: it never costs the run its report.json/md.
    """
    from promptsearch.reporting.html import write_html_report
    from promptsearch.reporting.plots import write_pngs

    records = trial_records(study) if records is None else records
    images: list[tuple[str, str]] = []
    try:
        images = write_pngs(out_dir, study, report, records)
    except Exception as exc:  # matplotlib/optuna raise many types; the text reports matter more
        logger.warning("report.md goes without plots: %s: %s", type(exc).__name__, exc)
    json_path, md_path = write_report(out_dir, report, images=images)
    written = {"json": json_path, "markdown": md_path}
    try:
        written["html"] = write_html_report(out_dir, study, report, records)
    except Exception as exc:
        logger.warning("could not write report.html: %s: %s", type(exc).__name__, exc)
    return written
