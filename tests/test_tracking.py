"""MLflow logging of trials (the [mlflow] extra), against a local file-based MLflow store."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from promptsearch.cli import main
from promptsearch.errors import ConfigError
from promptsearch.reporting.tracking import mlflow_callback

mlflow = pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")


def test_run_logs_every_trial_to_a_local_mlflow_file_store(
    tiny_space: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)  # mlflow writes these; monkeypatch restores them afterwards
    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "run"
    args = ["run", str(tiny_space), "--n-trials", "2", "--final-seeds", "0", "--out", str(out), "--device", "cpu"]
    assert main([*args, "--mlflow", uri]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == [str(t.number) for t in study.trials]
    for trial in study.trials:
        run = runs[str(trial.number)]
        assert run.data.tags["prompt_example"] == trial.user_attrs["prompt_example"]
        assert run.data.tags["state"] == trial.state.name
        assert {k: str(v) for k, v in trial.params.items()} == run.data.params
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert run.data.metrics["dev_accuracy"] == pytest.approx(trial.value)


def test_a_plain_folder_store_needs_mlflows_opt_in_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError, match="set; use a local database file instead"):
        mlflow_callback(str(tmp_path / "mlruns"), metric="accuracy")
    callback = mlflow_callback(
        f"sqlite:///{tmp_path / 'mlflow.db'}", metric="accuracy", objectives=["dev", "latency_ms"]
    )
    assert callable(callback)
