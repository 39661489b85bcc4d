"""Hostile data rows (issue #18, classes 3 and 7), generated with hypothesis.

Wherever rows are read (training splits, rows in memory, ``predict`` input), a row either comes back
exactly as written or is refused with one message naming the file, the line (or row) and the field.
``predict`` gives exactly one output row per input row, labelled or with its own error; its output is
valid JSON; it never alters or overwrites an input value. The model-based properties run few examples
on the tiny real model (see tests/tiny.py); the parser properties run more.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from test_fuzz import fuzz
from tiny import save_tiny_model, tiny_data, tiny_space_text

from promptsearch.cli import main
from promptsearch.errors import DataError
from promptsearch.inference.batch import predict_file_streaming
from promptsearch.inference.predict import Predictor
from promptsearch.io.data import load_split, make_examples, read_rows, task_data
from promptsearch.io.rows import MAX_DEPTH, parse_json_object
from promptsearch.space.spec import TaskSpec

LABELS = ["negative", "positive"]
TASK = TaskSpec.model_validate({"data": {"dir": "d"}, "labels": LABELS})

# --- what the generators draw from -------------------------------------------------------------------

LINE_BREAKS = "\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e\r\n"  # str.splitlines() splits on every one of these
SPECIALS = LINE_BREAKS + '\t\ufeff",\\{}[]: '
SENTINEL = "\ue000"  # never drawn: marks where invalid UTF-8 bytes are put
BAD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]
chars = st.one_of(st.characters(codec="utf-8", exclude_characters=SENTINEL + "\x00"), st.sampled_from(SPECIALS))
texts = st.text(chars, max_size=12)
readable = st.builds(  # something besides white space, anywhere among the rest
    lambda a, c, b: a + c + b, texts, st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), texts
)
keys = texts.filter(lambda k: k not in ("text", "label"))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)
OUTPUT_NAMES = ["prediction", "probability", "probabilities", "error", "p_negative", "p_positive"]
keys_or_output_names = st.one_of(keys, st.sampled_from(OUTPUT_NAMES))


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def clean_records(draw: st.DrawFn, extra_keys: st.SearchStrategy[str] = keys) -> dict[str, Any]:
    """A row that meets the rule: a readable text, a declared label, more columns of any JSON (nested to the limit)."""
    record: dict[str, Any] = {"text": draw(readable), "label": draw(st.sampled_from(LABELS))}
    record.update(draw(st.dictionaries(extra_keys, json_values, max_size=3)))
    if draw(st.booleans()):
        record["deep"] = nested(draw(st.integers(0, MAX_DEPTH - 1)))  # the row is level 1
    return record


HOSTILE = [
    "surrogate_in_text",
    "surrogate_in_key",
    "surrogate_nested",
    "not_utf8",
    "nan",
    "infinity",
    "big_int",
    "big_float",
    "too_deep",
    "duplicate_key",
    "not_json",
]


def _with(line: str, raw: str) -> str:
    """``line`` (one JSON object) with one more member, written raw."""
    return line[:-1] + f', "x": {raw}' + "}"


def hostile_line(draw: st.DrawFn, record: dict[str, Any], kind: str) -> bytes:
    """One JSONL line (bytes, no line break) that breaks the rule in the way ``kind`` says."""
    surrogate = draw(st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]))
    line = json.dumps(record, ensure_ascii=draw(st.booleans()))
    if kind == "surrogate_in_text":
        at = draw(st.integers(0, len(record["text"])))
        line = json.dumps({**record, "text": record["text"][:at] + surrogate + record["text"][at:]})
    elif kind == "surrogate_in_key":
        line = json.dumps({**record, "k" + surrogate: 1})
    elif kind == "surrogate_nested":
        line = json.dumps({**record, "meta": {"tags": ["ok", surrogate]}})
    elif kind == "not_utf8":
        line = json.dumps({**record, "text": record["text"] + SENTINEL}, ensure_ascii=False)
        return line.encode("utf-8").replace(SENTINEL.encode(), draw(st.sampled_from(BAD_BYTES)))
    elif kind in ("nan", "infinity"):
        line = _with(line, draw(st.sampled_from(["NaN"] if kind == "nan" else ["Infinity", "-Infinity"])))
    elif kind == "big_int":
        line = _with(line, draw(st.sampled_from(["", "-"])) + "9" * draw(st.integers(310, 6000)))
    elif kind == "big_float":
        line = _with(line, draw(st.sampled_from(["1e309", "-2.5E400", "1" + "0" * 400 + ".5"])))
    elif kind == "too_deep":
        depth = draw(st.integers(MAX_DEPTH, 5000))
        line = _with(line, "[" * depth + "]" * depth)
    elif kind == "duplicate_key":
        line = line[:-1] + ', "text": "again"}'
    else:
        line = line[: draw(st.integers(1, len(line) - 1))]
    return line.encode("utf-8")


@st.composite
def jsonl_files(
    draw: st.DrawFn, extra_keys: st.SearchStrategy[str] = keys
) -> tuple[bytes, list[tuple[int, dict[str, Any] | None]]]:
    """A JSON Lines file and, per row, (its line, its record) or (its line, None) for a row that breaks the rule."""
    bom = draw(st.booleans())
    ending = draw(st.sampled_from(["\n", "\r\n"])).encode()
    lines: list[bytes] = []
    rows: list[tuple[int, dict[str, Any] | None]] = []
    for _ in range(draw(st.integers(1, 6))):
        what = draw(st.sampled_from(["clean", "clean", "blank", "hostile"]))
        if what == "blank":
            lines.append(draw(st.sampled_from(["", " ", "\t"])).encode())
            continue
        record = draw(clean_records(extra_keys))
        if what == "clean":
            lines.append(json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8"))
            rows.append((len(lines), record))
        else:
            lines.append(hostile_line(draw, record, draw(st.sampled_from(HOSTILE))))
            rows.append((len(lines), None))
    body = ending.join(lines) + (ending if draw(st.booleans()) else b"")
    return (b"\xef\xbb\xbf" if bom else b"") + body, rows


def strict_json(line: str) -> Any:
    """``json.loads`` that refuses NaN and ±Infinity, as every JSON reader outside Python does."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"not JSON: {name} in {line[:200]!r}")

    return json.loads(line, parse_constant=refuse)


