"""What the end of a run tells the user: the finalists at a glance, the verdict, and what to do next.

:func:`run_summary` reads a :class:`~promptsearch.reporting.schema.Report` (nothing else: no study, no model) and
returns a :class:`RunSummary`; ``promptsearch run`` renders it as a rich table and a few lines.

When are the finalists "too close to separate"? The race scores every finalist on the same fresh seeds or folds
and reports each one's mean and standard error. The chosen config is *separated* from the runner-up (the best
other finalist) when its lead is larger than the standard error of the difference of the two means,
``sqrt(se_chosen**2 + se_runner_up**2)``. A lead of zero or less (the race chose a cheaper config within one
standard error of the best) is never separated. Then the labelled rows were too few to tell the finalists
apart, and the summary says to add some.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from promptsearch.reporting.schema import Finalist, Report, TrialSummary
from promptsearch.space.config import TrialConfig
from promptsearch.space.registry import head_traits

__all__ = ["NextStep", "RunSummary", "Separation", "SummaryRow", "describe_chosen", "describe_config", "run_summary"]

INPUT_PLACEHOLDER = "NEW_ROWS.jsonl"  # the predict command's --input: the user's own file of new texts


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SummaryRow(_Part):
    """One finalist (or, without a race, the chosen config or the baseline)."""

    trial: int
    name: str
    estimate: float | None  # the race mean on fresh seeds; without a race, the trial's search value on dev
    std_error: float | None  # of the race mean; None without a race or with a single evaluation
    n: int | None  # evaluations in the race
    prompt_tokens: float | None  # mean prompt tokens per row
    trains: bool | None
    chosen: bool
    baseline: bool


class Separation(_Part):
    """The chosen finalist's lead over the runner-up against the standard error of their difference."""

    chosen: str
    runner_up: str
    lead: float  # in the direction of the search: positive is better
    std_error: float
    separated: bool

    def describe(self) -> str:
        than = "more" if self.separated else "not more"
        return (
            f"{self.chosen} leads {self.runner_up} by {100 * self.lead:+.1f} points, {than} than the standard error "
            f"of their difference ({100 * self.std_error:.1f})"
        )


class NextStep(_Part):
    """One follow-up: what to do, and the exact command when there is one."""

    kind: Literal["train", "predict", "add_rows", "continue", "inspect"]
    text: str
    command: str | None = None


class RunSummary(_Part):
    """The end of a run in brief: the finalists table, the verdict and the next steps."""

    metric: str
    raced: bool  # rows are race standings (mean ± standard error on fresh seeds), else search values on dev
    rows: list[SummaryRow]
    verdict: str | None
    separation: Separation | None
    next_steps: list[NextStep]
    incomplete: str | None = None
    chosen: str | None = None  # the chosen config in one line (describe_chosen); None when no trial completed


def describe_config(config: TrialConfig) -> str:
    """What a config is, in the terms of its head: a head that reads no template (``embedding``, with methods
    ``embedding`` and ``contrastive``) by its model, head, method and instruction; any other by its prompt.

    >>> describe_config(TrialConfig.model_validate({"prompt": {"instruction": "Sort."},
    ...     "train": {"method": "contrastive"}, "head": "embedding", "model": "minilm-setfit"}))
    "model minilm-setfit (embedding head), method contrastive, instruction 'Sort.'"
    """
    prompt = config.prompt
    model = f"model {config.model} ({config.head} head)" if config.model else f"{config.head} head"
    if not head_traits(config.head).reads_template:  # the instruction, prefixed to the text, is all it reads
        return f"{model}, method {config.train.method}, instruction {prompt.instruction!r}"
    template = repr(prompt.template) if prompt.template else "none (plain input)"
    described = (
        f"template {template}, instruction {prompt.instruction!r}, label words {dict(prompt.label_words)}, "
        f"{prompt.demonstrations.count} demonstration(s)"
    )
    return f"{model}, {described}" if config.model else described


def describe_chosen(best: TrialSummary) -> str:
    """The chosen config's line at the end of a run: ``best prompt (trial 4): template ...``, or for a head that
    reads no template ``best config (trial 4): model minilm-setfit (embedding head), method contrastive, ...``."""
    if best.config.baseline:
        return "best: the plain fine-tuning baseline itself (no sampled prompt beat it on dev)"
    what = "best prompt" if head_traits(best.config.head).reads_template else "best config"
    return f"{what} (trial {best.trial}): {describe_config(best.config)}"


def _quote(path: Path) -> str:
    return shlex.quote(str(path))


def _race_rows(report: Report) -> list[SummaryRow]:
    assert report.race is not None
    return [_race_row(s, chosen=s.trial == report.race.winner) for s in report.race.standings]


def _race_row(s: Finalist, *, chosen: bool) -> SummaryRow:
    return SummaryRow(
        trial=s.trial,
        name=s.name,
        estimate=s.mean,
        std_error=s.std_error,
        n=s.n,
        prompt_tokens=s.prompt_tokens,
        trains=s.trains,
        chosen=chosen,
        baseline=s.baseline,
    )


