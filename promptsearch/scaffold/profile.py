"""Read a user's data and describe it as a typed :class:`DataProfile`: splits, text and label fields, classes.

The rows are read by the project's own loaders (:func:`promptsearch.io.data.read_rows`, the Hub through
``datasets``) and turned into examples by :func:`promptsearch.io.data.make_examples`, so a broken row gets
the same message here as in ``validate`` and ``run``. What cannot be guessed (several candidate text or label
columns) is an error that names the candidates and the flag that settles it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from promptsearch.errors import DataError, did_you_mean
from promptsearch.files import describe
from promptsearch.io.data import Example, find_split_file, label_name, make_examples, read_rows
from promptsearch.io.rows import EXTENSIONS, short_repr
from promptsearch.space.spec import TaskSpec

__all__ = ["DataProfile", "HubRef", "SplitProfile", "profile_data"]

Records = list[tuple[int, dict[str, Any]]]

# Column names that usually hold the label, the text, or a pair of texts (matched case-insensitively, in order).
LABEL_NAMES = ("label", "labels", "class", "category", "target", "gold_label", "sentiment", "intent", "topic", "y")
TEXT_NAMES = (
    "text",
    "sentence",
    "review",
    "content",
    "document",
    "comment",
    "tweet",
    "utterance",
    "body",
    "message",
    "question",
    "description",
    "abstract",
    "title",
)
PAIR_NAMES = (
    ("text_a", "text_b"),
    ("sentence1", "sentence2"),
    ("sentence_a", "sentence_b"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("question", "passage"),
    ("query", "document"),
    ("text1", "text2"),
)
ID_NAMES = ("id", "idx", "index", "uid", "uuid", "guid", "row", "row_id")
DEV_SPLITS = ("dev", "validation", "valid", "val")
MAX_CLASSES = 100  # a column with more distinct values is no label column to guess
PLACEHOLDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED = ("label", "instruction", "demos")  # template placeholders that a text field cannot be named
SEED_FOLDER = re.compile(r"\d+-\d+\Z")  # k-shot/<task>/<k>-<seed>/
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?\Z")


@dataclass(frozen=True)
class HubRef:
    """A Hub dataset: its id, configuration, and which of its splits plays train, dev and test."""

    path: str
    name: str | None
    splits: Mapping[str, str]  # role (train, dev, test) -> the dataset's split name


@dataclass(frozen=True)
class SplitProfile:
    """One split as read: where from, and its checked examples."""

    role: Literal["train", "dev", "test"]
    source: str  # the file, or hub:split
    path: Path | None  # the local file (None for the Hub)
    examples: tuple[Example, ...]

    @property
    def rows(self) -> int:
        return len(self.examples)

    @property
    def counts(self) -> Counter[str]:
        return Counter(ex.label for ex in self.examples)


@dataclass(frozen=True)
class DataProfile:
    """What ``promptsearch init`` found in the data: the splits, fields, classes, and how each was decided."""

    data: str  # as the user gave it
    kind: Literal["file", "folder", "hub"]
    folder: Path | None  # kind folder: the folder of split files
    hub: HubRef | None
    columns: tuple[str, ...]
    text_fields: tuple[str, ...]
    label_field: str
    labels: tuple[str, ...]
    splits: Mapping[str, SplitProfile]  # train, and dev and test when the data has them
    notes: tuple[str, ...] = field(default=())  # how the fields and splits were found, one line each

    @property
    def train(self) -> SplitProfile:
        return self.splits["train"]

    @property
    def dev(self) -> SplitProfile | None:
        return self.splits.get("dev")

    @property
    def test(self) -> SplitProfile | None:
        return self.splits.get("test")

    @property
    def pair(self) -> bool:
        return len(self.text_fields) == 2

    def labelled(self) -> list[Example]:
        """The rows a search may read: train, and dev when there is one."""
        return [*self.train.examples, *(self.dev.examples if self.dev else ())]


# --- reading the splits ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    """The rows of one split before fields are known."""

    role: Literal["train", "dev", "test"]
    source: str
    path: Path | None
    records: Records
    label_names: list[str] | None = None  # a Hub ClassLabel's names


def profile_data(
    data: str | Path,
    *,
    text: Sequence[str] | None = None,
    label: str | None = None,
    labels: Sequence[str] | None = None,
    test: str | Path | None = None,
) -> DataProfile:
    """Read ``data`` (a JSONL/JSON/CSV/TSV/Parquet file, a folder of split files, or a Hub dataset name
    ``owner/name[:config]``) and find its text field(s), label field and classes.

    ``text`` (one or two fields), ``label`` and ``labels`` override the guesses; ``test`` is a file kept apart
    as the test split. Raises :class:`DataError` naming the file, what was expected, what was found and the fix.

    >>> profile = profile_data("data/sst2/16-13")  # doctest: +SKIP
    >>> profile.text_fields, profile.labels  # doctest: +SKIP
    (('text',), ('negative', 'positive'))
    """
    if text is not None and not 1 <= len(text) <= 2:
        raise DataError(f"--text: give one field, or two for sentence pairs, but {len(text)} were given")
    given = str(data)
    raws, kind, folder, hub, notes = _read(given)
    if test is not None:
        test_path = _data_file(Path(test), "--test")
        raws = [r for r in raws if r.role != "test"]
        raws.append(_Raw("test", str(test_path), test_path, read_rows(test_path)))
    search_rows = [rec for raw in raws if raw.role != "test" for _, rec in raw.records]
    train = next(r for r in raws if r.role == "train")
    if not train.records:
        raise DataError(f"{train.source}: the file has no rows; a classifier needs labelled rows to learn from")
    columns = _columns(search_rows)
    label_field = _label_field(search_rows, columns, label, train.source, notes)
    text_fields = _text_fields(search_rows, columns, label_field, text, train.source, notes)
    names = train.label_names
    classes = _classes(search_rows, label_field, labels, names, train.source)
    task = TaskSpec(text_fields=list(text_fields), label_field=label_field, labels=list(classes))
    splits: dict[str, SplitProfile] = {}
    for raw in raws:
        try:
            examples = make_examples(raw.records, task, raw.source, label_names=names)
        except DataError as exc:
            if raw.role != "test" or hub is None:
                raise
            notes.append(f"the Hub's test split is left out: {str(exc).splitlines()[0]}")  # e.g. GLUE's hidden labels
            continue
        splits[raw.role] = SplitProfile(raw.role, raw.source, raw.path, tuple(examples))
    return DataProfile(
        data=given,
        kind=kind,
        folder=folder,
        hub=hub,
        columns=tuple(columns),
        text_fields=text_fields,
        label_field=label_field,
        labels=classes,
        splits=splits,
        notes=tuple(notes),
    )


def _data_file(path: Path, what: str) -> Path:
    kind = describe(path)
    if kind == "missing":
        raise DataError(f"{what} {path}: no such file; give a {'/'.join(e[1:] for e in EXTENSIONS)} file")
    if kind != "a regular file":
        raise DataError(f"{what} {path}: expected a data file, but it is {kind}; give a file of rows")
    if path.suffix.lower() not in EXTENSIONS:
        raise DataError(f"{what} {path}: unsupported file type '{path.suffix}'; use one of {', '.join(EXTENSIONS)}")
    return path


def _read(data: str) -> tuple[list[_Raw], Literal["file", "folder", "hub"], Path | None, HubRef | None, list[str]]:
    path = Path(data).expanduser()
    kind = describe(path)
    if kind == "a folder":
        raws, notes = _read_folder(path)
        return raws, "folder", path, None, notes
    if kind == "missing" and _looks_like_hub_name(data):
        raws, hub, notes = _read_hub(data)
        return raws, "hub", None, hub, notes
    file = _data_file(path, "DATA")
    raws = [_Raw("train", str(file), file, read_rows(file))]
    notes = []
    stem = file.stem.lower()
    if stem == "train":  # the k-shot layout given by its train file: its dev and test files are the other splits
        for role, names in (("dev", DEV_SPLITS), ("test", ("test",))):
            sibling = _split_file(file.parent, names) or (_seed_test(file.parent) if role == "test" else None)
            if sibling is not None:
                raws.append(_Raw(role, str(sibling), sibling, read_rows(sibling)))  # type: ignore[arg-type]
                notes.append(f"{_relative_name(sibling, file.parent)} next to {file.name} is the {role} split")
    return raws, "file", None, None, notes


def _seed_test(folder: Path) -> Path | None:
    """LM-BFF's layout: a seed folder (``16-13``) of k-shot train and dev files, the full test file beside it."""
    if not SEED_FOLDER.match(folder.name):
        return None
    return find_split_file(folder.parent, "test")


