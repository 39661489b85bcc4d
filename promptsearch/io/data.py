"""Load the labelled splits of a task: local JSON Lines / JSON / CSV / TSV / Parquet files, a Hub dataset, or rows
in memory.

Local files are read by :mod:`promptsearch.io.rows`, under the same rule as ``predict``'s input, so that a
broken row is named by file, line and field; the Hub goes through ``datasets``. Each split becomes a list
of :class:`Example`. The test split is checked before any training (:meth:`TaskData.check_test`, which ``validate``,
``run`` and ``train`` call), so a bad test file is found before the search, and its rows are kept only when
:attr:`TaskData.test` is first read, for the final evaluation: no search holds them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptsearch.errors import DataError
from promptsearch.files import describe, readable_file
from promptsearch.io.rows import EXTENSIONS, describe_value, iter_rows, short_repr, text_problem
from promptsearch.space.spec import TaskSpec

__all__ = [
    "Example",
    "SplitRows",
    "TaskData",
    "TaskDataInput",
    "carve_dev",
    "label_name",
    "load_split",
    "load_task_data",
    "read_rows",
    "task_data",
]

logger = logging.getLogger(__name__)
_MAX_LISTED = 5


@dataclass(frozen=True)
class Example:
    """One labelled row: its text fields, its label name, and where it came from."""

    fields: Mapping[str, str]
    label: str
    source: str = ""
    row: int = 0

    @property
    def key(self) -> tuple[str, ...]:
        """The texts alone; two rows with the same key are the same input."""
        return tuple(self.fields.values())


@dataclass
class TaskData:
    """The train and dev splits of a task, and a lazily loaded test split."""

    train: list[Example]
    dev: list[Example]
    _load_test: Callable[[], list[Example]] | None = None
    _test: list[Example] | None = field(default=None, repr=False)
    _test_checked: bool = field(default=False, repr=False)

    @property
    def has_test(self) -> bool:
        return self._load_test is not None or self._test is not None

    def check_test(self) -> None:
        """Read the test split once and check it as train and dev are checked (fields, labels, encoding), without
        keeping its rows: a bad test file is found before a search, which never holds a test row (:attr:`test` reads
        them again, for the final evaluation). Raises :class:`DataError` naming the file, row and field."""
        if self._test is None and self._load_test is not None and not self._test_checked:
            self._load_test()
        self._test_checked = True

    @property
    def test(self) -> list[Example]:
        """The test split, read from disk on first access (the search itself never reads it)."""
        if self._test is None:
            if self._load_test is None:
                raise DataError("this task has no test split: set task.splits.test and provide its file")
            self._test = self._load_test()
        return self._test

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the train and dev rows: the data a search depends on."""
        digest = hashlib.sha256()
        for name, rows in (("train", self.train), ("dev", self.dev)):
            digest.update(name.encode())
            for ex in rows:
                digest.update(json.dumps([list(ex.fields.items()), ex.label], ensure_ascii=False).encode())
        return digest.hexdigest()


def _normalise_label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Mapping | list | tuple | set) or (isinstance(value, int) and value.bit_length() > 256):
        return describe_value(value)  # not a label (str() may recurse deep, or refuse a 5000-digit int)
    return str(value)


def label_name(value: Any) -> str | None:
    """A label value as the loader names it (``1.0`` -> ``"1"``, ``True`` -> ``"true"``); None when missing."""
    return _normalise_label(value)


def _typed_form(text: str, declared: set[str]) -> str:
    """A label read as text (CSV, TSV) that names a declared label the way a typed reader would: ``1.0`` for
    ``1``, ``True`` for ``true``. Other text stays as written (and is refused if it is not declared)."""
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and number.is_integer() and abs(number) < 2**53:
        typed = str(int(number))
    elif text in ("True", "False", "TRUE", "FALSE"):
        typed = text.lower()
    else:
        return text
    return typed if typed in declared else text


