"""End-to-end searches with a tiny real BERT and real Optuna studies on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import promptsearch
import promptsearch.io.data as data_module
from promptsearch.api import search
from promptsearch.study.records import trial_config


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.trials]


def test_search_end_to_end(tiny_space: Path, tmp_path: Path) -> None:
    result = search(tiny_space, out=tmp_path / "run", device="cpu")
    study = result.study
    states = _states(study)
    assert len(states) == 5  # the baseline + 4 sampled trials
    assert study.trials[0].user_attrs["baseline"] is True
    assert trial_config(study.trials[0]).prompt.template is None
    assert TrialState.PRUNED in states, "successive halving should stop at least one trial"
    for t in study.trials:
        for key in (
            "config",
            "seed",
            "device",
            "seconds",
            "train_seconds",
            "peak_memory_mb",
            "prompt_example",
        ):
            assert key in t.user_attrs, (t.number, key)
        assert t.user_attrs["epochs_run"] >= 1
        assert set(t.user_attrs["seconds"]) == {"restore", "tokenize", "train", "eval"}, t.state  # pruned too
    assert result.best_test is not None and len(result.best_test["scores"]) == 2
    assert 0.0 <= result.best_test["mean"] <= 1.0
    assert result.baseline_test is not None

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    for key in ("space", "best", "baseline", "trials", "metric", "seconds", "top_trials"):
        assert key in report
    for key in ("params", "dev_score", "test", "prompt_example"):
        assert key in report["best"]
    assert set(report["best"]["test"]) == {"mean", "std", "scores"}
    assert report["trials"]["complete"] + report["trials"]["pruned"] + report["trials"]["fail"] == 5
    assert report["trials"]["pruned"] >= 1
    assert report["best"]["dev_score"] == max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
    assert len(report["top_trials"]) <= 5
    md = (tmp_path / "run" / "report.md").read_text()
    assert "plain fine-tuning baseline" in md and "Best prompt" in md

    exported = promptsearch.load_prompt_config(tmp_path / "run" / "best_prompt.yaml")
    assert exported.trial == report["best"]["trial"]
    assert exported.scores.test is not None
    assert exported.scores.test.mean == pytest.approx(report["best"]["test"]["mean"])


def test_resume_runs_only_the_remaining_trials(
    tiny_space: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    first = search(tiny_space, out=out, n_trials=2, final_seeds=0, device="cpu")
    kept = [(t.number, t.value, t.datetime_start) for t in first.study.trials]
    assert len(kept) == 3
    second = search(tiny_space, out=out, n_trials=4, final_seeds=0, device="cpu")
    trials = second.study.trials
    assert len(trials) == 5
    assert [(t.number, t.value, t.datetime_start) for t in trials[:3]] == kept
    import promptsearch.api as api

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished study needs no model")

    monkeypatch.setattr(api, "_make_runner", no_model)
    third = search(tiny_space, out=out, n_trials=4, final_seeds=0, device="cpu")
    assert len(third.study.trials) == 5, "a finished study runs nothing more"


def test_a_failing_trial_does_not_stop_the_study(tiny_space: Path, tmp_path: Path) -> None:
    def explode(trial: int, epoch: int, score: float) -> None:
        if trial == 2:
            raise RuntimeError("disk on fire")

    result = search(tiny_space, out=tmp_path / "run", n_trials=3, final_seeds=0, device="cpu", on_epoch=explode)
    trials = result.study.trials
    assert len(trials) == 4
    assert trials[2].state == TrialState.FAIL
    assert trials[2].user_attrs["error"] == "RuntimeError: disk on fire"
    assert all(t.state != TrialState.FAIL for t in trials if t.number != 2)
    assert result.report.trials.fail == 1
    assert "disk on fire" in (tmp_path / "run" / "report.md").read_text()


def test_interrupted_trial_is_recorded_and_the_same_command_continues(tiny_space: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"

    def ctrl_c(trial: int, epoch: int, score: float) -> None:
        if trial == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(tiny_space, out=out, n_trials=2, final_seeds=0, device="cpu", on_epoch=ctrl_c)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{(out / 'study.db').resolve()}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert study.trials[1].user_attrs["interrupted"] is True
    resumed = search(tiny_space, out=out, n_trials=2, final_seeds=0, device="cpu")
    states = [t.state for t in resumed.study.trials]
    assert len(states) == 4 and states[0] == TrialState.COMPLETE and states[1] == TrialState.FAIL
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states[2:])


def test_the_search_never_reads_the_test_split(
    tiny_space: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test file is checked before the first trial (a bad one fails at once, not after the search), but no test
    row reaches the search: the rows are handed out (``TaskData.test``) only after the last trial."""
    events: list[str] = []
    real_load_split = data_module.load_split
    real_test = data_module.TaskData.test

    def recording_load_split(task, split, base_dir):  # type: ignore[no-untyped-def]
        events.append(f"load:{split}")
        return real_load_split(task, split, base_dir)

    def recording_test(data: data_module.TaskData) -> list[data_module.Example]:
        events.append("rows:test")
        return real_test.fget(data)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(data_module, "load_split", recording_load_split)
    monkeypatch.setattr(data_module.TaskData, "test", property(recording_test))

    def trial_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        events.append(f"trial:{trial.number}")

    search(tiny_space, out=tmp_path / "run", n_trials=2, final_seeds=1, device="cpu", callbacks=[trial_done])
    trials = [i for i, e in enumerate(events) if e.startswith("trial:")]
    assert events.index("load:test") < trials[0], events  # checked up front, once
    assert events[: trials[0]].count("load:test") == 1, events
    assert "rows:test" in events
    assert all(i > trials[-1] for i, e in enumerate(events) if e == "rows:test"), events


def test_trials_share_the_loaded_model_and_the_tokenized_splits(tiny_space: Path) -> None:
    import torch

    from promptsearch.api import _make_runner
    from promptsearch.io.data import load_task_data
    from promptsearch.space.sampling import baseline_config
    from promptsearch.space.search_space import load_space

    space = load_space(tiny_space)
    runner = _make_runner(space, load_task_data(space.spec.task, space.base_dir), "cpu")
    model = runner.runtime.model
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    config = baseline_config(space)
    first, _ = runner.fit(config, seed=1)
    assert runner.features.hits == 0  # train and dev tokenized once
    body = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(model.state_dict()[body], pristine[body])  # training changed the weights
    second, _ = runner.fit(config, seed=1)
    assert runner.features.hits == 2  # the second trial reuses both splits
    assert runner.runtime.model is model  # restored in place, not reloaded
    assert second.history == first.history  # same seed from the same restored weights: same trial
    runner.runtime.restore(seed=2)
    assert torch.equal(model.state_dict()[body], pristine[body])  # the body is back to pretrained
    assert not torch.equal(model.state_dict()["classifier.weight"], pristine["classifier.weight"])  # new head