def _relative_name(path: Path, folder: Path) -> str:
    return path.name if path.parent == folder else f"../{path.name}"


def _looks_like_hub_name(data: str) -> bool:
    return bool(HUB_NAME.match(data)) and Path(data).suffix.lower() not in EXTENSIONS and not data.startswith(".")


def _split_file(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        found = find_split_file(folder, name)
        if found is not None:
            return found
    return None


def _read_folder(folder: Path) -> tuple[list[_Raw], list[str]]:
    train = find_split_file(folder, "train")
    if train is None:
        listed = sorted(p.name for p in folder.iterdir())[:8]
        raise DataError(
            f"DATA {folder}: a folder of splits needs a train file (train{{{','.join(EXTENSIONS)}}}), but it holds "
            f"{listed or 'nothing'}; name the training file train.jsonl (or .csv, ...) or pass the file itself"
        )
    raws = [_Raw("train", str(train), train, read_rows(train))]
    notes = []
    for role, names in (("dev", DEV_SPLITS), ("test", ("test",))):
        found = _split_file(folder, names) or (_seed_test(folder) if role == "test" else None)
        if found is not None:
            raws.append(_Raw(role, str(found), found, read_rows(found)))  # type: ignore[arg-type]
            notes.append(f"{_relative_name(found, folder)} is the {role} split")
    return raws, notes


def _read_hub(name: str) -> tuple[list[_Raw], HubRef, list[str]]:
    path, _, config = name.partition(":")
    try:
        import datasets

        loaded = datasets.load_dataset(path, config or None)
    except Exception as exc:  # offline, unknown name, gated dataset, missing configuration: one line
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"DATA {name}: no such file or folder, and loading it as a Hugging Face Hub dataset failed ({first}); "
            "check the path, or the dataset name (owner/name[:config]; the Hub needs internet)"
        ) from None
    roles: dict[str, str] = {}
    for role, names in (("train", ("train",)), ("dev", DEV_SPLITS), ("test", ("test",))):
        found = next((n for n in names if n in loaded), None)
        if found is not None:
            roles[role] = found
    if "train" not in roles:
        raise DataError(
            f"DATA {name}: the Hub dataset has the splits {sorted(loaded)}, but no 'train' split; "
            "download the split you want and pass it as a file"
        )
    raws = []
    for role, split in roles.items():
        ds = loaded[split]
        label_names = None
        for feature in ds.features.values():
            if getattr(feature, "names", None):
                label_names = list(feature.names)
        rows = [(i + 1, dict(r)) for i, r in enumerate(ds)]
        raws.append(_Raw(role, f"{path}:{split}", None, rows, label_names))  # type: ignore[arg-type]
    notes = [f"Hub dataset {name}: splits {', '.join(f'{s} ({r})' for r, s in roles.items())}"]
    return raws, HubRef(path=path, name=config or None, splits=roles), notes