# --- training data: files ------------------------------------------------------------------------------


@fuzz(150, 5000)
@given(file=jsonl_files())
def test_jsonl_rows_load_exactly_or_the_first_bad_line_is_named(
    tmp_path_factory: pytest.TempPathFactory, file: tuple[bytes, list[tuple[int, dict[str, Any] | None]]]
) -> None:
    body, rows = file
    path = tmp_path_factory.mktemp("jsonl") / "train.jsonl"
    path.write_bytes(body)
    bad = [line for line, record in rows if record is None]
    try:
        examples = make_examples(read_rows(path), TASK, str(path))
    except DataError as exc:
        event(str(exc).split(": ", 2)[-1][:25])
        str(exc).encode("utf-8")  # printable: a lone surrogate is shown escaped
        if not rows:  # blank lines only
            assert str(exc) == f"{path}: no rows; the split needs at least one labelled example"
            return
        assert bad, str(exc)
        assert str(exc).startswith(f"{path}: line {bad[0]}: "), str(exc)
        return
    assert not bad
    assert [(ex.row, dict(ex.fields), ex.label) for ex in examples] == [
        (line, {"text": record["text"]}, record["label"]) for line, record in rows if record is not None
    ]


@pytest.mark.parametrize("kind", HOSTILE)
def test_each_kind_of_hostile_line_is_refused_with_its_field(tmp_path: Path, kind: str) -> None:
    @fuzz(3, 100)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        record = {"text": "a fine film", "label": "positive"}
        line = hostile_line(data.draw, record, kind)
        path = tmp_path / "train.jsonl"
        path.write_bytes(json.dumps(record).encode() + b"\n" + line + b"\n")
        with pytest.raises(DataError) as info:
            read_rows(path)
        message = str(info.value)
        assert message.startswith(f"{path}: line 2: "), message
        expected = {
            "surrogate_in_text": "field 'text' holds a lone surrogate",
            "surrogate_in_key": "holds a lone surrogate",
            "surrogate_nested": "field 'meta.tags[1]' holds a lone surrogate",
            "not_utf8": "not UTF-8",
            "nan": "field 'x' is NaN, which is not JSON; write null",
            "infinity": "Infinity, which is not JSON; write null",
            "big_int": "beyond the range of a 64-bit float",
            "big_float": "beyond the range of a 64-bit float",
            "too_deep": f"nested more than {MAX_DEPTH} levels deep",
            "duplicate_key": "the row has the key 'text' more than once; keep one",
            "not_json": "not valid JSON",
        }[kind]
        assert expected in message

    check()


