"""Trials that go wrong: a NaN loss and an out-of-memory error are pruned with a reason, never fatal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from promptsearch.api import _make_runner
from promptsearch.io.data import load_task_data
from promptsearch.space.search_space import load_space
from promptsearch.study.storage import open_study, run_trials


def _runner_and_study(space_file: Path, tmp_path: Path) -> tuple[Any, optuna.Study]:
    space = load_space(space_file)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = _make_runner(space, data, "cpu")
    study = open_study(space, f"sqlite:///{tmp_path / 'study.db'}", "s", data_fingerprint=data.fingerprint)
    return runner, study


def test_a_nan_loss_prunes_the_trial_with_the_reason(tiny_space: Path, tmp_path: Path) -> None:
    text = tiny_space.read_text().replace(
        "learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}", "learning_rate: 1.0e+30"
    )
    tiny_space.write_text(text)
    runner, study = _runner_and_study(tiny_space, tmp_path)
    run_trials(runner, study, n_trials=2)
    sampled = study.trials[1:]
    assert [t.state for t in sampled] == [TrialState.PRUNED, TrialState.PRUNED]
    for t in sampled:
        assert t.user_attrs["pruned_reason"].startswith("NonFiniteLoss: the training loss is nan")
    assert study.trials[0].state == TrialState.COMPLETE  # the baseline's own learning rate is sane


def _oom_above(model: torch.nn.Module, rows: int) -> list[int]:
    """Make training forwards raise CUDA's out-of-memory error above ``rows`` rows; return the sizes tried."""
    seen: list[int] = []
    forward = model.forward

    def limited(*args: Any, **kwargs: Any) -> Any:
        n = kwargs["input_ids"].shape[0]
        if model.training:
            seen.append(n)
        if model.training and n > rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(*args, **kwargs)

    model.forward = limited  # type: ignore[method-assign]
    return seen


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_effective_batch(tiny_space: Path, tmp_path: Path) -> None:
    tiny_space.write_text(tiny_space.read_text().replace("batch_size: [4, 8]", "batch_size: 8"))
    runner, study = _runner_and_study(tiny_space, tmp_path)
    seen = _oom_above(runner.runtime.model, 2)
    run_trials(runner, study, n_trials=1)
    trial = study.trials[1]
    assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert "pruned_reason" not in trial.user_attrs
    assert seen[:3] == [8, 4, 2]  # the first batch: 8 rows fail, then 4, then micro-batches of 2 run
    assert seen.count(8) == seen.count(4) == 2  # once in the baseline, once in the sampled trial
    assert seen.count(2) == len(seen) - 4  # every other step runs as 4 x 2 rows
    assert trial.user_attrs["epochs_run"] >= 1


def test_out_of_memory_at_one_row_prunes_with_the_reason(tiny_space: Path, tmp_path: Path) -> None:
    runner, study = _runner_and_study(tiny_space, tmp_path)
    _oom_above(runner.runtime.model, 0)
    run_trials(runner, study, n_trials=1)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.PRUNED]
    assert "even with micro-batches of 1 row" in study.trials[1].user_attrs["pruned_reason"]
