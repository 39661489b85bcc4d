"""Label a file of any size with a saved model: stream the rows, predict in batches, write as you go.

Input: JSON Lines (``.jsonl``, or ``.json`` with one object per line), a JSON array (``.json``), CSV,
TSV or Parquet, read row by row (Parquet by record batches; a JSON array at once) under the same rule
as training data (:mod:`promptsearch.io.rows`), so memory stays flat however large the file. Output,
in the input's order, one row per input row: JSON Lines (default, also to stdout) or CSV
(``--output x.csv``), each row the input row as read plus its ``prediction``, ``probability`` and one
probability per class. A row that cannot be labelled (a missing or empty text field, a line that is
not JSON or not UTF-8, a value JSON does not allow) gets an ``error`` saying which row and why, and the
run goes on. Input columns named like the output's are refused, never overwritten; NaN and ±Infinity
(possible in Parquet) are written as null in JSON. The output file is written next to its target and
moved into place at the end.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, DataError, PromptsearchError
from promptsearch.files import readable_file, writable_file
from promptsearch.io.rows import Progress, Row, iter_rows, text_problem

if TYPE_CHECKING:
    from promptsearch.inference.predict import Prediction, Predictor

__all__ = ["PredictStats", "iter_input", "predict_file_streaming", "row_error"]

OUTPUT_TYPES = (".jsonl", ".json", ".csv")


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


def iter_input(path: str | Path, *, progress: Progress | None = None) -> Iterator[Row]:
    """The rows of ``path``, one at a time, under :mod:`promptsearch.io.rows`'s rule (training's rule).

    ``progress(done, total, rows)`` is called now and then.
    """
    path = Path(path)
    readable_file(path, "--input", error=DataError)
    return iter_rows(path, where=f"--input {path}", progress=progress)


def row_error(record: dict[str, Any], text_fields: Sequence[str], *, source: str, number: int) -> str | None:
    """Why ``record`` cannot be labelled (a text field missing, empty or not Unicode text), or None."""
    for name in text_fields:
        problem = text_problem(name, record)
        if problem is not None:
            return f"{source}: row {number}: {problem}; the model's prompt needs {list(text_fields)}"
    return None


def _finite(value: Any) -> Any:
    """``value`` with NaN and ±Infinity as None (JSON has no such numbers), at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_line(out: dict[str, Any]) -> str:
    try:
        return json.dumps(out, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:  # a NaN or an infinity (from Parquet): JSON's null, never a bare NaN
        return json.dumps(_finite(out), ensure_ascii=False, default=str, allow_nan=False)


class _Writer:
    """JSON Lines or CSV rows to a stream (stdout) or to a temporary file moved into place on close.

    Each row is the input row as read plus the output columns (:attr:`outputs`). An input column with
    the name of an output column is refused (:meth:`admit`), never overwritten.
    """

    def __init__(self, target: Path | None, labels: Sequence[str], stream: IO[str] | None) -> None:
        self.labels = list(labels)
        self.target = target
        self.csv = target is not None and target.suffix.lower() == ".csv"
        self.outputs = (
            ["prediction", "probability", *(f"p_{lab}" for lab in self.labels), "error"]
            if self.csv
            else ["prediction", "probability", "probabilities", "error"]
        )
        self._tmp: str | None = None
        self._columns: list[str] | None = None  # CSV: the input's columns, from the first row that has any
        self._csv_writer: csv.DictWriter[str] | None = None
        self._held: list[dict[str, Any]] = []  # CSV rows before the columns are known
        self.written = 0  # rows handed to the output so far
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

    def admit(self, row: Row, source: str) -> None:
        """Check ``row`` against the output before it is labelled.

        An input column named like an output column is refused for the whole file (:class:`DataError`).
        For CSV output, a row with columns that the first row lacked gets an error: the CSV header is
        already written, and the values would be lost.
        """
        clash = [name for name in row.record if name in self.outputs]
        if clash:
            raise DataError(
                f"--input {source}: row {row.number}: the column(s) {clash} have the names of columns that predict "
                f"writes ({', '.join(self.outputs)}) and would be overwritten; rename them in the input "
                "(e.g. 'prediction' to 'previous_prediction') and run again"
                + (". Nothing was written to --output" if self._tmp is not None else self._already_out())
            )
        if not self.csv or not row.record:
            return
        if self._columns is None:
            self._columns = list(row.record)
            return
        extra = [name for name in row.record if name not in self._columns]
        if extra and row.error is None:
            row.error = (
                f"{source}: row {row.number}: the column(s) {extra} are not among the CSV output's columns, which "
                "come from the first row; give every row the same columns, or write JSON Lines (--output x.jsonl)"
            )

    def _already_out(self) -> str:
        """For standard output, which can't take back a line: how many complete rows came before the refusal."""
        if not self.written:
            return ". Nothing was written"
        return (
            f". The first {self.written} row(s) were already written to standard output, complete and in order; "
            "discard them, or pass --output FILE so that a refused input leaves nothing behind"
        )

    def write(self, row: Row, prediction: Prediction | None) -> None:
        self.written += 1
        out = dict(row.record)
        out["prediction"] = prediction.label if prediction else None
        out["probability"] = round(prediction.probability, 6) if prediction else None
        probs = {lab: round(p, 6) for lab, p in prediction.probabilities.items()} if prediction else None
        if not self.csv:
            out["probabilities"] = probs
            if row.error:
                out["error"] = row.error
            self.fh.write(_json_line(out) + "\n")
            return
        for lab in self.labels:
            out[f"p_{lab}"] = probs[lab] if probs else None
        out["error"] = row.error or ""
        if self._csv_writer is None:
            self._held.append(out)
            if self._columns is not None:
                self._start_csv(self._columns)
            return
        self._csv_writer.writerow(out)

    def _start_csv(self, columns: list[str]) -> None:
        """The header, then the rows held until the columns were known."""
        self._csv_writer = csv.DictWriter(self.fh, fieldnames=[*columns, *self.outputs], extrasaction="ignore")
        self._csv_writer.writeheader()
        self._csv_writer.writerows(self._held)
        self._held.clear()

    def close(self, *, ok: bool) -> None:
        if self._held:  # no row had any column (all unreadable): the columns are the output's own
            self._start_csv(self._columns or [])
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


def _not_finite(prediction: Prediction) -> bool:
    return not all(math.isfinite(p) for p in prediction.probabilities.values())


def predict_file_streaming(
    predictor: Predictor,
    input_path: str | Path,
    output: str | Path | None,
    *,
    batch_size: int = 64,
    stream: IO[str] | None = None,
    progress: Progress | None = None,
) -> PredictStats:
    """Label every row of ``input_path`` into ``output`` (or ``stream`` when output is None), in batches.

    Every input row gives exactly one output row, in the input's order: labelled, or with its own ``error``.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, but got {batch_size}")
    task = predictor.export.task
    source = str(input_path)
    rows = iter_input(input_path, progress=progress)
    writer = _Writer(Path(output) if output is not None else None, task.labels, stream)
    stats = PredictStats()
    started = time.perf_counter()
    pending: list[Row] = []

    def predict(rows: list[Row]) -> list[Prediction]:
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
        labelled = {id(r): p for r, p in zip(good, done, strict=True)}
        for r, p in zip(good, done, strict=True):
            if _not_finite(p):
                r.error = (
                    f"{source}: row {r.number}: the model gave probabilities that are not numbers "
                    f"({p.probabilities}); run it in fp32 (model.precision: fp32) or on another device"
                )
        for r in pending:
            writer.write(r, None if r.error else labelled[id(r)])
            stats.rows += 1
            stats.errors += r.error is not None
        pending.clear()

    ok = False
    try:
        for row in rows:
            writer.admit(row, source)
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
