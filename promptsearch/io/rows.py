"""Read the rows of a local data file under one rule, for training splits and ``predict`` input alike.

A row either comes back exactly as the file holds it, or with an ``error`` that names the file, the line
(or row) and the field, says what was expected and found, and how to fix it. Nothing is replaced or
dropped silently. The rule:

* The file is UTF-8. A JSON Lines line, or a CSV field, that is not UTF-8 is that row's error.
* JSON Lines are split on ``\\n`` only (``\\r\\n`` too), so U+2028, U+0085 and the other Unicode line
  separators stay inside their strings. Each non-blank line is one JSON object under I-JSON (RFC 7493):
  no ``NaN`` or ``Infinity`` (they are not JSON), no number beyond the range of a 64-bit float
  (±1.8e308), no lone surrogate (``"\\ud800"``: not Unicode text, it cannot be written as UTF-8), no key
  twice in one object, and no nesting deeper than :data:`MAX_DEPTH`.
* A ``.json`` file that starts with ``[`` is one JSON array of such objects; any other is JSON Lines.
* CSV and TSV are read with Python's ``csv`` module in strict mode, every value a string as written. In a
  CSV file, a quote that is opened and not closed where a field ends (it would merge the rows that follow
  into one field) makes the whole file unreadable: :class:`DataError`, naming the lines. TSV has no
  quoting (one row per line, as GLUE's files are written), so a quote there is part of the text. A header
  that names a column twice is refused.
* Parquet is read by record batches with pyarrow; a string that is not UTF-8 is that row's error.

The text fields a prompt reads must be non-empty strings (:func:`text_problem`), whatever the source.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
import reprlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptsearch.errors import DataError

__all__ = [
    "EXTENSIONS",
    "MAX_DEPTH",
    "Row",
    "describe_value",
    "iter_rows",
    "json_row_problem",
    "parse_json_object",
    "short_repr",
    "text_problem",
]

EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
MAX_DEPTH = 100
"""Arrays and objects nest at most this deep in a row (the row itself is level 1)."""
Progress = Callable[[int, int, int], None]  # (bytes, or rows for Parquet, done; their total; rows read)

_SURROGATE = re.compile("[\ud800-\udfff]")
_FLOAT_DIGITS = len(str(int(sys.float_info.max)))  # 309: an integer with more digits is out of a float's range
_BOM = b"\xef\xbb\xbf"


@dataclass
class Row:
    """One row: its line in the file (its first line; the row number for Parquet and JSON arrays), its
    values, and why it cannot be used (a message that names the file and line), or None."""

    number: int
    record: dict[str, Any]
    error: str | None = None


# --- describing values in messages -----------------------------------------------------------------


class _Short(reprlib.Repr):
    """``repr`` cut short, safe for any value: no deep recursion, no 4300-digit limit, surrogates escaped."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 60, 60, 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


_SHORT = _Short()


def short_repr(value: Any) -> str:
    """``repr(value)`` cut short, printable for any value (deep nesting, huge integers, lone surrogates)."""
    return _SHORT.repr(value)


def describe_value(value: Any) -> str:
    """``"str '  '"``, ``"int 3"``, ``"list [[[...]]]"``: a value's type and its :func:`short_repr`."""
    return f"{type(value).__name__} {short_repr(value)}"


def _lone_surrogate(text: str) -> str | None:
    """Where ``text`` holds a lone surrogate, in words, or None."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return f"a lone surrogate (U+{ord(found.group()):04X} at character {found.start() + 1})"


def text_problem(name: str, record: Mapping[str, Any]) -> str | None:
    """Why ``record`` cannot give the text field ``name`` to a prompt, or None.

    A text field must be a string with something besides white space, that is Unicode text (no lone
    surrogate), so that it can be tokenized and written back as UTF-8.
    """
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        found = "it missing" if name not in record else describe_value(value)
        return f"text field '{name}' must be a non-empty string, but found {found}"
    surrogate = _lone_surrogate(value)
    if surrogate is not None:
        return (
            f"text field '{name}' holds {surrogate}, which is not Unicode text; "
            "remove it (in JSON, a \\ud800-\\udbff escape must be followed by a \\udc00-\\udfff one)"
        )
    return None


# --- one JSON object under the rule ----------------------------------------------------------------


@dataclass(frozen=True)
class _NotAllowed:
    """Put by the parser where a value breaks the rule; :func:`json_row_problem` reports it with its field."""

    reason: str


def _constant(name: str) -> _NotAllowed:
    return _NotAllowed(f"is {name}, which is not JSON; write null, or quote it as a string")


def _float(text: str) -> float | _NotAllowed:
    value = float(text)
    if math.isinf(value):
        return _NotAllowed(
            f"is the number {_SHORT.repr(text)[1:-1]}, beyond the range of a 64-bit float (±1.8e308); "
            "quote it as a string"
        )
    return value


def _int(text: str) -> int | _NotAllowed:
    digits = len(text) - text.startswith("-")
    if digits < _FLOAT_DIGITS or (digits == _FLOAT_DIGITS and abs(int(text)) <= sys.float_info.max):
        return int(text)
    return _NotAllowed(
        f"is an integer of {digits} digits, beyond the range of a 64-bit float (±1.8e308); quote it as a string"
    )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _NotAllowed:
    record = dict(pairs)
    if len(record) < len(pairs):
        twice = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
        return _NotAllowed(f"has the key {short_repr(twice)} more than once; keep one")
    return record


def _field(path: str) -> str:
    return f"field '{path}' " if path else "the row "


def json_row_problem(value: Any) -> str | None:
    """The first place where a parsed row breaks the rule (see the module's docstring), or None."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, _NotAllowed):
            return _field(path) + item.reason
        if isinstance(item, str):
            surrogate = _lone_surrogate(item)
            if surrogate is not None:
                return (
                    f"{_field(path)}holds {surrogate}, which is not Unicode text and cannot be written as UTF-8; "
                    "remove it (a \\ud800-\\udbff escape must be followed by a \\udc00-\\udfff one)"
                )
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            return f"{_field(path)}is nested more than {MAX_DEPTH} levels deep; flatten it"
        if isinstance(item, list):
            children = [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item)]
        else:
            children = []
            for key, v in item.items():
                surrogate = _lone_surrogate(key)
                if surrogate is not None:
                    return f"the key {short_repr(key)} holds {surrogate}, which is not Unicode text; rename it"
                children.append((v, f"{path}.{key}" if path else key, depth + 1))
        stack.extend(reversed(children))
    return None


