"""The exported best prompt: round trip, re-run as a one-point space, save a model and predict."""

from __future__ import annotations

from pathlib import Path

import pytest

import promptsearch
from promptsearch.api import search, train_config
from promptsearch.errors import ConfigError
from promptsearch.inference.predict import Predictor
from promptsearch.io.export import write_prompt_config


@pytest.fixture(scope="module")
def finished_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import tiny_data, tiny_space_text

    root = tmp_path_factory.mktemp("export")
    data = tiny_data(root / "data")
    # demonstrations fixed at 1 so the export carries its demonstration pool
    space = root / "space.yaml"
    text = tiny_space_text(tiny_model, data, n_trials=3).replace("count: {low: 0, high: 2}", "count: 1")
    # a baseline that cannot learn (tiny learning rate), so a prompt trial wins and is exported
    text = text.replace("baseline:\n  learning_rate: 3.0e-3", "baseline:\n  learning_rate: 1.0e-7")
    space.write_text(text)
    search(space, out=root / "run", device="cpu", final_seeds=1)
    return root / "run"


def test_export_round_trips_unchanged(finished_run: Path, tmp_path: Path) -> None:
    path = finished_run / "best_prompt.yaml"
    loaded = promptsearch.load_prompt_config(path)
    again = write_prompt_config(loaded, tmp_path / "again.yaml")
    assert again.read_text() == path.read_text()
    assert promptsearch.load_prompt_config(again) == loaded
    assert set(loaded.versions) == {"promptsearch", "optuna", "transformers", "torch"}
    assert len(loaded.data_fingerprint) == 64
    assert loaded.prompt.demonstrations.count == 1
    assert len(loaded.demonstration_pool) == 32


def test_export_command_writes_the_same_config(finished_run: Path, tmp_path: Path) -> None:
    target = promptsearch.export_best(out=finished_run, output=tmp_path / "exported.yaml")
    assert (
        promptsearch.load_prompt_config(target).prompt
        == promptsearch.load_prompt_config(finished_run / "best_prompt.yaml").prompt
    )


