"""How trials are scored (study/protocol.py), in real tiny searches: K-fold runs, leave-one-out, the dev split."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from promptsearch.api import search
from promptsearch.io.data import load_task_data
from promptsearch.models.device import resolve_device
from promptsearch.models.runtime import ModelRuntime
from promptsearch.space.config import TrialConfig
from promptsearch.space.sampling import sample_config
from promptsearch.space.search_space import load_space
from promptsearch.study.objective import TrialRunner
from promptsearch.study.protocol import Protocol
from promptsearch.study.records import EVALUATION_ATTR


def _space(tmp_path: Path, model: Path, evaluation: str, *, extra: str = "", epochs: str = "2") -> Path:
    from tiny import tiny_data, tiny_space_text

    data = tiny_data(tmp_path / "data", test_rows=16)
    text = tiny_space_text(model, data, n_trials=2, epochs=epochs).replace(
        "  evaluation: {mode: dev}  # dev repeats train (see tiny_data), so scores move with the hyperparameters",
        f"  evaluation: {evaluation}",
    )
    path = tmp_path / "space.yaml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def test_a_training_trial_is_scored_on_every_fold_at_one_epoch(tiny_model: Path, tmp_path: Path) -> None:
    path = _space(tmp_path, tiny_model, "{folds: 2}", epochs="3")
    result = search(path, out=tmp_path / "run", device="cpu", final_seeds=0)
    done = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    assert done
    for trial in done:
        record = trial.user_attrs[EVALUATION_ATTR]
        assert record["mode"] == "cv" and record["runs"] == 2
        assert len(record["curve"]) == 3 and len(record["fold_values"]) == 2
        # one epoch for every run: the mean curve's best point, which is the mean of the runs at that epoch
        assert record["epoch"] == 1 + record["curve"].index(max(record["curve"]))
        assert trial.value == pytest.approx(max(record["curve"]), abs=1e-6)
        assert trial.value == pytest.approx(sum(record["fold_values"]) / 2, abs=1e-6)
        assert trial.user_attrs["best_epoch"] == record["epoch"]
        # the pruner hears one value per run, at steps 1, 2: every trial at the same step saw the same folds
        assert sorted(trial.intermediate_values) == [1, 2]
        assert trial.intermediate_values[2] == pytest.approx(trial.value, abs=1e-6)
        # every labelled row held out once: 64 (dev repeats train in tiny_data; a text's copies share a fold)
        assert record["rows"] == 64


def test_an_in_context_trial_is_scored_leave_one_out(tiny_mlm: Path, tmp_path: Path) -> None:
    path = _space(tmp_path, tiny_mlm, "{folds: 4}")
    text = path.read_text().replace("  max_length: 128", "  max_length: 128\n  head: mlm")
    path.write_text(text.replace("train:\n", "train:\n  method: none\n", 1))
    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, ["negative", "positive"],
                                                                       resolve_device("cpu"), head="mlm"))  # fmt: skip
    protocol = Protocol(runner)
    trial = optuna.trial.FixedTrial(
        {
            "prompt.instruction": 0,
            "prompt.template": "cloze",
            "prompt.label_words": 0,
            "prompt.demonstrations.count": 2,
            "prompt.demonstrations.selection": "random",
        }
    )
    config = sample_config(trial, space)
    assert not config.train.trains
    score = protocol.score(config, seed=0)
    assert score.mode == "loo" and score.runs == 0 and len(score.fold_values) == 4
    assert score.value == pytest.approx(sum(score.fold_values) / 4)
    # every labelled row was a query once, and no query saw its own row among its demonstrations
    queried, shown = 0, 0
    for fold in protocol.folds:
        encoded = protocol.loo_runner(fold).features_for(config.head, config.model).get(config.prompt, "dev")
        for prompt, row in zip(encoded.prompts, fold.split(protocol.rows)[1], strict=True):
            demos = [text for kind, text in prompt.parts if kind == "demonstration"]
            shown += len(demos)  # up to 2: a long query leaves room for fewer at max_length 128
            assert all(row.fields["text"] not in demo for demo in demos)
            queried += 1
    assert queried == len(protocol.rows) and shown > len(protocol.rows)


def test_mode_dev_keeps_the_single_split_and_per_epoch_pruning(tiny_model: Path, tmp_path: Path) -> None:
    path = _space(tmp_path, tiny_model, "{mode: dev}", epochs="3")
    result = search(path, out=tmp_path / "run", device="cpu", final_seeds=0)
    trial = next(t for t in result.study.trials if t.state == TrialState.COMPLETE)
    record = trial.user_attrs[EVALUATION_ATTR]
    assert record["mode"] == "dev" and record["runs"] == 1 and record["rows"] == 32
    assert sorted(trial.intermediate_values) == [1, 2, 3]


def test_the_finalists_of_a_race_round_are_scored_with_the_same_seeds(tiny_model: Path, tmp_path: Path) -> None:
    """Common random numbers: a race compares configs, so every finalist of a round trains from the same seed,
    and the seeds are fresh (none a trial used)."""
    from promptsearch.study.finalists import RACE_SEED, race_finalists
    from promptsearch.study.records import RACE_ATTR

    path = _space(tmp_path, tiny_model, "{folds: 2}")
    result = search(path, out=tmp_path / "run", device="cpu", final_seeds=0)
    study = result.study
    assert study.user_attrs.get(RACE_ATTR) is not None  # the search raced; race again, watching the seeds
    study.set_user_attr(RACE_ATTR, None)
    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, ["negative", "positive"],
                                                                       resolve_device("cpu")))  # fmt: skip
    seen: list[tuple[str, int]] = []

    class Watched(Protocol):
        def score(self, config, *, seed, **kwargs):  # type: ignore[no-untyped-def]
            seen.append((config.model_dump_json(), seed))
            return super().score(config, seed=seed, **kwargs)

    record = race_finalists(lambda: runner, study, protocol=Watched(runner))
    assert record is not None and len(record["standings"]) >= 2
    assert len({config for config, _ in seen}) == len(record["standings"])  # each finalist scored
    assert {seed for _, seed in seen} == {RACE_SEED}  # one round (cross-validated), one seed for all


def _in_context_runner(tmp_path: Path, model: Path, evaluation: str) -> tuple[TrialRunner, Path]:
    path = _space(tmp_path, model, evaluation)
    text = path.read_text().replace("  max_length: 128", "  max_length: 128\n  head: mlm")
    path.write_text(text.replace("train:\n", "train:\n  method: none\n", 1))
    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, ["negative", "positive"],
                                                                       resolve_device("cpu"), head="mlm"))  # fmt: skip
    return runner, path


def test_an_in_context_trial_spends_rows_as_its_pruning_resource(tiny_mlm: Path, tmp_path: Path) -> None:
    """Nothing trains, so no epochs: the pruner hears the running score after each fold's rows (the same rows
    for every trial at the same step), and a pruned trial scores no further rows."""
    runner, _ = _in_context_runner(tmp_path, tiny_mlm, "{folds: 4}")
    protocol = Protocol(runner)
    trial = optuna.trial.FixedTrial(
        {
            "prompt.instruction": 1,
            "prompt.template": "review",
            "prompt.label_words": 1,
            "prompt.demonstrations.count": 1,
            "prompt.demonstrations.selection": "balanced",
        }
    )
    config = sample_config(trial, space=runner.space)
    reports: list[tuple[int, float]] = []
    scored: list[float] = []
    score = protocol.score(
        config, seed=0, report=lambda value, step: reports.append((step, value)), on_epoch=lambda e, s: scored.append(s)
    )
    assert [step for step, _ in reports] == [1, 2, 3, 4] and len(scored) == 4
    for k, (_, value) in enumerate(reports, start=1):
        assert value == pytest.approx(sum(score.fold_values[:k]) / k)
    assert reports[-1][1] == pytest.approx(score.value)  # the last report is the trial's value

    def stop(value: float, step: int) -> None:
        raise optuna.TrialPruned(f"step {step}")

    scored.clear()
    with pytest.raises(optuna.TrialPruned):
        protocol.score(config, seed=0, report=stop, on_epoch=lambda e, s: scored.append(s))
    assert len(scored) == 1  # one fold of four: a quarter of the rows


def _one_in_context_config(tmp_path: Path, model: Path, *, n_trials: int = 3) -> Path:
    """A space whose sampled trials are all the same in-context config (every prompt choice fixed)."""
    _, path = _in_context_runner(tmp_path, model, "{folds: 2}")
    text = path.read_text()
    for old, new in (
        ('instruction: ["", "Classify the review."]', 'instruction: "Classify the review."'),
        ('    review: "Review: {text} Sentiment: {label}"\n', ""),
        ("    - {negative: bad, positive: good}\n", ""),
        ("count: {low: 0, high: 2}", "count: 1"),
        ("selection: [random, balanced]", "selection: balanced"),
        ("n_trials: 2", f"n_trials: {n_trials}"),
    ):
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    return path


def test_an_in_context_config_already_scored_takes_that_result(tiny_mlm: Path, tmp_path: Path) -> None:
    """TPE proposes configs it has run; an in-context one is deterministic, so it is not scored again, and it
    races once."""
    from promptsearch.study.records import RACE_ATTR

    path = _one_in_context_config(tmp_path, tiny_mlm)
    result = search(path, out=tmp_path / "run", device="cpu", final_seeds=0)
    searched = [t for t in result.study.trials if not t.user_attrs.get("baseline")]
    assert len(searched) == 3 and all(t.state == TrialState.COMPLETE for t in searched)
    first, *rest = searched
    assert first.user_attrs.get("duplicate_of") is None and "seconds" in first.user_attrs
    assert sorted(first.intermediate_values) == [1, 2]  # one report per fold's rows
    for trial in rest:
        assert trial.user_attrs["duplicate_of"] == first.number
        assert trial.user_attrs["config"] == first.user_attrs["config"]
        assert trial.value == first.value and trial.intermediate_values == first.intermediate_values
        assert trial.user_attrs[EVALUATION_ATTR] == first.user_attrs[EVALUATION_ATTR]
        assert "seconds" not in trial.user_attrs  # nothing was computed
    race = result.study.user_attrs[RACE_ATTR]
    raced = {s["trial"] for s in race["standings"]}
    assert first.number in raced and not raced & {t.number for t in rest}
    # the premise: the trial's own seed does not change an in-context score
    runner = _in_context_runner(tmp_path / "again", tiny_mlm, "{folds: 2}")[0]
    runner.space = load_space(path)
    config = trial_config_of(first)
    protocol = Protocol(runner)
    assert {protocol.score(config, seed=s).value for s in (first.user_attrs["seed"], rest[0].user_attrs["seed"])} == {
        first.value
    }


def trial_config_of(trial: optuna.trial.FrozenTrial) -> TrialConfig:
    return TrialConfig.model_validate(trial.user_attrs["config"])


def _objective_study(path: Path, pruner: optuna.pruners.BasePruner, n_trials: int) -> optuna.Study:
    from promptsearch.study.objective import Objective

    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, ["negative", "positive"],
                                                                       resolve_device("cpu"), head="mlm"))  # fmt: skip
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(Objective(runner), n_trials=n_trials)
    return study


def test_a_repeat_of_a_pruned_in_context_config_is_pruned_by_replaying_its_reports(
    tiny_mlm: Path, tmp_path: Path
) -> None:
    path = _one_in_context_config(tmp_path, tiny_mlm)
    study = _objective_study(path, optuna.pruners.ThresholdPruner(lower=1.1), n_trials=2)  # prunes every report
    first, second = study.trials
    assert first.state == second.state == TrialState.PRUNED
    assert sorted(first.intermediate_values) == [1] and "seconds" in first.user_attrs
    assert second.user_attrs["duplicate_of"] == first.number and "seconds" not in second.user_attrs
    assert second.intermediate_values == first.intermediate_values


def test_a_fully_scored_trial_is_never_pruned_at_its_last_step(tiny_model: Path, tmp_path: Path) -> None:
    """A pruner that would stop every trial at step 2 (the last of 2 folds) stops none: its cost is spent."""
    path = _space(tmp_path, tiny_model, "{folds: 2}")
    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    from promptsearch.study.objective import Objective

    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, ["negative", "positive"],
                                                                       resolve_device("cpu")))  # fmt: skip
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1, n_warmup_steps=2)
    )
    study.optimize(Objective(runner), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)


def test_the_gap_warning_weighs_test_against_the_race_mean(tiny_model: Path, tmp_path: Path) -> None:
    """What the search chose on is the winner's race mean (fresh seeds), not its trial value: the dev-to-test gap
    is measured from there. A tiny model scores at chance everywhere, so the race's record is edited to say the
    winner raced far above its trial value, and the final evaluation runs again."""
    from promptsearch.study.final import final_evaluation
    from promptsearch.study.records import FINAL_ATTR, RACE_ATTR, best_trial
    from promptsearch.study.verdict import dev_test_gap_warning

    path = _space(tmp_path, tiny_model, "{folds: 2}")
    result = search(path, out=tmp_path / "run", device="cpu", final_seeds=1)
    study = result.study
    best = best_trial(study)
    assert best is not None and best.dev is not None
    race = study.user_attrs[RACE_ATTR]
    standing = next(s for s in race["standings"] if s["trial"] == best.number)
    final = study.user_attrs[FINAL_ATTR]
    standing["mean"] = 1.0 if final["best"]["test"]["mean"] < 0.5 else 0.0  # far from test: a warning
    assert standing["mean"] != best.dev
    study.set_user_attr(RACE_ATTR, race)
    study.set_user_attr(FINAL_ATTR, None)
    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, ["negative", "positive"],
                                                                       resolve_device("cpu")))  # fmt: skip
    assert best_trial(study) is not None and best_trial(study).number == best.number  # type: ignore[union-attr]
    final = final_evaluation(runner, study, seeds=1)
    test = final["best"]["test"]["mean"]
    assert final["gap_warning"] == dev_test_gap_warning(standing["mean"], test)
    assert final["gap_warning"] != dev_test_gap_warning(best.dev, test)
    assert f"scored {standing['mean']:.3f} in the search but {test:.3f} on test" in final["gap_warning"]


def test_a_repeated_training_config_adds_a_run_to_its_estimate(tiny_model: Path, tmp_path: Path) -> None:
    """TPE may propose a trained config again: the repeat trains with its own seed, and its value is the mean over
    the config's runs (each run's own value kept), so the config is one point of the study, not three."""
    from promptsearch.reporting.report import build_report, render_markdown
    from promptsearch.study.objective import Objective
    from promptsearch.study.records import POOLED_ATTR, RUN_VALUES_ATTR, searched_best_trial, trial_records

    path = _space(tmp_path, tiny_model, "{mode: dev}", epochs="2")
    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, ["negative", "positive"],
                                                                       resolve_device("cpu")))  # fmt: skip
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    objective = Objective(runner)
    study.optimize(objective, n_trials=2)  # two different configs
    first = study.trials[0]
    assert first.params != study.trials[1].params
    for _ in range(2):
        study.enqueue_trial(first.params)
    study.optimize(objective, n_trials=2)
    runs = [t for t in study.trials if t.params == first.params]
    assert [t.number for t in runs] == [0, 2, 3] and all(t.state == TrialState.COMPLETE for t in runs)
    assert len({t.user_attrs["seed"] for t in runs}) == 3  # each run its own seed
    assert RUN_VALUES_ATTR not in first.user_attrs and POOLED_ATTR not in first.user_attrs
    own = [first.value] + [t.user_attrs[RUN_VALUES_ATTR][0] for t in runs[1:]]
    assert runs[1].user_attrs[POOLED_ATTR]["trials"] == [0, 2]
    assert runs[1].value == pytest.approx((own[0] + own[1]) / 2)
    assert runs[2].user_attrs[POOLED_ATTR]["trials"] == [0, 2, 3]
    assert runs[2].value == pytest.approx(sum(own) / 3)  # each run once: trial 2's own value, not its mean
    other = study.trials[1]
    assert RUN_VALUES_ATTR not in other.user_attrs  # a different config: a point of its own

    records = {r.number: r for r in trial_records(study)}
    assert records[0].pooled_into == records[2].pooled_into == 3 and records[3].pooled_into is None
    assert [n for n, r in records.items() if r.is_point] == [1, 3] and records[3].runs == 3
    best = searched_best_trial(study)
    assert best is not None and best.number in (1, 3)
    report = build_report(study, space_name="tiny", space_file=None, metric="accuracy", final=None)
    assert [t.trial for t in report.top_trials] == sorted([1, 3], key=lambda n: -(records[n].dev or 0.0))
    assert next(t for t in report.top_trials if t.trial == 3).runs == 3
    assert "(mean of 3 runs)" in render_markdown(report)


def test_an_in_context_config_is_not_pooled(tiny_mlm: Path, tmp_path: Path) -> None:
    """An in-context repeat takes the earlier result (nothing trains, nothing to pool)."""
    from promptsearch.study.records import POOLED_ATTR, finished_runs

    path = _one_in_context_config(tmp_path, tiny_mlm)
    study = _objective_study(path, optuna.pruners.NopPruner(), n_trials=2)
    assert all(POOLED_ATTR not in t.user_attrs for t in study.trials)
    assert finished_runs(study, trial_config_of(study.trials[0])) == []