@functools.cache
def _decoder() -> json.JSONDecoder:
    """One decoder with the rule's hooks for every row (``json.loads`` with hooks builds one per call)."""
    return json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int, object_pairs_hook=_object)


def parse_json_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a JSON object that meets the rule, else ``(None, what is wrong and how to fix it)``."""
    try:
        value = _decoder().decode(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
    except RecursionError:
        return None, f"the row is nested more than {MAX_DEPTH} levels deep; flatten it"
    if not isinstance(value, dict | _NotAllowed):
        return None, f"expected a JSON object, but found {type(value).__name__}"
    problem = json_row_problem(value)
    if problem is not None:
        return None, problem
    assert isinstance(value, dict)
    return value, None


# --- the readers -----------------------------------------------------------------------------------


def iter_rows(path: Path, *, where: str | None = None, progress: Progress | None = None) -> Iterator[Row]:
    """The rows of ``path``, one at a time, under the rule.

    Problems with one row come back as that row's ``error`` (naming ``path`` and the line); problems with
    the whole file raise :class:`DataError` prefixed with ``where`` (default: the path).
    ``progress(done, total, rows)`` is called now and then.
    """
    where = where or str(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl" or (suffix == ".json" and not _is_json_array(path)):
        return _jsonl(path, progress)
    if suffix == ".json":
        return _json_array(path, where)
    if suffix in (".csv", ".tsv"):
        return _delimited(path, "\t" if suffix == ".tsv" else ",", where, progress)
    if suffix == ".parquet":
        return _parquet(path, where, progress)
    raise DataError(f"{where}: unsupported file type '{suffix}'; use one of {', '.join(EXTENSIONS)}")


def _is_json_array(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096)
    return head.removeprefix(_BOM).lstrip(b" \t\r\n").startswith(b"[")


def _jsonl(path: Path, progress: Progress | None) -> Iterator[Row]:
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):  # a binary file splits on b"\n" only
            done += len(raw)
            if progress is not None and number % 256 == 0:
                progress(done, total, number)
            if number == 1:
                raw = raw.removeprefix(_BOM)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Row(number, {}, f"{path}: line {number}: not UTF-8 ({exc.reason}); re-save the file as UTF-8")
                continue
            if not line.strip():
                continue
            record, problem = parse_json_object(line.rstrip("\r\n"))
            if record is None:
                yield Row(number, {}, f"{path}: line {number}: {problem}")
            else:
                yield Row(number, record)


def _json_array(path: Path, where: str) -> Iterator[Row]:
    data = path.read_bytes().removeprefix(_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{where}: line {line}: not UTF-8 ({exc.reason}); re-save the file as UTF-8") from None
    try:
        value = _decoder().decode(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{where}: line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); a .json file holds "
            "one JSON array of objects, or one object per line"
        ) from None
    except RecursionError:
        raise DataError(f"{where}: nested more than {MAX_DEPTH} levels deep; flatten the rows") from None
    if not isinstance(value, list):
        raise DataError(
            f"{where}: expected a JSON array of objects, but found {type(value).__name__}; "
            "write one array, or one object per line (JSON Lines)"
        )
    return _array_rows(path, value)


def _array_rows(path: Path, items: list[Any]) -> Iterator[Row]:
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict | _NotAllowed):
            yield Row(number, {}, f"{path}: row {number}: expected a JSON object, but found {type(item).__name__}")
            continue
        problem = json_row_problem(item)
        if problem is not None:
            yield Row(number, {}, f"{path}: row {number}: {problem}")
        else:
            assert isinstance(item, dict)
            yield Row(number, item)


def _delimited(path: Path, delimiter: str, where: str, progress: Progress | None) -> Iterator[Row]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long texts are normal here; the default stops at 128 KB
    total = path.stat().st_size
    with path.open("rb") as raw:
        # bytes that are not UTF-8 become lone surrogates (U+DC80-U+DCFF), found per field below
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        # TSV has no quoting (GLUE's and the Hub's readers use none): a text that starts with a quote is text
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(text, delimiter=delimiter, strict=True, quoting=quoting)  # type: ignore[arg-type]
        header, end = _header(reader, where)
        for i, (start, fields) in enumerate(_records(reader, where, end)):
            if progress is not None and i % 256 == 0:
                progress(min(raw.tell(), total), total, i)
            yield _delimited_row(path, start, header, fields)


def _records(reader: Any, where: str, end: int) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each non-blank record; quoting that merges rows is refused for the whole file."""
    while True:
        start = end + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines = f"line {start}" if reader.line_num <= start else f"lines {start}-{reader.line_num}"
            raise DataError(
                f"{where}: {lines}: not well-formed CSV ({exc}), so the rows from line {start} on cannot be told "
                "apart (a stray quote merges the rows after it into one field). A field that holds the delimiter, a "
                'quote or a line break must be quoted, with each quote inside it doubled (""); fix the file and run '
                "again"
            ) from None
        end = reader.line_num
        if fields:
            yield start, fields


