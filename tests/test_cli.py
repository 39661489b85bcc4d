"""The command line, in-process through ``main([...])`` and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptsearch import api
from promptsearch.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO / "search_spaces" / "sst2.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: space 'sst2'") and "train 32" in out


def test_python_dash_m_promptsearch_is_the_command(tmp_path: Path) -> None:
    """``python -m promptsearch`` runs cli.main: its help, and its exit code for bad input (2, no traceback)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    ok = subprocess.run(
        [sys.executable, "-m", "promptsearch", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert "init" in ok.stdout and "predict" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "promptsearch", "validate", "missing.yaml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert bad.returncode == 2 and "no such search-space file" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_bad_space_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    text = (REPO / "search_spaces" / "sst2.yaml").read_text().replace("learning_rate:", "lerning_rate:")
    text = text.replace("../data", str(REPO / "data"))
    bad.write_text(text)
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'learning_rate'?" in err and "Traceback" not in err
    assert f"{bad}:" in err


def test_render_prints_prompts_with_token_counts(tiny_space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "render",
            str(tiny_space),
            "--set",
            "prompt.template=review",
            "--set",
            "prompt.demonstrations.count=1",
            "--n",
            "2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("Review:") == 4  # one demonstration + the query, twice
    assert "tokens" in out and '"prompt.template": "review"' in out


def test_render_unknown_set_key(tiny_space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(tiny_space), "--set", "prompt.templat=review"]) == 2
    assert "did you mean 'prompt.template'?" in capsys.readouterr().err


def test_bad_storage_url(tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tiny_space), "--storage", "nosuchdb://x", "--out", str(tmp_path / "run")]) == 2
    assert "expected a database URL" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written


def test_run_report_export_in_process(
    tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    model = tmp_path / "model"
    args = ["run", str(tiny_space), "--n-trials", "2", "--final-seeds", "1", "--out", str(out), "--device", "cpu"]
    assert main([*args, "--save-model", str(model)]) == 0
    text = capsys.readouterr().out
    assert "plain fine-tuning baseline" in text and "best" in text
    assert (model / "best_prompt.yaml").is_file() and (model / "config.json").is_file()
    rows = tmp_path / "new.jsonl"
    rows.write_text('{"text": "a fine film"}\n{"text": "a dull mess"}\n')
    assert main(["predict", str(model), "--input", str(rows), "--output", str(tmp_path / "pred.jsonl")]) == 0
    preds = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [p["text"] for p in preds] == ["a fine film", "a dull mess"]
    assert all(p["prediction"] in ("negative", "positive") and 0.5 <= p["probability"] <= 1 for p in preds)
    first = json.loads((out / "report.json").read_text())
    (out / "report.json").unlink()

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("report should reuse the stored final evaluation, not load a model")

    monkeypatch.setattr(api, "_make_runner", no_model)
    assert main(["report", "--out", str(out)]) == 0
    second = json.loads((out / "report.json").read_text())
    assert second["best"]["test"] == first["best"]["test"]
    assert main(["export", "--out", str(out), "-o", str(tmp_path / "b.yaml")]) == 0
    assert (tmp_path / "b.yaml").read_text().startswith("# promptsearch best prompt")


@pytest.mark.slow
def test_cli_as_subprocess(tiny_space: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "promptsearch.cli",
            "run",
            str(tiny_space),
            "--n-trials",
            "1",
            "--final-seeds",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "plain fine-tuning baseline" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "promptsearch.cli", "validate", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "no such search-space file" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_refuses_more_demonstrations_than_train_rows(
    tiny_space: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tiny_space.read_text().replace("count: {low: 0, high: 2}", "count: {low: 0, high: 40}")
    tiny_space.write_text(text)
    assert main(["validate", str(tiny_space)]) == 2
    err = capsys.readouterr().err
    assert "prompt.demonstrations.count: up to 40 demonstrations per prompt, but the train split has 32 rows" in err


def test_predict_on_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "in.jsonl"
    rows.write_text('{"text": "x"}\n')
    assert main(["predict", str(tmp_path), "--input", str(rows)]) == 2
    assert "not a promptsearch model folder" in capsys.readouterr().err


def test_a_bad_option_value_is_a_usage_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(REPO / "search_spaces" / "sst2.yaml"), "--n-trials", "abc"]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--n-trials'" in err and "Traceback" not in err


def test_save_model_refuses_a_file_or_a_foreign_folder_before_training(
    tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("important")
    for target, message in ((afile, "this is a file"), (folder, "the folder is not empty")):
        out = tmp_path / f"run-{target.name}"
        assert main(["run", str(tiny_space), "--out", str(out), "--save-model", str(target)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()  # refused before any study or training
    assert (folder / "notes.txt").read_text() == "important"
    out = tmp_path / "run-0"
    assert (
        main(["run", str(tiny_space), "--out", str(out), "--final-seeds", "0", "--save-model", str(tmp_path / "m")])
        == 2
    )
    assert "needs a test split and --final-seeds >= 1" in capsys.readouterr().err and not out.exists()


def test_paths_that_cannot_be_used_are_one_message(
    tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["run", str(tiny_space), "--out", str(afile)]) == 2
    assert "this is a file; give a folder for the run" in capsys.readouterr().err
    assert main(["run", str(tiny_space), "--storage", f"journal://{afile}/x.journal"]) == 2
    assert "cannot create the folder" in capsys.readouterr().err
    assert main(["run", str(tiny_space), "--storage", "sqlite:///:memory:", "--out", str(tmp_path / "r")]) == 2
    assert "in-memory study" in capsys.readouterr().err
    assert main(["report", "--storage", f"sqlite:///{tmp_path / 'nope' / 'x.db'}", "--study-name", "x"]) == 2
    assert "no such database file" in capsys.readouterr().err and not (tmp_path / "nope").exists()
    assert main(["run", str(tiny_space), "--device", "tpu", "--out", str(tmp_path / "r2")]) == 2
    assert "is not a device" in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_a_study_not_made_by_promptsearch_is_refused(
    tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    foreign = optuna.create_study(study_name="f", storage=url, direction="maximize")
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert main(["run", str(tiny_space), "--storage", url, "--study-name", "f", "--out", str(tmp_path / "r")]) == 2
    assert "was not created by promptsearch" in capsys.readouterr().err
    assert len(optuna.load_study(study_name="f", storage=url).trials) == 2


def test_a_missing_database_driver_says_what_to_install(
    tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sqlalchemy")
    try:
        import MySQLdb  # noqa: F401  (SQLAlchemy's default driver for mysql://)
    except ImportError:
        pass
    else:
        pytest.skip("a MySQL driver is installed here")
    out = tmp_path / "run"
    assert main(["run", str(tiny_space), "--storage", "mysql://root@127.0.0.1:3306/test", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the database driver is not installed" in err and "Traceback" not in err and not out.exists()