def test_damaged_export_gets_a_clear_message(finished_run: Path, tmp_path: Path) -> None:
    text = (finished_run / "best_prompt.yaml").read_text()
    cut = tmp_path / "cut.yaml"
    cut.write_text(text[: len(text) // 3])
    with pytest.raises(ConfigError, match="export it again"):
        promptsearch.load_prompt_config(cut)
    other = tmp_path / "other.yaml"
    other.write_text("name: x\n")
    with pytest.raises(ConfigError, match="not a promptsearch best-prompt file"):
        promptsearch.load_prompt_config(other)


def test_run_accepts_an_exported_config(finished_run: Path, tmp_path: Path) -> None:
    exported = promptsearch.load_prompt_config(finished_run / "best_prompt.yaml")
    assert exported.prompt.template is not None
    result = search(finished_run / "best_prompt.yaml", out=tmp_path / "rerun", device="cpu", final_seeds=1)
    assert len(result.study.trials) == 2  # baseline + the one point
    assert result.study.trials[1].params == {}
    assert result.report.best is not None and result.best_test is not None


def test_an_exported_fixed_demonstration_set_is_the_one_rerun(finished_run: Path) -> None:
    import optuna

    from promptsearch.io.export import export_to_space
    from promptsearch.space.dimensions import Fixed
    from promptsearch.space.sampling import sample_config

    exported = promptsearch.load_prompt_config(finished_run / "best_prompt.yaml")
    demos = exported.prompt.demonstrations.model_copy(update={"selection": "fixed", "set": 2})
    fixed = exported.model_copy(update={"prompt": exported.prompt.model_copy(update={"demonstrations": demos})})
    space = export_to_space(fixed)
    assert space.params["prompt.demonstrations.set"] == Fixed(2)  # `sets: [2]`: that set, not the first
    assert sample_config(optuna.trial.FixedTrial({}), space).prompt.demonstrations == demos


def test_train_save_model_then_predict(finished_run: Path, tmp_path: Path) -> None:
    exported = promptsearch.load_prompt_config(finished_run / "best_prompt.yaml")
    assert exported.prompt.template is not None and exported.prompt.demonstrations.count == 1
    model_dir = tmp_path / "model"
    scores = train_config(finished_run / "best_prompt.yaml", save_model=model_dir, device="cpu")
    assert 0.0 <= scores["dev"] <= 1.0 and scores["test"] is not None
    assert (model_dir / "best_prompt.yaml").is_file() and (model_dir / "model.safetensors").is_file()
    predictor = Predictor(model_dir, device="cpu")
    rows = [{"text": "a great and moving film"}, {"text": "dull , tedious and bad"}]
    preds = predictor.predict_rows(rows)
    assert [p.label in ("negative", "positive") for p in preds] == [True, True]
    for p in preds:
        assert p.probability == pytest.approx(max(p.probabilities.values()))
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_an_interrupted_model_save_leaves_nothing_half_written(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promptsearch.inference.predict as predict_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "write_prompt_config", interrupted)  # the last file of the folder
    target = tmp_path / "models" / "best"
    with pytest.raises(KeyboardInterrupt):
        train_config(finished_run / "best_prompt.yaml", save_model=target, device="cpu")
    assert not target.exists()
    assert list((tmp_path / "models").iterdir()) == []


def test_a_plain_baseline_export_trains_and_predicts(finished_run: Path, tmp_path: Path) -> None:
    from promptsearch.space.config import PromptConfig

    exported = promptsearch.load_prompt_config(finished_run / "best_prompt.yaml")
    plain = exported.model_copy(
        update={
            "prompt": PromptConfig(label_words={"negative": "negative", "positive": "positive"}),
            "demonstration_pool": [],
        }
    )
    path = write_prompt_config(plain, tmp_path / "plain.yaml")
    with pytest.raises(promptsearch.ConfigError, match="retrain it with `promptsearch train`"):
        search(path, out=tmp_path / "rerun", device="cpu")
    scores = train_config(path, save_model=tmp_path / "model", device="cpu")
    assert scores["test"] is not None
    preds = Predictor(tmp_path / "model", device="cpu").predict_rows([{"text": "a fine film"}])
    assert preds[0].label in ("negative", "positive")


def test_export_to_a_folder_is_one_message(finished_run: Path, tmp_path: Path) -> None:
    with pytest.raises(promptsearch.ConfigError, match="is a folder; give the path of a file"):
        promptsearch.export_best(out=finished_run, output=tmp_path)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_save_model_never_deletes_what_it_did_not_write(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run folder, the current folder and a folder of user files are refused before training, untouched."""
    import os

    from promptsearch.cli import main
    from promptsearch.inference.predict import MODEL_MARKER

    config = finished_run / "best_prompt.yaml"
    user = tmp_path / "user"
    user.mkdir()
    (user / "best_prompt.yaml").write_text("mine\n")  # looks like a save, but is not one
    (user / "notes.txt").write_text("important\n")
    # a save's marker in a folder that also holds a user's file: still refused
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / MODEL_MARKER).write_text('{"files": ["best_prompt.yaml"]}\n')
    (fake / "best_prompt.yaml").write_text("x\n")
    (fake / "thesis.tex").write_text("years of work\n")
    monkeypatch.chdir(user)
    for target in (finished_run, user, Path("."), fake):
        before = _snapshot(target)
        for command in (["train", str(config)], ["run", str(config), "--out", str(tmp_path / "out")]):
            assert main([*command, "--save-model", str(target)]) == 2
            assert _snapshot(target) == before
        assert not (tmp_path / "out").exists()  # refused before the study was created
    # a previous save is replaced, and its files get the permissions of any new file
    saved = tmp_path / "saved"
    assert main(["train", str(config), "--save-model", str(saved)]) == 0
    assert (saved / MODEL_MARKER).is_file() and (saved / "model.safetensors").is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert (saved / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert main(["train", str(config), "--save-model", str(saved)]) == 0
    assert (saved / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".saved")] == []
    # once a user adds a file to a save, it is theirs: the next save is refused
    (saved / "my-notes.txt").write_text("keep\n")
    assert main(["train", str(config), "--save-model", str(saved)]) == 2
    assert (saved / "my-notes.txt").read_text() == "keep\n"