@fuzz(100, 3000)
@given(text=texts, extra=json_values)
def test_line_separators_stay_inside_their_strings(
    tmp_path_factory: pytest.TempPathFactory, text: str, extra: Any
) -> None:
    record = {"text": "x" + text + LINE_BREAKS, "label": "negative", "extra": extra}
    line = json.dumps(record, ensure_ascii=False)
    assert parse_json_object(line) == (record, None)
    path = tmp_path_factory.mktemp("sep") / "train.jsonl"
    path.write_text(line + "\r\n" + line + "\n", encoding="utf-8")
    assert read_rows(path) == [(1, record), (2, record)]


@dataclass
class CsvFile:
    """A generated CSV file: its bytes, each row's first line and cells, and what was broken on purpose."""

    body: bytes
    starts: list[int]
    rows: list[list[str]]
    not_utf8: tuple[int, int] | None  # (row, column) of the cell that holds bytes that are not UTF-8
    stray: int | None  # the row whose first field opens a quote that is never closed

    @property
    def first_bad_line(self) -> int | None:
        bad = [self.starts[i] for i in (self.not_utf8[0] if self.not_utf8 else None, self.stray) if i is not None]
        return min(bad) if bad else None


@st.composite
def csv_files(draw: st.DrawFn, columns: list[str]) -> CsvFile:
    """A CSV file with ``columns`` (the first holds a label) and rows of any text, maybe with a broken cell or quote."""
    stray = draw(st.integers(0, 3)) == 0
    # a stray quote merges the rows after it unless another quote closes it: then no cell holds one,
    # nor anything that needs quoting (the delimiter, a line break), so the quote runs to the end of the file
    cell_chars = chars.filter(lambda c: c not in '",\r\n') if stray else chars
    cells = st.text(cell_chars, max_size=10)
    rows = draw(st.lists(st.lists(cells, min_size=len(columns), max_size=len(columns)), min_size=1, max_size=6))
    for row in rows:
        row[0] = draw(st.sampled_from(LABELS))
    not_utf8 = draw(st.one_of(st.none(), st.tuples(st.integers(0, len(rows) - 1), st.integers(0, len(columns) - 1))))
    if not_utf8 is not None:
        rows[not_utf8[0]][not_utf8[1]] += SENTINEL
    out = io.StringIO()
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    # csv.writer quotes a field that holds a line break only when the break is in its lineterminator
    quoting = csv.QUOTE_ALL if ending == "\n" and not stray else csv.QUOTE_MINIMAL
    writer = csv.writer(out, lineterminator=ending, quoting=quoting)
    writer.writerow(columns)
    starts = []
    for row in rows:
        starts.append(len(re.findall(r"\r\n|\r|\n", out.getvalue())) + 1)
        writer.writerow(row)
    text = out.getvalue()
    stray_row = draw(st.integers(0, len(rows) - 1)) if stray else None
    if stray_row is not None:
        lines = text.split("\n")
        lines[starts[stray_row] - 1] = '"' + lines[starts[stray_row] - 1]
        text = "\n".join(lines)
    if not_utf8 is not None:
        rows[not_utf8[0]][not_utf8[1]] = rows[not_utf8[0]][not_utf8[1]].removesuffix(SENTINEL)
    body = text.encode("utf-8").replace(SENTINEL.encode(), draw(st.sampled_from(BAD_BYTES)))
    return CsvFile(body, starts, rows, not_utf8, stray_row)


