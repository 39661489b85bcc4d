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