# --- guessing the fields ---------------------------------------------------------------------------------


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for record in rows:
        for key in record:
            seen.setdefault(key, None)
    return list(seen)


def _named(columns: Sequence[str], names: Sequence[str]) -> str | None:
    """The first column named like one of ``names`` (exactly, then ignoring case)."""
    lower = {c.lower(): c for c in columns}
    for name in names:
        if name in columns:
            return name
        if name in lower:
            return lower[name]
    return None


def _check_given(name: str, columns: Sequence[str], flag: str, source: str) -> str:
    if name not in columns:
        hint = did_you_mean(name, columns)
        raise DataError(f"{flag} {name!r}: {source} has no such column.{hint} Its columns: {', '.join(columns)}")
    return name


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _label_candidate(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Scalar values with 2 to :data:`MAX_CLASSES` distinct ones, few enough that each repeats."""
    values = [r.get(column) for r in rows]
    if any(v is None or not isinstance(v, str | int | bool | float) for v in values):
        return False
    distinct = {label_name(v) for v in values}
    return 2 <= len(distinct) <= min(MAX_CLASSES, len(values) // 2)


def _label_field(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], given: str | None, source: str, notes: list[str]
) -> str:
    if given is not None:
        return _check_given(given, columns, "--label", source)
    named = _named(columns, LABEL_NAMES)
    if named is not None:
        notes.append(f"label field '{named}' (by its name)")
        return named
    candidates = [c for c in columns if c.lower() not in ID_NAMES and _label_candidate(rows, c)]
    if len(candidates) == 1:
        notes.append(f"label field '{candidates[0]}' (the one column of few repeated values)")
        return candidates[0]
    found = f"several could be: {', '.join(candidates)}" if candidates else "none has a few repeated values"
    raise DataError(
        f"{source}: could not tell which column holds the label (columns: {', '.join(columns)}; {found}); "
        "pass --label FIELD"
    )


def _text_like(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Non-empty strings in (nearly) every row, not numbers, and varied or long enough to be texts."""
    values = [r.get(column) for r in rows]
    texts = [v for v in values if isinstance(v, str) and v.strip()]
    if len(texts) < 0.95 * len(values) or sum(map(_is_number, texts)) > len(texts) / 2:
        return False
    mean = sum(len(t) for t in texts) / len(texts)
    return mean >= 20 or len(set(texts)) >= len(texts) / 2


def _text_fields(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    label_field: str,
    given: Sequence[str] | None,
    source: str,
    notes: list[str],
) -> tuple[str, ...]:
    others = [c for c in columns if c != label_field]
    if given:
        fields = tuple(_check_given(name, columns, "--text", source) for name in given)
        if label_field in fields:
            raise DataError(f"--text {label_field!r} is the label field; the texts must be other columns")
        if len(set(fields)) != len(fields):
            raise DataError(f"--text: {fields[0]!r} is given twice; give two different fields for a pair")
    else:
        fields = _guess_texts(rows, others, source, notes)
    for name in fields:
        if not PLACEHOLDER.match(name) or name in RESERVED:
            why = "is a template placeholder of its own" if name in RESERVED else "is not a placeholder name"
            raise DataError(
                f"{source}: the text field {short_repr(name)} {why} (templates write {{field}}: letters, digits "
                f"and _, not {', '.join(RESERVED)}); rename the column"
            )
    return fields


def _guess_texts(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], source: str, notes: list[str]
) -> tuple[str, ...]:
    for a, b in PAIR_NAMES:
        first, second = _named(columns, (a,)), _named(columns, (b,))
        if first and second and first != second:
            notes.append(f"text fields '{first}' and '{second}' (a sentence pair, by their names)")
            return first, second
    named = _named(columns, TEXT_NAMES)
    texty = [c for c in columns if c.lower() not in ID_NAMES and _text_like(rows, c)]
    if named is not None:
        rest = [c for c in texty if c != named]
        unused = f"; not used: {', '.join(rest)} (--text {named} --text {rest[0]} makes a pair)" if rest else ""
        notes.append(f"text field '{named}' (by its name){unused}")
        return (named,)
    if len(texty) in (1, 2):
        what = f"text field '{texty[0]}' (the column of text)"
        if len(texty) == 2:
            what = f"text fields '{texty[0]}' and '{texty[1]}' (the two columns of text: a pair)"
        notes.append(what)
        return tuple(texty)
    found = f"several could be: {', '.join(texty)}" if texty else "none holds text in every row"
    raise DataError(
        f"{source}: could not tell which column holds the text (columns: {', '.join(columns)}; {found}); "
        "pass --text FIELD, or --text A --text B for sentence pairs"
    )


