"""The report as a typed model: what ``report.json`` holds and what report.md, report.html and the CLI read.

``report.json`` is ``Report.model_dump(mode="json")``; its keys are a public format (programs read
them), so a field is added, never renamed. Optional parts that only some reports have (the
recommendation rule of a multi-objective study, the search and total seconds of a run) are left
out of the JSON when absent, as they always were.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from promptsearch.space.config import TrialConfig

__all__ = [
    "Evaluation",
    "Failure",
    "Finalist",
    "ModelRow",
    "Objectives",
    "Race",
    "Report",
    "ReportSeconds",
    "SpaceInfo",
    "TestScores",
    "TopTrial",
    "TrialCounts",
    "TrialSummary",
    "VerdictPart",
    "chosen_lines",
    "evaluation_line",
]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _drop_none(handler: SerializerFunctionWrapHandler, value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = handler(value)
    for key in keys:
        if out.get(key) is None:
            out.pop(key, None)
    return out


class SpaceInfo(_Part):
    name: str
    file: str | None


class TestScores(_Part):
    """Test scores of one config over the final evaluation's seeds."""

    __test__ = False  # not a pytest class

    mean: float
    std: float
    scores: list[float]


class TrialSummary(_Part):
    """The best trial or the baseline: its config, dev score and (when evaluated) test scores."""

    generated: dict[str, Any]
    trial: int
    params: dict[str, Any]
    config: TrialConfig
    dev_score: float | None
    dev_epoch: int | None
    test: TestScores | None
    prompt_example: str
    prompt_parts: list[list[str]] | None


class Objectives(_Part):
    multi: bool
    names: list[str]
    directions: list[str]
    rule: str | None = None  # multi-objective studies only

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_none(handler, self, ("rule",))


class ModelRow(_Part):
    """With a model list: one model's best sampled trial."""

    model: str
    head: str | None
    trials: int
    best_trial: int | None
    dev_score: float | None
    params: dict[str, Any]


class TrialCounts(_Part):
    total: int
    complete: int
    pruned: int
    fail: int
    running: int


class TopTrial(_Part):
    trial: int
    dev_score: float | None
    values: list[float]
    params: dict[str, Any]
    baseline: bool
    prompt_tokens_mean: float | None
    seconds: float | None
    runs: int = 1  # a config trained in several trials: its value is the mean over this many runs


class Failure(_Part):
    trial: int
    error: str


class ReportSeconds(_Part):
    trials: float
    final_evaluation: float | None
    search: float | None = None  # a run's own timing (``promptsearch run``), not a rebuilt report's
    total: float | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_none(handler, self, ("search", "total"))


class Finalist(_Part):
    """One finalist of the race: its fresh evaluations' mean and standard error."""

    trial: int
    name: str
    baseline: bool
    search_value: float | None
    mean: float
    std_error: float | None  # None with a single evaluation
    n: int
    cost: str
    trains: bool | None = None  # None in a race stored before these two were
    prompt_tokens: float | None = None  # mean prompt tokens per row

    def describe(self) -> str:
        spread = f" ± {self.std_error:.3f}" if self.std_error is not None else ""
        return f"{self.name}: {self.mean:.3f}{spread} (n={self.n}; {self.cost})"


class Race(_Part):
    """The finalists' race on the labelled rows (:mod:`promptsearch.study.finalists`)."""

    done: int
    winner: int
    rounds: int
    reason: str
    notes: list[str]
    standings: list[Finalist]


class VerdictPart(_Part):
    """Best minus baseline on test: the paired bootstrap interval and what it means."""

    delta: float
    ci_low: float
    ci_high: float
    label: str
    level: float
    n_rows: int
    n_boot: int
    text: str


class Evaluation(_Part):
    """How trials were scored and what the final model trained on."""

    mode: str
    folds: int
    seeds: int
    final_train: str
    trained_on: str | None = None


class Report(_Part):
    """Everything the report shows; built once by :func:`promptsearch.reporting.report.build_report`."""

    space: SpaceInfo
    study: str
    metric: str
    direction: str
    objectives: Objectives
    best: TrialSummary | None
    baseline: TrialSummary | None
    models: list[ModelRow]
    candidates: dict[str, Any] | None
    trials: TrialCounts
    top_trials: list[TopTrial]
    failures: list[Failure]
    seconds: ReportSeconds
    final_seeds: int
    versions: dict[str, str]
    created: str
    evaluation: Evaluation | None = None
    race: Race | None = None
    verdict: VerdictPart | None = None
    gap_warning: str | None = None
    incomplete: str | None = None  # why the study is short of its run's budget (None: complete)

    @property
    def is_multi_objective(self) -> bool:
        return self.objectives.multi


def evaluation_line(report: Report) -> str | None:
    ev = report.evaluation
    if ev is None:
        return None
    if ev.mode == "cv":
        how = (
            f"{ev.folds}-fold cross-validation over train and dev ({ev.seeds} seed(s) per fold, one epoch for all "
            "folds); in-context trials leave-one-out over every labelled row"
        )
    else:
        how = "the dev split (best epoch on dev)"
    trained = f"; the final model trained on {ev.trained_on}" if ev.trained_on else ""
    return f"trial scores: {how}{trained}"


def chosen_lines(report: Report) -> list[str]:
    """How the best was chosen and whether it holds on test: scoring, finalists ± standard error, verdict."""
    lines = []
    how = evaluation_line(report)
    if how:
        lines.append(how)
    if report.race is not None:
        lines.append("finalists, scored again on fresh seeds (mean ± standard error):")
        for s in report.race.standings:
            mark = "→" if s.trial == report.race.winner else " "
            lines.append(f"  {mark} {s.describe()}")
        lines.append(f"  {report.race.reason}")
        lines += [f"  note: {n}" for n in report.race.notes]
    if report.verdict is not None:
        lines.append(f"verdict on test, best vs baseline: {report.verdict.label.upper()}: {report.verdict.text}")
    if report.gap_warning:
        lines.append(f"warning: {report.gap_warning}")
    return lines