def make_examples(
    records: Iterable[tuple[int, Mapping[str, Any]]],
    task: TaskSpec,
    source: str,
    *,
    label_names: Sequence[str] | None = None,
) -> list[Example]:
    """Check rows for the task's fields and labels and turn them into examples (row numbers are 1-based)."""
    problems: list[str] = []
    out: list[Example] = []
    declared = set(task.labels)
    unknown_labels: Counter[str] = Counter()
    first_unknown: dict[str, int] = {}
    columns: set[str] = set()
    for row, record in records:
        columns.update(record)
        fields: dict[str, str] = {}
        for name in task.text_fields:
            problem = text_problem(name, record)
            if problem is not None:
                problems.append(f"{source}: row {row}: {problem}")
            else:
                fields[name] = record[name]
        raw_label = record.get(task.label_field)
        if label_names is not None and isinstance(raw_label, int) and 0 <= raw_label < len(label_names):
            raw_label = label_names[raw_label]
        label = _normalise_label(raw_label)
        if isinstance(raw_label, str) and label not in declared:
            label = _typed_form(raw_label, declared)
        if label is None:
            problems.append(f"{source}: row {row}: label field '{task.label_field}' is missing or null")
        elif isinstance(raw_label, Mapping | list | tuple | set):
            problems.append(
                f"{source}: row {row}: label field '{task.label_field}' must be a string or a number, but found "
                f"{describe_value(raw_label)}; write the label's name"
            )
            label = None
        elif label not in declared:
            unknown_labels[label] += 1
            first_unknown.setdefault(label, row)
        if len(problems) >= _MAX_LISTED:
            break
        if label is not None and label in declared and len(fields) == len(task.text_fields):
            out.append(Example(fields=fields, label=label, source=source, row=row))
    missing_columns = [c for c in (*task.text_fields, task.label_field) if columns and c not in columns]
    if missing_columns:
        raise DataError(
            f"{source}: expected the columns {missing_columns} (task.text_fields / task.label_field), "
            f"but the rows only have {sorted(columns, key=str)}; fix the file or the field names in the space"
        )
    if problems:
        more = " (further rows not checked)" if len(problems) >= _MAX_LISTED else ""
        raise DataError("\n".join(problems) + more)
    if unknown_labels:
        listed = ", ".join(
            f"{short_repr(lab)} ({n} rows, first at row {first_unknown[lab]})" for lab, n in unknown_labels.items()
        )
        raise DataError(
            f"{source}: labels {listed} are not declared in task.labels {task.labels}; "
            f"add them to task.labels or remove those rows (field '{task.label_field}')"
        )
    if not out:
        raise DataError(f"{source}: no rows; the split needs at least one labelled example")
    return out


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a local data file into (row number, record) pairs under the rule of :mod:`promptsearch.io.rows`.

    Row numbers are file lines (JSON Lines, CSV: the line a row starts on) or row positions (Parquet, a
    JSON array). The first row that breaks the rule raises :class:`DataError` naming the file, line and field.
    """
    rows: list[tuple[int, dict[str, Any]]] = []
    for row in iter_rows(path):
        if row.error is not None:
            raise DataError(row.error)
        rows.append((row.number, row.record))
    return rows


def find_split_file(directory: Path, split: str) -> Path | None:
    """``<split>.<ext>`` in ``directory``: the first name that exists, checked to be a readable regular file (a
    FIFO, a device, a folder or a link to one is refused, never read); None when no such name exists."""
    for ext in EXTENSIONS:
        candidate = directory / f"{split}{ext}"
        if describe(candidate) != "missing":
            return readable_file(candidate, f"task.data.dir: the {split} split,", error=DataError)
    return None


def split_path(task: TaskSpec, split: str, base_dir: Path) -> Path:
    """The file of ``split``: from ``data.files``, else ``<split>.<ext>`` in ``data.dir``."""
    src = task.data
    if src is None:
        raise _no_source(task)
    if split in src.files:
        path = _resolve(src.files[split], base_dir)
        if describe(path) == "missing":
            raise DataError(
                f"task.data.files.{split}: file {path} does not exist; check the path "
                "(relative paths start at the space file's folder)"
            )
        return readable_file(path, f"task.data.files.{split}:", error=DataError)  # a regular file, never a FIFO
    if src.dir:
        directory = _resolve(src.dir, base_dir)
        if not directory.is_dir():
            raise DataError(f"task.data.dir: folder {directory} does not exist; check the path")
        found = find_split_file(directory, split)
        if found is not None:
            return found
        raise DataError(
            f"task.data.dir: no file for split '{split}' in {directory} "
            f"(looked for {split}{{{','.join(EXTENSIONS)}}}); "
            f"add it, map it in task.data.files, or change task.splits"
        )
    raise DataError(f"task.data.files: no file for split '{split}'; add '{split}: path/to/file.jsonl'")


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)


def _no_source(task: TaskSpec) -> DataError:
    return DataError(
        "task.data: the space names no data; add task.data (dir, files or hub) to the space, "
        "or pass the splits in code, e.g. promptsearch.Study(space, data={'train': rows, 'dev': rows})"
    )


def has_split(task: TaskSpec, split: str, base_dir: Path) -> bool:
    src = task.data
    if src is None:
        return False
    if src.hub is not None:
        return True
    if split in src.files:
        return True
    return src.dir is not None and find_split_file(_resolve(src.dir, base_dir), split) is not None


def load_split(task: TaskSpec, split: str, base_dir: Path) -> list[Example]:
    """Load one split of the task, checked against its fields and labels."""
    if task.data is None:
        raise _no_source(task)
    if task.data.hub is not None:
        return _load_hub_split(task, split)
    path = split_path(task, split, base_dir)
    logger.debug("reading split %s from %s", split, path)
    return make_examples(read_rows(path), task, str(path))


def _load_hub_split(task: TaskSpec, split: str) -> list[Example]:
    import datasets

    assert task.data is not None
    hub = task.data.hub
    assert hub is not None
    try:
        ds = datasets.load_dataset(hub.path, hub.name, split=split, revision=hub.revision)
    except Exception as exc:
        raise DataError(
            f"task.data.hub: could not load {hub.path}/{hub.name or ''} split '{split}': "
            f"{str(exc).splitlines()[0][:300]}"
        ) from None
    feature = ds.features.get(task.label_field)
    names = list(getattr(feature, "names", []) or []) or None
    return make_examples(((i + 1, dict(r)) for i, r in enumerate(ds)), task, f"{hub.path}:{split}", label_names=names)


def sample_per_class(rows: Sequence[Example], k: int, seed: int, labels: Sequence[str], what: str) -> list[Example]:
    """K examples of each label, chosen with ``seed``; the order is shuffled too."""
    rng = np.random.default_rng(seed)
    counts = Counter(ex.label for ex in rows)
    short = {lab: counts.get(lab, 0) for lab in labels if counts.get(lab, 0) < k}
    if short:
        listed = ", ".join(f"'{lab}' has {n}" for lab, n in short.items())
        raise DataError(
            f"{what}: {k} examples per class requested, but {listed}; lower the k or add rows of those classes"
        )
    chosen: list[Example] = []
    for lab in labels:
        idx = [i for i, ex in enumerate(rows) if ex.label == lab]
        chosen.extend(rows[i] for i in rng.choice(idx, size=k, replace=False))
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def carve_dev(rows: Sequence[Example], fraction: float, seed: int, what: str) -> tuple[list[Example], list[Example]]:
    """``(train, dev)``: about ``fraction`` of each class's distinct texts, chosen with ``seed``, become dev.

    Rows with the same text stay on one side, every class with two texts or more gives dev at least one, and
    both sides keep the file's order. Raises :class:`DataError` when no class has two distinct texts.
    """
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, ex in enumerate(rows):
        groups.setdefault(ex.key, []).append(i)
    by_label: dict[str, list[tuple[str, ...]]] = {}
    for key, members in groups.items():
        by_label.setdefault(rows[members[0]].label, []).append(key)
    held: set[int] = set()
    for keys in by_label.values():
        if len(keys) < 2:
            continue  # a class of one text trains
        n = min(len(keys) - 1, max(1, round(fraction * len(keys))))
        for j in rng.choice(len(keys), size=n, replace=False):
            held.update(groups[keys[int(j)]])
    if not held:
        raise DataError(
            f"{what}: no class has two distinct texts, so no dev row can be carved from the {len(rows)} train "
            "row(s); add rows or provide a dev file"
        )
    train = [ex for i, ex in enumerate(rows) if i not in held]
    dev = [ex for i, ex in enumerate(rows) if i in held]
    return train, dev


def load_task_data(task: TaskSpec, base_dir: Path) -> TaskData:
    """Load train and dev (with few-shot sampling if the space asks for it); test stays on disk until read."""
    return _assemble(
        task,
        lambda split: load_split(task, split, base_dir),
        lambda split: has_split(task, split, base_dir),
    )


SplitRows = Any
"""One split in memory: a list of dicts, a ``pandas.DataFrame`` or a ``datasets.Dataset``."""
TaskDataInput = Any
"""Data passed in code: a mapping split name -> :data:`SplitRows` (a ``datasets.DatasetDict`` is one),
or a :class:`TaskData` as it is."""


def _records(rows: SplitRows, source: str) -> tuple[list[tuple[int, Mapping[str, Any]]], list[str] | None]:
    """(1-based row number, record) pairs of one split in memory, and the label names of a ClassLabel column."""
    names = None
    features = getattr(rows, "features", None)
    if features is not None and hasattr(rows, "column_names"):  # datasets.Dataset
        for feature in features.values():
            if getattr(feature, "names", None):
                names = list(feature.names)
        return [(i + 1, dict(r)) for i, r in enumerate(rows)], names
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas.DataFrame
        return [(i + 1, r) for i, r in enumerate(rows.to_dict(orient="records"))], None
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise DataError(
            f"{source}: expected a list of dicts, a pandas DataFrame or a datasets.Dataset, "
            f"but found {type(rows).__name__}; pass one of those per split"
        )
    out = []
    for i, record in enumerate(rows, start=1):
        if not isinstance(record, Mapping):
            raise DataError(f"{source}: row {i}: expected a dict of column -> value, but found {type(record).__name__}")
        out.append((i, record))
    return out, None


def task_data(task: TaskSpec, data: TaskDataInput) -> TaskData:
    """The task's splits from rows in memory, checked with the same messages as files.

    ``data`` maps split names (those of ``task.splits``) to a list of dicts, a ``pandas.DataFrame`` or a
    ``datasets.Dataset``; a ``datasets.DatasetDict`` works as it is. Few-shot sampling applies as for files.

    >>> rows = [{"text": "great", "label": "positive"}, {"text": "dull", "label": "negative"}]
    >>> task_data(space.spec.task, {"train": rows, "dev": rows})  # doctest: +SKIP
    """
    if isinstance(data, TaskData):
        return data
    if not isinstance(data, Mapping) and not hasattr(data, "keys"):
        raise DataError(
            f"data: expected a mapping of split name -> rows (e.g. {{'train': [...], 'dev': [...]}}), "
            f"but found {type(data).__name__}"
        )
    known = {task.splits.train, task.splits.dev, *([task.splits.test] if task.splits.test else [])}
    unknown = sorted(str(k) for k in list(data.keys()) if k not in known)
    if unknown:
        raise DataError(
            f"data: unknown split(s) {unknown}; the task's splits are {sorted(known)} "
            "(rename the keys, or set task.splits in the space)"
        )

    def load(split: str) -> list[Example]:
        source = f"data[{split!r}]"
        records, names = _records(data[split], source)
        return make_examples(records, task, source, label_names=names)

    present = set(data.keys())
    return _assemble(task, load, lambda split: split in present)


def _assemble(task: TaskSpec, load: Callable[[str], list[Example]], has: Callable[[str], bool]) -> TaskData:
    """Train and dev (few-shot sampled when the space asks), and the test split loaded on first read."""
    train = load(task.splits.train)
    few = task.few_shot
    dev_present = has(task.splits.dev)
    carve = task.dev_from_train
    if dev_present and carve is not None:
        raise DataError(
            f"task.dev_from_train: the data has a '{task.splits.dev}' split already; remove task.dev_from_train "
            "to use it, or point task.splits.dev at a split the data does not have"
        )
    if carve is not None:
        train, dev = carve_dev(train, carve.fraction, carve.seed, "task.dev_from_train")
    elif dev_present:
        dev = load(task.splits.dev)
    elif few is not None and few.dev_k is not None:
        dev = []
    else:
        raise DataError(
            f"task.splits.dev: no '{task.splits.dev}' split in the data; provide a dev file, point "
            "task.splits.dev at another split, set task.few_shot.dev_k to sample dev from train, or set "
            "task.dev_from_train to split a small train file"
        )
    if few is not None:
        sampled = sample_per_class(train, few.k, few.seed, task.labels, "task.few_shot.k")
        if dev_present and few.dev_k is not None:
            dev = sample_per_class(dev, few.dev_k, few.seed + 1, task.labels, "task.few_shot.dev_k")
        elif not dev_present:
            used = {ex.key for ex in sampled}  # by text: a duplicated row must not end up in both splits
            rest = [ex for ex in train if ex.key not in used]
            assert few.dev_k is not None
            dev = sample_per_class(
                rest, few.dev_k, few.seed + 1, task.labels, "task.few_shot.dev_k (from the rest of train)"
            )
        train = sampled
    test_split = task.splits.test
    loader = None
    if test_split is not None and has(test_split):

        def loader() -> list[Example]:
            return load(test_split)

    return TaskData(train=train, dev=dev, _load_test=loader)