def _header(reader: Any, where: str) -> tuple[list[str], int]:
    """The column names (the first non-blank record) and the line it ends on."""
    for _start, header in _records(reader, where, 0):
        bad = [name for name in header if _lone_surrogate(name)]
        if bad:
            raise DataError(f"{where}: line {reader.line_num}: the header is not UTF-8; re-save the file as UTF-8")
        twice = sorted(name for name, n in Counter(header).items() if n > 1)
        if twice:
            raise DataError(
                f"{where}: line {reader.line_num}: the header names the column(s) {twice} more than once, so "
                "their values would overwrite each other; give each column its own name"
            )
        return header, reader.line_num
    return [], 0


def _delimited_row(path: Path, start: int, header: Sequence[str], fields: list[str]) -> Row:
    record: dict[str, Any] = dict.fromkeys(header)  # a short row: the missing fields are None, as in csv.DictReader
    problems = []
    not_utf8 = []
    for name, value in zip(header, fields, strict=False):
        if _lone_surrogate(value):
            not_utf8.append(name)  # its value stays None: the row keeps its columns, the error says why
        else:
            record[name] = value
    if not_utf8:
        problems.append(f"not UTF-8 in the column(s) {not_utf8}; re-save the file as UTF-8")
    if len(fields) > len(header):
        problems.append(f"{len(fields) - len(header)} more fields than the header has columns")
    error = f"{path}: line {start}: {'; '.join(problems)}" if problems else None
    return Row(start, record, error)


def _parquet(path: Path, where: str, progress: Progress | None) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own types for damaged files
        raise DataError(f"{where}: not a readable Parquet file ({str(exc).splitlines()[0][:200]})") from None
    names = source.schema_arrow.names
    twice = sorted(name for name, n in Counter(names).items() if n > 1)
    if twice:
        raise DataError(
            f"{where}: the columns {twice} appear more than once, so their values would overwrite each other; "
            "give each column its own name"
        )
    return _parquet_rows(path, source, where, progress)


def _parquet_rows(path: Path, source: Any, where: str, progress: Progress | None) -> Iterator[Row]:
    total = source.metadata.num_rows
    number = 0
    batches = source.iter_batches(batch_size=1024)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a damaged page: pyarrow's own types
            raise DataError(f"{where}: rows after {number}: not readable ({str(exc).splitlines()[0][:200]})") from None
        try:
            records = batch.to_pylist()
        except UnicodeDecodeError:
            records = None
        for i in range(batch.num_rows):
            number += 1
            yield Row(number, records[i]) if records is not None else _parquet_row(path, batch, i, number)
        if progress is not None:
            progress(number, total, number)


def _parquet_row(path: Path, batch: Any, i: int, number: int) -> Row:
    """Row ``i`` of a batch that holds a string that is not UTF-8, column by column."""
    record: dict[str, Any] = {}
    not_utf8 = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            record[name] = column[i].as_py()
        except UnicodeDecodeError:
            record[name] = None
            not_utf8.append(name)
    if not not_utf8:
        return Row(number, record)
    return Row(
        number,
        record,
        f"{path}: row {number}: not UTF-8 in the column(s) {not_utf8}; write those strings as UTF-8, "
        "or store them as binary",
    )