@fuzz(100, 3000)
@given(data=st.data())
def test_csv_rows_load_exactly_or_the_first_bad_line_is_named(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    columns = data.draw(st.sampled_from([["label", "text", "note"], ["label", "text"]]))
    file = data.draw(csv_files(columns))
    base = tmp_path_factory.mktemp("csv")
    path = base / "d" / "train.csv"
    path.parent.mkdir()
    path.write_bytes(file.body)
    readable_rows = [(s, r) for s, r in zip(file.starts, file.rows, strict=True) if r[1].strip()]
    bad = file.first_bad_line
    try:
        examples = load_split(TASK, "train", base)
    except DataError as exc:
        message = str(exc)
        event(message.split(": ", 2)[-1][:30])
        message.encode("utf-8")
        if bad is not None:
            assert re.match(rf"{re.escape(str(path))}: lines? {bad}\b", message), message
        else:  # no bad bytes, no stray quote: only an unreadable text may be refused
            assert "text field 'text' must be a non-empty string" in message, message
            assert len(readable_rows) < len(file.rows)
        return
    assert bad is None and len(readable_rows) == len(file.rows)
    assert [(ex.row, ex.fields["text"], ex.label) for ex in examples] == [(s, r[1], r[0]) for s, r in readable_rows]


@fuzz(60, 2000)
@given(
    texts=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\t"))
        .map(lambda t: t.strip())
        .filter(bool)
        .map(lambda t: st_quote(t)),
        min_size=1,
        max_size=8,
    )
)
def test_tsv_has_no_quoting_so_quotes_are_text(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> None:
    """GLUE-style TSV: one row per line, a quote anywhere (first included) is part of the text, as written."""
    base = tmp_path_factory.mktemp("tsv")
    path = base / "d" / "train.tsv"
    path.parent.mkdir()
    labels = [LABELS[i % 2] for i in range(len(texts))]
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in zip(texts, labels, strict=True)))
    examples = load_split(TASK, "train", base)
    assert [(ex.fields["text"], ex.label) for ex in examples] == list(zip(texts, labels, strict=True))


def st_quote(text: str) -> str:
    """Quotes where a CSV reader would take them as quoting: first, doubled, and unbalanced."""
    return f'"{text}" and "" then "{text}'


# --- training data: rows in memory ---------------------------------------------------------------------

memory_values = st.one_of(
    readable,
    texts,
    st.sampled_from(["a\ud800b", "\udfff", "x\udc80"]),
    st.integers(),
    st.sampled_from([10**5000, -(10**400), float("nan"), float("inf")]),
    st.integers(0, 3000).map(nested),
    json_values,
)


@fuzz(100, 3000)
@given(
    rows=st.lists(
        st.fixed_dictionaries({"text": memory_values, "label": st.one_of(st.sampled_from(LABELS), memory_values)}),
        min_size=1,
        max_size=5,
    )
)
def test_rows_in_memory_load_exactly_or_a_bad_row_is_named(rows: list[dict[str, Any]]) -> None:
    def good(row: dict[str, Any]) -> bool:
        text = row["text"]
        return (
            isinstance(text, str)
            and bool(text.strip())
            and not re.search("[\ud800-\udfff]", text)
            and row["label"] in LABELS
        )

    try:
        data = task_data(TASK, {"train": rows, "dev": rows})
    except DataError as exc:
        message = str(exc)
        message.encode("utf-8")  # printable, whatever the values were
        assert len(message) < 3000, message
        named = {int(n) for n in re.findall(r"row (\d+)", message)}
        assert message.startswith("data['train']: ") and named, message
        assert named <= {i for i, row in enumerate(rows, start=1) if not good(row)}, message
        return
    assert all(good(row) for row in rows)
    assert [(ex.fields["text"], ex.label) for ex in data.train] == [(r["text"], r["label"]) for r in rows]


