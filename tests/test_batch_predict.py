"""Predict at scale: streamed JSONL/CSV/Parquet input, batched inference, per-row errors, throughput."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from tiny import save_tiny_model

from promptsearch.cli import main
from promptsearch.inference.batch import iter_input, predict_file_streaming
from promptsearch.inference.predict import Predictor

WORDS = ["a fine film", "a dull mess", "great fun", "terrible acting", "good", "bad plot"]


@pytest.fixture(scope="module")
def model_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model: the tiny BERT fine-tuned 1 epoch with one fixed prompt with one demonstration."""
    return save_tiny_model(tmp_path_factory.mktemp("predict"), tiny_model)


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor(model_dir, device="cpu")


def _rows(n: int) -> list[dict[str, object]]:
    return [{"id": i, "text": WORDS[i % len(WORDS)] + f" {i}"} for i in range(n)]


def test_jsonl_rows_with_problems_get_a_per_row_error_and_the_rest_are_labelled(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = _rows(300)
    lines = [json.dumps(r) for r in rows]
    lines[10] = json.dumps({"id": 10})  # no text field
    lines[20] = json.dumps({"id": 20, "text": "   "})  # empty text
    lines[30] = "{not json"
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    calls: list[tuple[int, int, int]] = []
    stats = predict_file_streaming(
        predictor, src, tmp_path / "out.jsonl", batch_size=32, progress=lambda *a: calls.append(a)
    )
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(out) == 300 and stats.rows == 300 and stats.errors == 3
    assert [o.get("id") for o in out if "id" in o] == [i for i in range(300) if i != 30]  # input order kept
    assert out[10]["prediction"] is None and out[10]["error"] == (
        f"{src}: row 11: text field 'text' must be a non-empty string, but found it missing; "
        "the model's prompt needs ['text']"
    )
    assert "row 21: text field 'text' must be a non-empty string, but found str '   '" in out[20]["error"]
    assert out[30]["error"].startswith(f"{src}: line 31: not valid JSON")
    labelled = [o for o in out if "error" not in o]
    assert len(labelled) == 297
    for o in labelled:
        assert o["prediction"] in ("negative", "positive")
        assert set(o["probabilities"]) == {"negative", "positive"}
        assert math.isclose(sum(o["probabilities"].values()), 1.0, abs_tol=1e-4)
        assert o["probability"] == max(o["probabilities"].values())
    assert stats.rows_per_second > 0 and "rows/s" in stats.summary()
    assert len(calls) >= 1 and calls[-1][1] == src.stat().st_size  # progress over the file's bytes


def test_batched_predictions_equal_one_by_one_predictions(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(40)), encoding="utf-8")
    predict_file_streaming(predictor, src, tmp_path / "a.jsonl", batch_size=1)
    predict_file_streaming(predictor, src, tmp_path / "b.jsonl", batch_size=64)
    a = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [x["prediction"] for x in a] == [x["prediction"] for x in b]
    for x, y in zip(a, b, strict=True):
        assert x["probability"] == pytest.approx(y["probability"], abs=1e-4)


def test_csv_in_csv_out_with_one_probability_column_per_class(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(_rows(50))
        writer.writerow({"id": 50, "text": ""})
    with src.open("a", encoding="utf-8") as fh:
        fh.write("51,fine,extra\n")
    stats = predict_file_streaming(predictor, src, tmp_path / "out.csv", batch_size=16)
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as fh:
        out = list(csv.DictReader(fh))
    assert stats.rows == 52 and stats.errors == 2
    assert list(out[0]) == ["id", "text", "prediction", "probability", "p_negative", "p_positive", "error"]
    assert all(o["prediction"] in ("negative", "positive") and not o["error"] for o in out[:50])
    assert out[50]["prediction"] == "" and "row 52: text field 'text'" in out[50]["error"]  # the file's line 52
    assert out[51]["error"] == f"{src}: line 53: 1 more fields than the header has columns"


def test_parquet_input_streams_by_record_batches(predictor: Predictor, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(_rows(30)), src)
    assert sum(1 for _ in iter_input(src)) == 30
    out = io.StringIO()
    stats = predict_file_streaming(predictor, src, None, stream=out)
    assert stats.rows == 30 and len(out.getvalue().splitlines()) == 30


def test_input_is_read_lazily(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(5)) + "{broken\n", encoding="utf-8")
    rows = iter_input(src)
    first = next(rows)  # a generator: nothing past the first row has been parsed yet
    assert first.number == 1 and first.record["id"] == 0 and first.error is None
    assert [r.error is not None for r in rows] == [False] * 4 + [True]


def test_cli_predict_streams_reports_throughput_and_exits_0_with_bad_rows(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(20)) + '{"id": 99}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["predict", str(model_dir), "--input", str(src), "--output", str(out), "--device", "cpu"]
    assert main([*args, "--batch-size", "8"]) == 0
    text = capsys.readouterr().out
    assert f"wrote predictions to {out}: 21 rows (20 labelled, 1 with an error)" in text and "rows/s" in text
    assert main(["predict", str(model_dir), "--input", str(tmp_path / "in.xml"), "--device", "cpu"]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "in.xml").write_text("<rows/>")
    assert main(["predict", str(model_dir), "--input", str(tmp_path / "in.xml"), "--device", "cpu"]) == 2
    assert "unsupported file type '.xml'" in capsys.readouterr().err
    assert main([*args[:-2], "--output", str(tmp_path / "o.txt"), "--device", "cpu"]) == 2
    assert "expected a .jsonl or .csv file" in capsys.readouterr().err
    assert main(["predict", str(model_dir), "--input", str(src), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 21 and "rows/s" in captured.err  # data on stdout, summary on stderr


def test_csv_output_takes_its_columns_from_the_first_readable_row(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = ["{not json", *(json.dumps(r) for r in _rows(3))]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    predict_file_streaming(predictor, src, tmp_path / "out.csv", batch_size=2)
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as fh:
        out = list(csv.DictReader(fh))
    assert list(out[0])[:2] == ["id", "text"]  # not lost because line 1 could not be read
    assert "line 1: not valid JSON" in out[0]["error"] and out[0]["text"] == ""
    assert [o["id"] for o in out[1:]] == [str(r["id"]) for r in _rows(3)]
    assert all(o["prediction"] for o in out[1:])