def _plain_rows(report: Report) -> list[SummaryRow]:
    """Without a race: the chosen config and the baseline, with their search values on dev."""
    tokens = {t.trial: t.prompt_tokens_mean for t in report.top_trials}
    rows = []
    for summary, chosen in ((report.best, True), (report.baseline, False)):
        if summary is None or (not chosen and report.best is not None and summary.trial == report.best.trial):
            continue
        rows.append(_plain_row(summary, tokens.get(summary.trial), chosen=chosen))
    return rows


def _plain_row(summary: TrialSummary, tokens: float | None, *, chosen: bool) -> SummaryRow:
    baseline = summary.config.baseline
    return SummaryRow(
        trial=summary.trial,
        name="the baseline" if baseline else f"trial {summary.trial}",
        estimate=summary.dev_score,
        std_error=None,
        n=None,
        prompt_tokens=tokens,
        trains=summary.config.train.trains,
        chosen=chosen,
        baseline=baseline,
    )


def _separation(report: Report) -> Separation | None:
    """The chosen finalist against the best other one (None without a race of two or without standard errors)."""
    race = report.race
    if race is None:
        return None
    chosen = next((s for s in race.standings if s.trial == race.winner), None)
    others = [s for s in race.standings if s.trial != race.winner]
    if chosen is None or not others:
        return None
    runner_up = others[0]  # the standings are best first
    if chosen.std_error is None or runner_up.std_error is None:
        return None
    sign = -1.0 if report.direction == "minimize" else 1.0
    lead = sign * (chosen.mean - runner_up.mean)
    se = math.hypot(chosen.std_error, runner_up.std_error)
    return Separation(chosen=chosen.name, runner_up=runner_up.name, lead=lead, std_error=se, separated=lead > se)


def _verdict(report: Report) -> str | None:
    if report.verdict is None:
        return None
    return f"verdict on test, chosen vs baseline: {report.verdict.label.upper()}: {report.verdict.text}"


def _next_steps(
    report: Report,
    separation: Separation | None,
    *,
    export_path: Path | None,
    saved_model: Path | None,
    model_dir: Path | None,
) -> list[NextStep]:
    if report.incomplete is not None:
        return [NextStep(kind="continue", text="run the same command again to continue the study; its finished "
                         "trials are kept")]  # fmt: skip
    steps = []
    if saved_model is not None:
        command = f"promptsearch predict {_quote(saved_model)} --input {INPUT_PLACEHOLDER}"
        steps.append(NextStep(kind="predict", text="label new rows with the saved model", command=command))
    elif export_path is not None:
        target = model_dir if model_dir is not None else export_path.parent / "model"
        trains = report.best is not None and report.best.config.train.trains
        how = (
            "fine-tune the chosen config and save the model"
            if trains
            else "save the chosen prompt with its model (nothing to train: it works in context)"
        )
        command = f"promptsearch train {_quote(export_path)} --save-model {_quote(target)}"
        steps.append(NextStep(kind="train", text=how, command=command))
        command = f"promptsearch predict {_quote(target)} --input {INPUT_PLACEHOLDER}"
        steps.append(NextStep(kind="predict", text="then label new rows with it", command=command))
    else:
        steps.append(NextStep(kind="inspect", text="no trial completed, so nothing was exported: see the failures "
                              "in report.md"))  # fmt: skip
    if separation is not None and not separation.separated:
        steps.append(
            NextStep(
                kind="add_rows",
                text=f"dev was too small to separate the finalists: add labelled rows ({separation.describe()})",
            )
        )
    chose_baseline = report.best is not None and report.best.config.baseline
    if report.verdict is not None and report.verdict.label == "no clear difference" and not chose_baseline:
        steps.append(
            NextStep(
                kind="add_rows",
                text="test was too small to tell the chosen config from the baseline (the interval holds zero): "
                "add labelled test rows",
            )
        )
    return steps


def run_summary(
    report: Report,
    *,
    export_path: str | Path | None = None,
    saved_model: str | Path | None = None,
    model_dir: str | Path | None = None,
) -> RunSummary:
    """The end of a run in brief, from its report: finalists, verdict and next steps.

    ``export_path``: the exported best config (``best_prompt.yaml``); ``saved_model``: the folder ``--save-model``
    wrote, if any; ``model_dir``: where the suggested ``train --save-model`` writes (default: ``model`` next to
    the export). Works for any report: no race (``search.finalists: 0``, several objectives), no test, an
    incomplete study.

    >>> run_summary(result.report, export_path=result.export_path).next_steps[0].command   # doctest: +SKIP
    'promptsearch train runs/sst2/best_prompt.yaml --save-model runs/sst2/model'
    """
    raced = report.race is not None
    separation = _separation(report)
    return RunSummary(
        metric=report.metric,
        raced=raced,
        rows=_race_rows(report) if raced else _plain_rows(report),
        verdict=_verdict(report),
        separation=separation,
        next_steps=_next_steps(
            report,
            separation,
            export_path=Path(export_path) if export_path is not None else None,
            saved_model=Path(saved_model) if saved_model is not None else None,
            model_dir=Path(model_dir) if model_dir is not None else None,
        ),
        incomplete=report.incomplete,
        chosen=describe_chosen(report.best) if report.best is not None else None,
    )