# --- predict: one output row per input row, valid JSON, input values never altered ----------------------


@pytest.fixture(scope="module")
def model_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT fine-tuned for 1 epoch with one fixed prompt, saved as ``--save-model`` saves it."""
    return save_tiny_model(
        tmp_path_factory.mktemp("hostile-model"), tiny_model, max_length=64, demonstrations=False, test_rows=8
    )


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor(model_dir, device="cpu")


JSON_OUTPUTS = {"prediction", "probability", "probabilities", "error"}
CSV_OUTPUTS = {"prediction", "probability", "p_negative", "p_positive", "error"}


def read_output(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") or not text
    return [strict_json(line) for line in text.split("\n")[:-1]]  # split on \n only, as JSON Lines readers do


@fuzz(30, 300)
@given(data=st.data())
def test_predict_jsonl_gives_one_valid_json_row_per_input_row_and_keeps_the_values(
    predictor: Predictor, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    body, rows = data.draw(jsonl_files(data.draw(st.sampled_from([keys, keys_or_output_names]))))
    where = tmp_path_factory.mktemp("predict-jsonl")
    src, out = where / "in.jsonl", where / "out.jsonl"
    src.write_bytes(body)
    clashes = [(line, [k for k in r if k in JSON_OUTPUTS]) for line, r in rows if r and set(r) & JSON_OUTPUTS]
    event(f"clash={bool(clashes)}, hostile rows={sum(r is None for _, r in rows)}")
    if clashes:
        line, names = clashes[0]
        with pytest.raises(DataError, match=re.escape(f"--input {src}: row {line}: the column(s) {names} have")):
            predict_file_streaming(predictor, src, out, batch_size=2)
        assert not out.exists() and [p.name for p in where.iterdir()] == ["in.jsonl"]  # nothing written
        return
    stats = predict_file_streaming(predictor, src, out, batch_size=2)
    written = read_output(out)
    assert len(written) == stats.rows == len(rows)
    assert stats.errors == sum(r is None for _, r in rows)
    for (line, record), got in zip(rows, written, strict=True):
        if record is None:
            assert got["prediction"] is None and set(got) == JSON_OUTPUTS
            assert got["error"].startswith(f"{src}: line {line}: "), got["error"]
        else:
            assert "error" not in got and got["prediction"] in LABELS
            assert {k: v for k, v in got.items() if k not in JSON_OUTPUTS} == record  # as read, in order
            assert list(got)[: len(record)] == list(record)


@fuzz(30, 300)
@given(data=st.data())
def test_predict_csv_gives_one_row_per_input_row_or_refuses_the_file(
    predictor: Predictor, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    output = data.draw(st.sampled_from(["out.csv", "out.jsonl"]))
    other = data.draw(keys_or_output_names.filter(lambda k: k not in ("label", "text")))
    columns = ["label", "text", other]
    file = data.draw(csv_files(columns))
    where = tmp_path_factory.mktemp("predict-csv")
    src, out = where / "in.csv", where / output
    src.write_bytes(file.body)
    outputs = CSV_OUTPUTS if output.endswith(".csv") else JSON_OUTPUTS
    if other in outputs or file.stray is not None:
        event("refused: " + ("output name" if other in outputs else "stray quote"))
        with pytest.raises(DataError) as info:
            predict_file_streaming(predictor, src, out, batch_size=2)
        assert "would be overwritten" in str(info.value) or "not well-formed CSV" in str(info.value)
        assert not out.exists()  # the rows merged by a stray quote are never written as one
        return
    stats = predict_file_streaming(predictor, src, out, batch_size=2)
    written = read_output(out)
    assert len(written) == stats.rows == len(file.rows)
    for i, (start, row, got) in enumerate(zip(file.starts, file.rows, written, strict=True)):
        values = {k: v for k, v in got.items() if k not in outputs}
        bad_column = file.not_utf8[1] if file.not_utf8 and file.not_utf8[0] == i else None
        expected = dict(zip(columns, row, strict=True))
        if bad_column is not None:  # that value is left out (null), and the error says so
            assert got["error"].startswith(f"{src}: line {start}: not UTF-8 in the column(s) {[columns[bad_column]]}")
            assert values == {**expected, columns[bad_column]: "" if output.endswith(".csv") else None}
            continue
        assert values == expected  # every value as written, never replaced
        if row[1].strip():
            assert got["prediction"] in LABELS and not got.get("error")
        else:
            assert got["error"].startswith(f"{src}: row {start}: text field 'text' must be a non-empty string")


@fuzz(8, 200)
@given(
    scores=st.lists(st.floats(), max_size=4).flatmap(
        lambda xs: st.permutations([*xs, float("nan")] if xs else [float("-inf")])
    ),
    output=st.sampled_from(["out.jsonl", "out.csv"]),
)
def test_predict_writes_nan_and_infinity_from_parquet_as_valid_output(
    predictor: Predictor, tmp_path_factory: pytest.TempPathFactory, scores: list[float], output: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = tmp_path_factory.mktemp("predict-parquet")
    src, out = where / "in.parquet", where / output
    rows = [{"text": f"good film {i}", "score": x, "scores": [x, 1.0]} for i, x in enumerate(scores)]
    pq.write_table(pa.Table.from_pylist(rows), src)
    stats = predict_file_streaming(predictor, src, out)
    written = read_output(out)  # strict JSON: a bare NaN would fail here
    assert stats.rows == len(written) == len(rows) and stats.errors == 0
    for row, got in zip(rows, written, strict=True):
        x = row["score"]
        if output.endswith(".jsonl"):
            assert got["score"] == (x if math.isfinite(x) else None)  # JSON has no NaN: null
            assert got["scores"] == [x if math.isfinite(x) else None, 1.0]
        else:
            assert float(got["score"]) == x or (math.isnan(x) and math.isnan(float(got["score"])))


# --- every reader, the same rule ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in HOSTILE if k not in ("not_utf8", "not_json")])
def test_a_json_array_file_refuses_the_same_rows_by_their_position(tmp_path: Path, kind: str) -> None:
    @fuzz(3, 100)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        record = {"text": "a fine film", "label": "positive"}
        path = tmp_path / "d" / "train.json"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"[\n" + json.dumps(record).encode() + b",\n" + hostile_line(data.draw, record, kind) + b"\n]")
        with pytest.raises(DataError) as info:
            load_split(TASK, "train", tmp_path)
        message = str(info.value)
        deep = kind == "too_deep" and message == f"{path}: nested more than {MAX_DEPTH} levels deep; flatten the rows"
        assert message.startswith(f"{path}: row 2: ") or deep, message

    check()


def _parquet_with_bad_utf8(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = pa.array([b"a fine film", b"bad \xff bytes", b"a dull mess"], type=pa.binary()).cast(
        pa.string(), safe=False
    )
    pq.write_table(pa.table({"text": texts, "label": ["positive", "negative", "negative"], "id": [1, 2, 3]}), path)


def test_parquet_strings_that_are_not_utf8_are_refused_in_training_and_a_row_error_in_predict(
    predictor: Predictor, tmp_path: Path
) -> None:
    path = tmp_path / "d" / "train.parquet"
    path.parent.mkdir()
    _parquet_with_bad_utf8(path)
    with pytest.raises(DataError, match=re.escape(f"{path}: row 2: not UTF-8 in the column(s) ['text']")):
        load_split(TASK, "train", tmp_path)
    stats = predict_file_streaming(predictor, path, tmp_path / "out.jsonl")
    out = read_output(tmp_path / "out.jsonl")
    assert stats.rows == 3 and stats.errors == 1
    assert [o["id"] for o in out] == [1, 2, 3] and out[1]["text"] is None and out[1]["prediction"] is None
    assert out[1]["error"].startswith(f"{path}: row 2: not UTF-8 in the column(s) ['text']")
    assert out[0]["text"] == "a fine film" and out[2]["prediction"] in LABELS


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_header_that_names_a_column_twice_is_refused(predictor: Predictor, tmp_path: Path, suffix: str) -> None:
    sep = "," if suffix == ".csv" else "\t"
    path = tmp_path / "d" / f"train{suffix}"
    path.parent.mkdir()
    path.write_text(sep.join(["text", "label", "text"]) + "\n" + sep.join(["a", "positive", "b"]) + "\n")
    message = "line 1: the header names the column(s) ['text'] more than once"
    with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
        load_split(TASK, "train", tmp_path)
    with pytest.raises(DataError, match=re.escape(f"--input {path}: {message}")):
        predict_file_streaming(predictor, path, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "ok \udc80"])
def test_rows_in_memory_with_a_lone_surrogate_are_refused_by_the_model(predictor: Predictor, text: str) -> None:
    with pytest.raises(DataError, match=r"^rows: row 2: text field 'text' holds a lone surrogate \(U\+D"):
        predictor.predict_rows([{"text": "a fine film"}, {"text": text}], source="rows")


def test_jsonl_to_csv_a_row_with_columns_the_first_row_lacks_gets_an_error(
    predictor: Predictor, tmp_path: Path
) -> None:
    src = tmp_path / "in.jsonl"
    rows = [{"id": 1, "text": "a fine film"}, {"id": 2, "text": "good", "note": "kept?"}, {"text": "bad plot"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    stats = predict_file_streaming(predictor, src, tmp_path / "out.csv")
    out = read_output(tmp_path / "out.csv")
    assert stats.rows == 3 and stats.errors == 1 and list(out[0])[:2] == ["id", "text"]
    assert out[1]["error"] == (
        f"{src}: row 2: the column(s) ['note'] are not among the CSV output's columns, which come from the first "
        "row; give every row the same columns, or write JSON Lines (--output x.jsonl)"
    )
    assert out[1]["prediction"] == "" and out[0]["prediction"] in LABELS and out[2]["prediction"] in LABELS


def test_a_model_that_gives_nan_gives_a_row_error_not_a_nan(model_dir: Path, tmp_path: Path) -> None:
    import torch

    from promptsearch.inference.predict import save_runtime

    loaded = Predictor(model_dir, device="cpu")
    with torch.no_grad():
        for weight in loaded.runtime.model.parameters():
            weight.fill_(float("nan"))
    broken = save_runtime(loaded.runtime, loaded.export, tmp_path / "broken")  # saved so: its manifest agrees
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a fine film"}\n{"text": "a dull mess"}\n', encoding="utf-8")
    stats = predict_file_streaming(Predictor(broken, device="cpu"), src, tmp_path / "out.jsonl")
    out = read_output(tmp_path / "out.jsonl")  # strict JSON
    assert stats.rows == 2 and stats.errors == 2
    assert all(o["prediction"] is None and o["probabilities"] is None for o in out)
    assert out[0]["error"].startswith(f"{src}: row 1: the model gave probabilities that are not numbers")


# --- the command line -----------------------------------------------------------------------------------


def test_cli_predict_labels_the_good_rows_and_gives_the_bad_ones_their_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(
        b'{"text": "a fine\\u2028film\xe2\x80\xa8 \xc2\x85and more"}\n'  # U+2028 and U+0085, escaped and raw
        b'{"text": "a\\ud800b"}\n'
        b'{"text": "good", "score": NaN}\n'
        b'{"text": "good", "n": ' + b"9" * 5000 + b"}\n"
        b'{"text": "bad \xff"}\n'
        b'{"text": "deep", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}\n"
    )
    assert main(["predict", str(model_dir), "--input", str(src), "--output", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert f"wrote predictions to {out}: 6 rows (1 labelled, 5 with an error)" in captured.out
    assert "Traceback" not in captured.err
    rows = read_output(out)
    assert rows[0]["text"] == "a fine\u2028film\u2028 \x85and more" and rows[0]["prediction"] in LABELS
    assert [r["error"].split(": ", 2)[1] for r in rows[1:]] == [f"line {n}" for n in range(2, 7)]


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("in.jsonl", '{"text": "good", "prediction": "positive"}\n', "row 1: the column(s) ['prediction'] have"),
        ("in.csv", "text,probability\ngood,0.5\n", "row 2: the column(s) ['probability'] have"),
        ("in.csv", 'text,id\ngood,1\n"bad,2\nfine,3\n', "lines 3-4: not well-formed CSV (unexpected end of data)"),
    ],
)
def test_cli_predict_refuses_a_file_it_would_change_with_one_message(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, body: str, message: str
) -> None:
    src, out = tmp_path / name, tmp_path / "out.jsonl"
    src.write_text(body, encoding="utf-8")
    assert main(["predict", str(model_dir), "--input", str(src), "--output", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"--input {src}: {message}" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_validate_refuses_a_lone_surrogate_that_would_crash_render(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_data(tmp_path / "data")
    train = data / "train.jsonl"
    lines = train.read_text(encoding="utf-8").split("\n")
    lines[3] = json.dumps({"text": "a\ud800 film", "label": "positive"})
    train.write_text("\n".join(lines), encoding="utf-8")
    space = tmp_path / "space.yaml"
    space.write_text(tiny_space_text(tiny_model, data), encoding="utf-8")
    assert main(["validate", str(space)]) == 2
    err = capsys.readouterr().err
    assert f"{train}: line 4: field 'text' holds a lone surrogate (U+D800 at character 2)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("labels", "written", "read"),
    [
        ([0, 1], ["1.0", "0.0", "1"], ["1", "0", "1"]),
        (["true", "false"], ["True", "FALSE", "true"], ["true", "false", "true"]),
    ],
)
def test_csv_labels_written_as_a_typed_reader_reads_them_still_match(
    tmp_path: Path, labels: list[Any], written: list[str], read: list[str]
) -> None:
    """Values are read as written, but a label column of 1.0/0.0 or True/False names the labels 1/0 and
    true/false, as it did when a typed reader loaded CSV; text that names no label is still refused."""
    task = TaskSpec.model_validate({"data": {"dir": "d"}, "labels": labels})
    path = tmp_path / "d" / "train.csv"
    path.parent.mkdir()
    path.write_text("text,label\n" + "".join(f"row {i},{w}\n" for i, w in enumerate(written)))
    assert [ex.label for ex in load_split(task, "train", tmp_path)] == read
    path.write_text("text,label\nrow,1.5\n")
    with pytest.raises(DataError, match=r"labels '1\.5' \(1 rows, first at row 2\) are not declared"):
        load_split(task, "train", tmp_path)


def test_cli_predict_to_stdout_says_which_rows_were_written_before_a_late_clash(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "good"}\n{"text": "bad"}\n{"text": "fine", "prediction": "positive"}\n', encoding="utf-8")
    args = ["predict", str(model_dir), "--input", str(src), "--device", "cpu", "--batch-size", "1"]
    assert main(args) == 2
    captured = capsys.readouterr()
    printed = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [row["text"] for row in printed] == ["good", "bad"]  # complete rows, in order, nothing of row 3
    assert "row 3: the column(s) ['prediction'] have" in captured.err
    assert "The first 2 row(s) were already written to standard output" in captured.err
    assert "Traceback" not in captured.err