def _sort_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _classes(
    rows: Sequence[Mapping[str, Any]],
    label_field: str,
    given: Sequence[str] | None,
    names: list[str] | None,
    source: str,
) -> tuple[str, ...]:
    counts: Counter[str] = Counter()
    for record in rows:
        raw = record.get(label_field)
        if names is not None and isinstance(raw, int) and 0 <= raw < len(names):
            raw = names[raw]
        value = label_name(raw)
        if value is not None and not isinstance(raw, Mapping | list | tuple | set):
            counts[value] += 1
    if given is not None:
        classes = tuple(given)
        if len(set(classes)) != len(classes) or any(not c for c in classes):
            raise DataError(f"--labels {','.join(classes)}: the class names must be distinct and non-empty")
        extra = sorted(set(counts) - set(classes), key=_sort_key)
        if extra:
            listed = ", ".join(f"{short_repr(c)} ({counts[c]} rows)" for c in extra[:10])
            raise DataError(
                f"{source}: the label field '{label_field}' holds {listed}, which --labels does not list; "
                "add them to --labels or remove those rows"
            )
        empty = [c for c in classes if not counts.get(c)]
        if empty:
            raise DataError(
                f"--labels: the class(es) {', '.join(map(short_repr, empty))} have no row in {source}; "
                "remove them from --labels, or check the spelling (as written in the data)"
            )
    elif names is not None:
        classes = tuple(n for n in names if counts.get(n))
    else:
        classes = tuple(sorted(counts, key=_sort_key))
    if len(classes) < 2:
        found = f"one class only ({short_repr(classes[0])}, {counts[classes[0]]} rows)" if classes else "no labels"
        raise DataError(
            f"{source}: the label field '{label_field}' holds {found}; a classifier needs at least two classes: "
            "check --label, or add rows of the other classes"
        )
    return classes
