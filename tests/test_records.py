"""Trial records: written by the writers into a real in-memory Optuna study, read back as TrialRecords; the
typed report round-trips through JSON."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from promptsearch.reporting.report import build_report, render_markdown
from promptsearch.reporting.schema import Report
from promptsearch.space.config import CalibrationParams, PromptConfig, TrainConfig, TrialConfig
from promptsearch.study.records import (
    CONFIG_ATTR,
    FINAL_ATTR,
    StoredSpace,
    TrialRecord,
    TrialWriter,
    baseline_trial,
    best_trial,
    count_done,
    counts_towards_budget,
    enqueue_baseline,
    enqueue_retry,
    enqueue_warm_start,
    objectives_info,
    store_final,
    store_objectives,
    store_space,
    stored_final_raw,
    stored_space,
    trial_config,
    trial_records,
    warm_start_sources,
)

PROMPT = PromptConfig(template="{text} It was [MASK].", label_words={"neg": "bad", "pos": "good"})
SAMPLED = TrialConfig(prompt=PROMPT, train=TrainConfig(method="full", epochs=2), head="mlm")
BASELINE = TrialConfig(prompt=PromptConfig(), train=TrainConfig(method="full", epochs=2), baseline=True)


def _run(study: optuna.Study, config: TrialConfig, outcome: str, score: float = 0.5) -> None:
    """One trial written the way the objective writes it, ending as ``outcome``."""

    def objective(trial: optuna.trial.Trial) -> float:
        writer = TrialWriter(trial)
        writer.start(config, seed=7, device="cpu")
        try:
            trial.report(score - 0.1, 1)
            trial.report(score, 2)
            if outcome == "pruned":
                writer.pruned_reason("NonFiniteLoss: the training loss is nan")
                writer.epochs_run(1)
                raise optuna.TrialPruned("pruned")
            if outcome == "fail":
                writer.error("RuntimeError: disk on fire")
                raise RuntimeError("disk on fire")
            if outcome == "interrupted":
                writer.interrupted()
                raise RuntimeError("interrupted")
            writer.calibration(CalibrationParams(method="mean", offsets=[0.1, -0.1]))
            writer.fit(best_epoch=2, epochs_run=2)
            writer.prompt(example="great movie It was [MASK].", parts=[["query", "great"]], tokens_mean=7.04,
                          demos_dropped=3)  # fmt: skip
            return score
        finally:
            writer.resources({"train": 1.23456, "eval": 0.5}, peak_memory_mb=12.345)

    study.optimize(objective, n_trials=1, catch=(RuntimeError,))


@pytest.fixture
def study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    store_space(study, StoredSpace(name="s", file=None, text="name: s", fingerprint="abc", data_fingerprint=None))
    enqueue_baseline(study)
    _run(study, BASELINE, "complete", 0.6)  # 0: the baseline
    _run(study, SAMPLED, "complete", 0.8)  # 1: the best
    _run(study, SAMPLED, "pruned")  # 2
    _run(study, SAMPLED, "fail")  # 3: failed by its own error
    _run(study, SAMPLED, "interrupted")  # 4: does not count
    _run(study, SAMPLED, "complete", 0.8)  # 5: ties with 1; the earlier trial wins
    return study


def test_records_read_back_what_the_writers_wrote(study: optuna.Study) -> None:
    records = trial_records(study)
    assert [r.number for r in records] == [0, 1, 2, 3, 4, 5]
    assert [r.state for r in records] == [
        TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL,
        TrialState.COMPLETE,
    ]  # fmt: skip
    base, best, pruned, failed, interrupted, _ = records
    assert base.is_baseline and base.config == BASELINE and base.dev == pytest.approx(0.6)
    assert not best.is_baseline and best.config == SAMPLED and best.model is None
    assert best.values == (0.8,) and best.dev_curve == {1: pytest.approx(0.7), 2: 0.8} and best.best_epoch == 2
    assert best.epochs_run == 2 and best.seed == 7 and best.device == "cpu"
    assert best.calibration_params() == CalibrationParams(method="mean", offsets=[0.1, -0.1])
    assert best.prompt_example == "great movie It was [MASK]." and best.prompt_parts == [["query", "great"]]
    assert best.prompt_tokens_mean == 7.0 and best.demos_dropped == 3
    assert best.seconds == {"train": 1.2346, "eval": 0.5} and best.train_seconds == 1.235
    assert best.peak_memory_mb == 12.3 and best.duration is not None and best.duration >= 0
    assert pruned.pruned_reason == "NonFiniteLoss: the training loss is nan" and pruned.epochs_run == 1
    assert pruned.dev == 0.5 and not pruned.is_complete and pruned.error is None  # Optuna keeps its last score
    assert failed.error == "RuntimeError: disk on fire" and failed.failure == failed.error
    assert interrupted.interrupted and interrupted.error is None
    assert trial_config(best) == trial_config(study.trials[1]) == SAMPLED


def test_budget_best_and_baseline(study: optuna.Study) -> None:
    counted = [t.number for t in study.trials if counts_towards_budget(t)]
    assert counted == [0, 1, 2, 3, 5] == [r.number for r in trial_records(study) if r.counts_towards_budget]
    assert count_done(study) == 5
    assert best_trial(study).number == 1  # type: ignore[union-attr]
    assert baseline_trial(study).number == 0  # type: ignore[union-attr]
    minimize = optuna.create_study(direction="minimize")
    assert best_trial(minimize) is None and baseline_trial(minimize) is None


def test_a_long_error_is_cut_and_a_stale_trial_is_retried_once() -> None:
    study = optuna.create_study()
    enqueue_baseline(study)
    trial = study.ask()
    TrialWriter(trial).error("x" * 5000)
    study.tell(trial, state=TrialState.FAIL)
    frozen = study.trials[0]
    assert TrialRecord.from_trial(frozen).error == "x" * 2000
    assert enqueue_retry(study, frozen)
    retry = study.ask()
    study.tell(retry, 1.0)
    record = trial_records(study)[1]
    assert record.retry_of == 0 and record.is_baseline  # the retry is still the baseline
    assert not enqueue_retry(study, study.trials[1])  # a retry is not retried


def test_study_attributes_round_trip() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert stored_space(study) is None and stored_final_raw(study) is None
    assert objectives_info(study).names == ["dev", "objective 1"]
    space = StoredSpace(name="s", file="s.yaml", text="name: s", fingerprint="f", data_fingerprint="d")
    store_space(study, space)
    assert stored_space(study) == space
    store_objectives(study, ["dev", "prompt_tokens"], 0.01)
    info = objectives_info(study)
    assert info.names == ["dev", "prompt_tokens"] and info.within == 0.01
    store_final(study, {"key": {"best_trial": 1}, "seconds": 2.0})
    assert stored_final_raw(study) == {"key": {"best_trial": 1}, "seconds": 2.0}
    assert study.user_attrs[FINAL_ATTR]["seconds"] == 2.0  # the storage format itself
    enqueue_warm_start(study, {"train.learning_rate": 1e-4}, "best_prompt.yaml")
    assert warm_start_sources(study) == {"best_prompt.yaml"}


def test_a_trial_with_an_unreadable_config_reads_as_none() -> None:
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={CONFIG_ATTR: {"unknown": 1}}))
    assert trial_records(study)[0].config is None


def test_the_report_round_trips_through_json(study: optuna.Study) -> None:
    final = {
        "best": {"test": {"mean": 0.7, "std": 0.01, "scores": [0.69, 0.71]}, "seeds": [1000, 1001]},
        "baseline": {"test": {"mean": 0.6, "std": 0.0, "scores": [0.6, 0.6]}, "seeds": [1000, 1001]},
        "seconds": 3.5,
    }
    report = build_report(study, space_name="s", space_file="s.yaml", metric="accuracy", final=final)
    assert Report.model_validate_json(report.model_dump_json()) == report
    data = report.model_dump(mode="json")
    assert Report.model_validate(json.loads(json.dumps(data))) == report
    assert list(data) == [
        "space", "study", "metric", "direction", "objectives", "best", "baseline", "models", "candidates",
        "trials", "top_trials", "failures", "seconds", "final_seeds", "versions", "created",
        "evaluation", "race", "verdict", "gap_warning", "incomplete",
    ]  # fmt: skip
    assert data["seconds"] == {"trials": data["seconds"]["trials"], "final_evaluation": 3.5}  # no search/total
    assert "rule" not in data["objectives"]
    assert data["best"]["trial"] == 1 and data["best"]["test"]["mean"] == 0.7 and data["final_seeds"] == 2
    assert data["best"]["config"] == SAMPLED.model_dump(mode="json")
    assert data["trials"] == {"total": 6, "complete": 3, "pruned": 1, "fail": 2, "running": 0}
    assert [f["trial"] for f in data["failures"]] == [3, 4]
    assert [t["trial"] for t in data["top_trials"]] == [1, 5, 0]
    assert "| best prompt | 1 | 80.00 | 70.00 ± 1.00 (n=2) |" in render_markdown(report)
    timed = build_report(
        study, space_name="s", space_file=None, metric="accuracy", final=None, search_seconds=1.234, started=0.0
    )
    assert timed.seconds.search == 1.23 and set(timed.model_dump(mode="json")["seconds"]) == {
        "trials", "final_evaluation", "search", "total",
    }  # fmt: skip
    assert Report.model_validate_json(timed.model_dump_json()) == timed


def test_the_report_refuses_unknown_keys(study: optuna.Study) -> None:
    data = build_report(study, space_name="s", space_file=None, metric="accuracy", final=None).model_dump()
    with pytest.raises(ValueError, match="extra"):
        Report.model_validate({**data, "surprise": 1})
