"""Label a file of any size with a saved model: stream the rows, predict in batches, write as you go.

Input: JSON Lines (``.jsonl``, or ``.json`` with one object per line), CSV, TSV or Parquet, read
row by row (Parquet by record batches), so memory stays flat however large the file. Output, in the
input's order: JSON Lines (default, also to stdout) or CSV (``--output x.csv``), each row with its
``prediction``, ``probability`` and one probability per class. A row that cannot be labelled (a
missing or empty text field, a line that is not JSON) gets an ``error`` saying which row and why,
and the run goes on. The output file is written next to its target and moved into place at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, DataError, PromptsearchError
from promptsearch.files import readable_file, writable_file

if TYPE_CHECKING:
    from promptsearch.inference.predict import Prediction, Predictor

__all__ = ["PredictStats", "iter_input", "predict_file_streaming", "row_error"]

INPUT_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
OUTPUT_TYPES = (".jsonl", ".json", ".csv")
Progress = Callable[[int, int, int], None]  # (bytes, or rows for Parquet, done; their total; rows read)


@dataclass
class PredictStats:
    """What a streaming prediction did: rows written, rows with an error, and the time it took."""

    rows: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.rows} rows ({self.rows - self.errors} labelled, {self.errors} with an error) in "
            f"{self.seconds:.1f} s: {self.rows_per_second:,.0f} rows/s"
        )


@dataclass
class _Row:
    number: int
    record: dict[str, Any]
    error: str | None = None


def _jsonl(path: Path, progress: Progress | None) -> Iterator[_Row]:
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            done += len(raw)
            if progress is not None and number % 256 == 0:
                progress(done, total, number)
            line = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield _Row(number, {}, f"{path}: line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(record, dict):
                yield _Row(number, {}, f"{path}: line {number}: expected a JSON object, found {type(record).__name__}")
                continue
            yield _Row(number, record)


def _delimited(path: Path, delimiter: str, progress: Progress | None) -> Iterator[_Row]:
    total = path.stat().st_size
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long texts are normal here; the default stops at 128 KB
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.DictReader(text, delimiter=delimiter)
        try:
            yield from _csv_rows(path, reader, raw, total, progress)
        except csv.Error as exc:
            raise DataError(f"--input {path}: line {reader.line_num}: not readable as CSV ({exc})") from None


def _csv_rows(
    path: Path, reader: csv.DictReader[str], raw: IO[bytes], total: int, progress: Progress | None
) -> Iterator[_Row]:
    for i, record in enumerate(reader):
        if progress is not None and i % 256 == 0:
            progress(min(raw.tell(), total), total, i)
        extra = record.pop(None, None)
        row = _Row(reader.line_num, {k: v for k, v in record.items() if k is not None})
        if extra:
            row.error = f"{path}: line {reader.line_num}: {len(extra)} more fields than the header has columns"
        yield row


def _parquet(path: Path, progress: Progress | None) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own types for damaged files
        raise DataError(f"--input {path}: not a readable Parquet file ({str(exc).splitlines()[0][:200]})") from None
    total = source.metadata.num_rows
    number = 0
    for batch in source.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            number += 1
            yield _Row(number, record)
        if progress is not None:
            progress(number, total, number)


def iter_input(path: str | Path, *, progress: Progress | None = None) -> Iterator[_Row]:
    """The rows of ``path``, one at a time; ``progress(done, total, rows)`` is called now and then."""
    path = Path(path)
    readable_file(path, "--input", error=DataError)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _jsonl(path, progress)
    if suffix in (".csv", ".tsv"):
        return _delimited(path, "\t" if suffix == ".tsv" else ",", progress)
    if suffix == ".parquet":
        return _parquet(path, progress)
    raise DataError(f"--input {path}: unsupported file type '{suffix}'; use one of {', '.join(INPUT_TYPES)}")


def row_error(record: dict[str, Any], text_fields: Sequence[str], *, source: str, number: int) -> str | None:
    """Why ``record`` cannot be labelled (a missing or empty text field), or None."""
    for name in text_fields:
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            found = "it missing" if name not in record else f"{type(value).__name__} {value!r}"[:80]
            return (
                f"{source}: row {number}: text field '{name}' must be a non-empty string, but found {found}; "
                f"the model's prompt needs {list(text_fields)}"
            )
    return None


class _Writer:
    """JSON Lines or CSV rows to a stream (stdout) or to a temporary file moved into place on close."""

    def __init__(self, target: Path | None, labels: Sequence[str], stream: IO[str] | None) -> None:
        self.labels = list(labels)
        self.target = target
        self.csv = target is not None and target.suffix.lower() == ".csv"
        self._tmp: str | None = None
        self._csv_writer: csv.DictWriter[str] | None = None
        self._held: list[dict[str, Any]] = []  # CSV rows before the first readable one
        if target is None:
            assert stream is not None
            self.fh = stream
        else:
            if target.suffix.lower() not in OUTPUT_TYPES:
                raise ConfigError(f"--output {target}: expected a .jsonl or .csv file, found '{target.suffix}'")
            if target.is_dir():
                raise ConfigError(f"--output {target}: this is a folder; give the path of a file")
            target = self.target = writable_file(target, "--output")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            except OSError as exc:
                raise ConfigError(f"--output {target}: cannot write there ({exc.strerror or exc})") from None
            self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def write(self, row: _Row, prediction: Prediction | None) -> None:
        out = dict(row.record)
        out["prediction"] = prediction.label if prediction else None
        out["probability"] = round(prediction.probability, 6) if prediction else None
        probs = {lab: round(p, 6) for lab, p in prediction.probabilities.items()} if prediction else None
        if self.csv:
            for lab in self.labels:
                out[f"p_{lab}"] = probs[lab] if probs else None
            out["error"] = row.error or ""
            if self._csv_writer is None:
                # the columns come from the first row that was read (an unreadable line has no fields)
                self._held.append(out)
                if not row.record:
                    return
                self._csv_writer = csv.DictWriter(self.fh, fieldnames=list(out), extrasaction="ignore")
                self._csv_writer.writeheader()
                self._csv_writer.writerows(self._held)
                self._held.clear()
                return
            self._csv_writer.writerow(out)
        else:
            out["probabilities"] = probs
            if row.error:
                out["error"] = row.error
            self.fh.write(json.dumps(out, ensure_ascii=False, default=str) + "\n")

    def close(self, *, ok: bool) -> None:
        if self._held:  # no row was readable: the columns are the output's own
            self._csv_writer = csv.DictWriter(self.fh, fieldnames=list(self._held[0]), extrasaction="ignore")
            self._csv_writer.writeheader()
            self._csv_writer.writerows(self._held)
            self._held.clear()
        if self._tmp is None:
            self.fh.flush()
            return
        self.fh.close()
        if ok:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp, 0o666 & ~umask)
            assert self.target is not None
            os.replace(self._tmp, self.target)
        else:
            Path(self._tmp).unlink(missing_ok=True)


def predict_file_streaming(
    predictor: Predictor,
    input_path: str | Path,
    output: str | Path | None,
    *,
    batch_size: int = 64,
    stream: IO[str] | None = None,
    progress: Progress | None = None,
) -> PredictStats:
    """Label every row of ``input_path`` into ``output`` (or ``stream`` when output is None), in batches."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, but got {batch_size}")
    task = predictor.export.task
    source = str(input_path)
    rows = iter_input(input_path, progress=progress)
    writer = _Writer(Path(output) if output is not None else None, task.labels, stream)
    stats = PredictStats()
    started = time.perf_counter()
    pending: list[_Row] = []

    def predict(rows: list[_Row]) -> list[Prediction]:
        """Predictions for ``rows``; a row that cannot be rendered gets its error and no prediction."""
        try:
            return predictor.predict_rows([r.record for r in rows], source=source) if rows else []
        except PromptsearchError as exc:
            if len(rows) == 1:
                rows[0].error = f"{source}: row {rows[0].number}: {exc}"
                return []
        return [p for r in rows for p in predict([r])]  # find the row, label the others

    def flush() -> None:
        good = [r for r in pending if r.error is None]
        done = predict(good)
        good = [r for r in good if r.error is None]
        assert len(done) == len(good)
        predictions = iter(done)
        for r in pending:
            writer.write(r, None if r.error else next(predictions))
            stats.rows += 1
            stats.errors += r.error is not None
        pending.clear()

    ok = False
    try:
        for row in rows:
            if row.error is None:
                row.error = row_error(row.record, task.text_fields, source=source, number=row.number)
            pending.append(row)
            if len(pending) >= 4 * batch_size or sum(r.error is None for r in pending) >= batch_size:
                flush()
        flush()
        ok = True
    finally:
        writer.close(ok=ok)
    stats.seconds = time.perf_counter() - started
    return stats
