"""No code from files, nothing half-written, no secrets in the open."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import optuna
import pytest
from tiny import postgres_reachable

import promptsearch
from promptsearch.cli import main
from promptsearch.errors import SpaceError
from promptsearch.io.export import atomic_write_text
from promptsearch.redact import mask_url, scrub
from promptsearch.space.search_space import parse_space

SECRET = "hunter2-not-a-real-password"
PG = f"postgresql://root:{SECRET}@127.0.0.1:5432/test"


def test_yaml_tags_cannot_build_python_objects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"name: x\nevil: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(SpaceError, match="not valid YAML"):
        parse_space(text, path=tmp_path / "evil.yaml")
    assert not marker.exists()


def test_trust_remote_code_is_off_unless_asked_and_then_announced(
    tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from promptsearch.models.runtime import ModelRuntime
    from promptsearch.space.spec import ModelSpec

    with caplog.at_level(logging.WARNING):
        ModelRuntime(ModelSpec(name=str(tiny_model)), ["a", "b"], torch.device("cpu"))
    assert "trust_remote_code" not in caplog.text
    with caplog.at_level(logging.WARNING):
        ModelRuntime(ModelSpec(name=str(tiny_model), trust_remote_code=True), ["a", "b"], torch.device("cpu"))
    assert f"Python code shipped with '{tiny_model}' will run" in caplog.text


def test_safetensors_weights_are_preferred_over_a_pickle(tiny_model: Path, tmp_path: Path) -> None:
    import torch

    from promptsearch.models.runtime import ModelRuntime
    from promptsearch.space.spec import ModelSpec

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle: loading this would fail")
    runtime = ModelRuntime(ModelSpec(name=str(folder)), ["a", "b"], torch.device("cpu"))
    assert runtime.model.config.hidden_size == 32


def test_an_interrupted_write_leaves_the_old_file_and_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "best_prompt.yaml"
    target.write_text("old content\n")

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new content\n" * 1000)
    assert target.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["best_prompt.yaml"]


def test_hand_edited_export_is_refused_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "best_prompt.yaml"
    path.write_text("format: promptsearch/best-prompt@1\nname: x\ntrain: {learning_rate: fast}\n")
    with pytest.raises(promptsearch.ConfigError) as info:
        promptsearch.load_prompt_config(path)
    assert f"{path}: train.learning_rate:" in str(info.value)
    assert "export it again" in str(info.value)


def test_mask_url() -> None:
    assert mask_url(PG) == "postgresql://root:***@127.0.0.1:5432/test"
    assert mask_url("sqlite:///runs/x/study.db") == "sqlite:///runs/x/study.db"
    assert mask_url("postgresql://root@host/db") == "postgresql://root@host/db"
    assert SECRET not in scrub(f"password {SECRET} rejected for {PG}", PG)
    query = f"postgresql://127.0.0.1/test?user=root&password={SECRET}"
    assert mask_url(query) == "postgresql://127.0.0.1/test?user=root&password=***"
    assert SECRET not in scrub(f"login failed ({SECRET})", query)


def test_unreachable_storage_message_hides_the_password(
    tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://root:{SECRET}@127.0.0.1:1/test"
    assert main(["run", str(tiny_space), "--storage", url, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "root:***@127.0.0.1:1" in err and SECRET not in err


@pytest.mark.skipif(not postgres_reachable(), reason="no PostgreSQL server at 127.0.0.1:5432 (database test)")
def test_a_password_from_the_environment_never_reaches_outputs(
    tiny_space: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"secret-{os.getpid()}"
    monkeypatch.setenv("PROMPTSEARCH_STORAGE", PG)  # trust auth: the server ignores the password
    out = tmp_path / "run"
    try:
        code = main(
            [
                "run",
                str(tiny_space),
                "--study-name",
                name,
                "--n-trials",
                "1",
                "--final-seeds",
                "1",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        assert code == 0
        printed = capsys.readouterr()
        assert SECRET not in printed.out + printed.err
        for file in (f for f in out.rglob("*") if f.is_file()):  # reports, plots and exports
            assert SECRET not in file.read_text(errors="replace"), file
        storage = optuna.storages.RDBStorage(PG)
        study = optuna.load_study(study_name=name, storage=storage)
        system = storage.get_study_system_attrs(storage.get_study_id_from_name(name))
        trials = [[t.user_attrs, t.system_attrs] for t in study.trials]
        stored = json.dumps([study.user_attrs, system, trials], default=str)
        assert SECRET not in stored
    finally:
        optuna.delete_study(study_name=name, storage=PG)
