"""Task data: local files checked row by row, few-shot sampling, a lazy test split, a stable fingerprint."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from promptsearch.errors import DataError
from promptsearch.io.data import load_split, load_task_data
from promptsearch.space.spec import TaskSpec

WriteJsonl = Callable[[Path, Iterable[Mapping[str, Any]]], Path]
LABELS = ["negative", "positive"]
ROWS = [
    {"text": "nothing happens , and it happens to flat characters .", "label": "negative"},
    {"text": "you 're not merely watching history , you 're engulfed by it .", "label": "positive"},
    {"text": "as lively an account as seinfeld is deadpan .", "label": "negative"},
    {"text": "a gorgeous , witty , seductive movie .", "label": "positive"},
]


def task(**fields: Any) -> TaskSpec:
    return TaskSpec.model_validate({"data": {"dir": "d"}, "labels": LABELS, **fields})


@pytest.fixture
def split_dir(tmp_path: Path, write_jsonl: WriteJsonl) -> Path:
    """``tmp_path/d`` with valid train.jsonl and dev.jsonl (4 rows each)."""
    write_jsonl(tmp_path / "d" / "train.jsonl", ROWS)
    write_jsonl(tmp_path / "d" / "dev.jsonl", ROWS)
    return tmp_path / "d"


def test_loads_train_and_dev_with_row_numbers(tmp_path: Path, split_dir: Path) -> None:
    data = load_task_data(task(), tmp_path)
    assert [ex.fields["text"] for ex in data.train] == [r["text"] for r in ROWS]
    assert [ex.label for ex in data.dev] == [r["label"] for r in ROWS]
    assert [ex.row for ex in data.train] == [1, 2, 3, 4]
    assert data.train[0].source == str(split_dir / "train.jsonl")
    assert not data.has_test


# --- missing files and columns --------------------------------------------------------------------


def test_missing_data_folder(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=re.escape(f"task.data.dir: folder {tmp_path / 'd'} does not exist; check the path")
    ):
        load_task_data(task(), tmp_path)


def test_missing_split_file_in_folder(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    write_jsonl(tmp_path / "d" / "dev.jsonl", ROWS)
    with pytest.raises(
        DataError,
        match=re.escape(
            f"task.data.dir: no file for split 'train' in {tmp_path / 'd'} "
            "(looked for train{.jsonl,.json,.csv,.tsv,.parquet}); add it, map it in task.data.files, "
            "or change task.splits"
        ),
    ):
        load_task_data(task(), tmp_path)


def test_missing_mapped_file(tmp_path: Path, split_dir: Path) -> None:
    spec = task(data={"dir": "d", "files": {"train": "nope.jsonl"}})
    with pytest.raises(
        DataError,
        match=re.escape(
            f"task.data.files.train: file {tmp_path / 'nope.jsonl'} does not exist; check the path "
            "(relative paths start at the space file's folder)"
        ),
    ):
        load_task_data(spec, tmp_path)


def test_missing_dev_split_without_dev_k(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    write_jsonl(tmp_path / "d" / "train.jsonl", ROWS)
    with pytest.raises(
        DataError,
        match=re.escape(
            "task.splits.dev: no 'dev' split in the data; provide a dev file, point task.splits.dev at "
            "another split, set task.few_shot.dev_k to sample dev from train, or set task.dev_from_train to "
            "split a small train file"
        ),
    ):
        load_task_data(task(), tmp_path)


def test_missing_column(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    path = write_jsonl(tmp_path / "d" / "train.jsonl", [{"sentence": r["text"], "label": r["label"]} for r in ROWS])
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{path}: expected the columns ['text'] (task.text_fields / task.label_field), but the rows "
            "only have "
            "['label', 'sentence']; fix the file or the field names in the space"
        ),
    ):
        load_split(task(), "train", tmp_path)


# --- bad rows -------------------------------------------------------------------------------------


def test_label_not_declared(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    neutral = {"text": "a movie .", "label": "neutral"}
    path = write_jsonl(tmp_path / "d" / "train.jsonl", [*ROWS, neutral, neutral])
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{path}: labels 'neutral' (2 rows, first at row 5) are not declared in task.labels "
            "['negative', 'positive']; add them to task.labels or remove those rows"
        ),
    ):
        load_split(task(), "train", tmp_path)


def test_broken_json_line_is_named(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    path = write_jsonl(tmp_path / "d" / "train.jsonl", ROWS)
    path.write_text(path.read_text() + '{"text": "cut off", "label": "negative"\n')
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{path}: line 5: not valid JSON (Expecting ',' delimiter at column 40); each line must be one JSON object"
        ),
    ):
        load_split(task(), "train", tmp_path)


def test_non_utf8_bytes_are_located(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    path = write_jsonl(tmp_path / "d" / "train.jsonl", ROWS[:2])
    path.write_bytes(path.read_bytes() + b'{"text": "caf\xe9 au lait", "label": "positive"}\n')  # Latin-1 'é'
    with pytest.raises(
        DataError,
        match=re.escape(f"{path}: line 3: not UTF-8 (invalid continuation byte); re-save the file as UTF-8"),
    ):
        load_split(task(), "train", tmp_path)


def test_null_label(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    path = write_jsonl(tmp_path / "d" / "train.jsonl", [*ROWS, {"text": "a movie .", "label": None}])
    with pytest.raises(DataError, match=re.escape(f"{path}: row 5: label field 'label' is missing or null")):
        load_split(task(), "train", tmp_path)


@pytest.mark.parametrize(("text", "found"), [("   ", "str '   '"), (None, "NoneType None"), (3, "int 3")])
def test_empty_or_non_string_text(tmp_path: Path, write_jsonl: WriteJsonl, text: Any, found: str) -> None:
    path = write_jsonl(tmp_path / "d" / "train.jsonl", [{"text": text, "label": "negative"}, *ROWS])
    with pytest.raises(
        DataError,
        match=re.escape(f"{path}: row 1: text field 'text' must be a non-empty string, but found {found}"),
    ):
        load_split(task(), "train", tmp_path)


def test_empty_file(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    path = write_jsonl(tmp_path / "d" / "train.jsonl", [])
    with pytest.raises(DataError, match=re.escape(f"{path}: no rows; the split needs at least one labelled example")):
        load_split(task(), "train", tmp_path)


def test_numeric_labels_match_declared_names(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    write_jsonl(tmp_path / "d" / "train.jsonl", [{"text": r["text"], "label": i % 2} for i, r in enumerate(ROWS)])
    rows = load_split(task(labels=[0, 1]), "train", tmp_path)
    assert [ex.label for ex in rows] == ["0", "1", "0", "1"]


def test_csv_file_is_read_through_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.csv").write_text(
        'text,label\n"nothing happens , and it happens to flat characters .",negative\n'
        '"a gorgeous , witty , seductive movie .",positive\n',
        encoding="utf-8",
    )
    (folder / "dev.csv").write_text("text,label\nas lively an account as seinfeld is deadpan .,negative\n")
    data = load_task_data(task(), tmp_path)
    assert [(ex.fields["text"], ex.label, ex.row) for ex in data.train] == [
        ("nothing happens , and it happens to flat characters .", "negative", 2),
        ("a gorgeous , witty , seductive movie .", "positive", 3),
    ]
    assert [ex.label for ex in data.dev] == ["negative"]


# --- few-shot sampling ----------------------------------------------------------------------------


def test_few_shot_k_larger_than_a_class(tmp_path: Path, split_dir: Path) -> None:
    with pytest.raises(
        DataError,
        match=re.escape(
            "task.few_shot.k: 3 examples per class requested, but 'negative' has 2, 'positive' has 2; "
            "lower the k or add rows of those classes"
        ),
    ):
        load_task_data(task(few_shot={"k": 3}), tmp_path)


def test_few_shot_dev_k_larger_than_the_rest_of_train(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    write_jsonl(tmp_path / "d" / "train.jsonl", ROWS)
    with pytest.raises(
        DataError,
        match=re.escape(
            "task.few_shot.dev_k (from the rest of train): 2 examples per class requested, but 'negative' "
            "has 1, "
            "'positive' has 1; lower the k or add rows of those classes"
        ),
    ):
        load_task_data(task(few_shot={"k": 1, "dev_k": 2}), tmp_path)


def test_few_shot_from_a_full_train_file(agnews_task: TaskSpec, repo_root: Path) -> None:
    data = load_task_data(agnews_task, repo_root)
    classes = set(agnews_task.labels)
    assert Counter(ex.label for ex in data.train) == {label: 8 for label in classes}
    assert Counter(ex.label for ex in data.dev) == {label: 4 for label in classes}
    assert not {ex.row for ex in data.train} & {ex.row for ex in data.dev}
    assert not {ex.key for ex in data.train} & {ex.key for ex in data.dev}
    # the order is shuffled too, not grouped by class
    assert [ex.label for ex in data.train] != sorted(ex.label for ex in data.train)

    again = load_task_data(agnews_task, repo_root)
    assert [ex.row for ex in again.train] == [ex.row for ex in data.train]
    assert [ex.row for ex in again.dev] == [ex.row for ex in data.dev]

    reseeded = agnews_task.model_copy(update={"few_shot": agnews_task.few_shot.model_copy(update={"seed": 14})})  # type: ignore[union-attr]
    other = load_task_data(reseeded, repo_root)
    assert {ex.row for ex in other.train} != {ex.row for ex in data.train}


def test_few_shot_dev_k_subsamples_an_existing_dev_split(sst2_data: Any, repo_root: Path) -> None:
    spec = TaskSpec.model_validate(
        {
            "data": {"dir": str(repo_root / "data" / "sst2" / "16-13")},
            "labels": LABELS,
            "few_shot": {"k": 4, "dev_k": 2},
        }
    )
    data = load_task_data(spec, repo_root)
    assert Counter(ex.label for ex in data.train) == {"negative": 4, "positive": 4}
    assert Counter(ex.label for ex in data.dev) == {"negative": 2, "positive": 2}
    assert {ex.key for ex in data.dev} <= {ex.key for ex in sst2_data.dev}


# --- test split and fingerprint -------------------------------------------------------------------


def test_test_split_is_read_only_when_accessed(tmp_path: Path, split_dir: Path) -> None:
    test_file = split_dir / "test.jsonl"
    test_file.write_text('{"text": "not json yet"\n')
    data = load_task_data(task(), tmp_path)  # a broken test file does not stop the search
    assert data.has_test
    with pytest.raises(DataError, match=re.escape(f"{test_file}: line 1: not valid JSON")):
        _ = data.test
    test_file.write_text(json.dumps(ROWS[0]) + "\n")
    assert [ex.fields["text"] for ex in data.test] == [ROWS[0]["text"]]
    test_file.unlink()
    assert len(data.test) == 1  # read once, then kept


def test_no_test_split(tmp_path: Path, split_dir: Path) -> None:
    data = load_task_data(task(splits={"test": None}), tmp_path)
    assert not data.has_test
    with pytest.raises(
        DataError, match=re.escape("this task has no test split: set task.splits.test and provide its file")
    ):
        _ = data.test


def test_fingerprint_is_stable_and_follows_the_data(tmp_path: Path, split_dir: Path, write_jsonl: WriteJsonl) -> None:
    first = load_task_data(task(), tmp_path).fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert load_task_data(task(), tmp_path).fingerprint == first

    write_jsonl(split_dir / "test.jsonl", ROWS[:1])  # the search never sees test: no change
    assert load_task_data(task(), tmp_path).fingerprint == first

    write_jsonl(split_dir / "dev.jsonl", [*ROWS[:3], {**ROWS[3], "label": "negative"}])
    relabelled = load_task_data(task(), tmp_path).fingerprint
    write_jsonl(split_dir / "dev.jsonl", [*ROWS[:3], {**ROWS[3], "text": "a gorgeous , witty movie ."}])
    reworded = load_task_data(task(), tmp_path).fingerprint
    assert len({first, relabelled, reworded}) == 3


# --- dev carved from a small train file (task.dev_from_train) ------------------------------------------


def _rows(n: int, label: str) -> list[dict[str, str]]:
    return [{"text": f"{label} row number {i}", "label": label} for i in range(n)]


def test_dev_from_train_keeps_every_row_and_each_class(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    write_jsonl(tmp_path / "d" / "train.jsonl", [*_rows(12, "negative"), *_rows(4, "positive")])
    data = load_task_data(task(dev_from_train={"fraction": 0.25, "seed": 13}), tmp_path)
    assert len(data.train) + len(data.dev) == 16
    assert Counter(ex.label for ex in data.dev) == {"negative": 3, "positive": 1}
    assert not {ex.key for ex in data.train} & {ex.key for ex in data.dev}
    assert [ex.row for ex in data.dev] == sorted(ex.row for ex in data.dev)  # the file's order
    again = load_task_data(task(dev_from_train={"fraction": 0.25, "seed": 13}), tmp_path)
    other = load_task_data(task(dev_from_train={"fraction": 0.25, "seed": 14}), tmp_path)
    assert [ex.row for ex in again.dev] == [ex.row for ex in data.dev]
    assert [ex.row for ex in other.dev] != [ex.row for ex in data.dev]


def test_dev_from_train_keeps_a_duplicated_text_on_one_side(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    rows = [*_rows(6, "negative"), *_rows(6, "positive")]
    write_jsonl(tmp_path / "d" / "train.jsonl", rows + rows)  # every text twice
    data = load_task_data(task(dev_from_train={"fraction": 0.5}), tmp_path)
    assert not {ex.key for ex in data.train} & {ex.key for ex in data.dev}
    assert len(data.dev) == 12


def test_dev_from_train_with_a_dev_file_is_refused(tmp_path: Path, split_dir: Path) -> None:
    with pytest.raises(DataError, match=re.escape("task.dev_from_train: the data has a 'dev' split already")):
        load_task_data(task(dev_from_train={}), tmp_path)


def test_dev_from_train_needs_two_texts_in_a_class(tmp_path: Path, write_jsonl: WriteJsonl) -> None:
    write_jsonl(tmp_path / "d" / "train.jsonl", ROWS[:2])
    with pytest.raises(DataError, match=re.escape("task.dev_from_train: no class has two distinct texts")):
        load_task_data(task(dev_from_train={}), tmp_path)


def test_dev_from_train_and_few_shot_are_one_choice() -> None:
    with pytest.raises(ValueError, match=re.escape("task.few_shot and task.dev_from_train both shape train and dev")):
        task(dev_from_train={}, few_shot={"k": 2})
