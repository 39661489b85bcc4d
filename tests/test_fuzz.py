"""Property-based fuzzing of every entry point that reads user files (hypothesis).

The outcome is correct behaviour or one of our own errors (a PromptsearchError with a message that
names the file, key or row); never another exception. CI runs each property with a fixed seed
and a bounded number of examples; ``--fuzz-long`` (or PROMPTSEARCH_FUZZ_LONG=1) runs many more.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptsearch.errors import DataError, PromptsearchError, SpaceError, TemplateError
from promptsearch.io.data import Example, load_split, load_task_data, make_examples, read_rows
from promptsearch.prompts.demos import get_selector, selector_names
from promptsearch.space.search_space import parse_space
from promptsearch.space.spec import TaskSpec
from promptsearch.space.template import Template

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "search_spaces").rglob("*.yaml"))
LONG = os.environ.get("PROMPTSEARCH_FUZZ_LONG") == "1"


def fuzz(n_ci: int, n_long: int = 5000) -> Any:
    return settings(
        max_examples=n_long if LONG else n_ci,
        derandomize=not LONG,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
        database=None,
    )


# --- the search-space loader ----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
yaml_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _check_space(text: str, path: Path) -> None:
    try:
        space = parse_space(text, path=path)
    except SpaceError as exc:
        assert exc.messages and all(str(path) in m for m in exc.messages), exc.messages
        return
    try:  # a valid space: its data loads, or the data error is ours
        load_task_data(space.spec.task, space.base_dir)
    except PromptsearchError as exc:
        assert str(exc)


@fuzz(150)
@given(doc=yaml_values)
def test_random_yaml_documents(doc: Any) -> None:
    _check_space(yaml.safe_dump(doc, allow_unicode=True), REPO / "search_spaces" / "fuzz.yaml")


@fuzz(150)
@given(text=st.text(max_size=300))
def test_random_text_as_yaml(text: str) -> None:
    _check_space(text, REPO / "search_spaces" / "fuzz.yaml")


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if how == "drop":
        del parent[key]
    elif how == "rename" and isinstance(parent, dict):
        parent[f"{key}_x" if isinstance(key, str) else str(key)] = parent.pop(key)
    elif how == "nest":
        parent[key] = [parent[key]]
    else:
        parent[key] = value
    return doc


@pytest.mark.parametrize("space_file", SPACES, ids=[p.name for p in SPACES])
@fuzz(60, 2000)
@given(data=st.data())
def test_mutations_of_the_shipped_spaces(space_file: Path, data: st.DataObject) -> None:
    doc = yaml.safe_load(space_file.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        how = data.draw(st.sampled_from(["drop", "rename", "nest", "retype"]))
        value = data.draw(
            st.one_of(
                scalars, st.sampled_from([-1, 0, 10**12, -(10**12), 1e308, "ünï©ødé ✓", [], {}, "{text.__class__}"])
            )
        )
        doc = _mutate(doc, path, how, value)
    _check_space(yaml.safe_dump(doc, allow_unicode=True), space_file)


# --- the template engine --------------------------------------------------------------------------

template_text = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "{",
                "}",
                "{{",
                "}}",
                "{text}",
                "{label}",
                "{text.__class__}",
                "{0}",
                "{text!r}",
                "{text:>10}",
                "{text[0]}",
                "{% if x %}",
                "{{x}}",
                "${x}",
                "%s",
                ".",
                "\n",
                "\x00",
                "\x1b[31m",
                " ",
            ]
        ),
        st.text(max_size=5),
    ),
    max_size=12,
).map("".join)


@fuzz(300, 20000)
@given(source=template_text, value=st.text(max_size=2000))
def test_random_templates(source: str, value: str) -> None:
    try:
        tpl = Template.parse(source)
    except TemplateError as exc:
        assert repr(source) in str(exc)  # every message quotes the template it refuses
        return
    out = tpl.render(dict.fromkeys(tpl.names, value))
    assert isinstance(out, str)
    if not tpl.names:  # only literals: braces unescaped, nothing else changes
        assert out == source.replace("{{", "{").replace("}}", "}")


# --- demonstration selection ----------------------------------------------------------------------

rows = st.lists(
    st.tuples(st.sampled_from(["a", "b", "a b", "!!", "x y z", "é", ""]), st.sampled_from(["pos", "neg", "neu"])),
    min_size=1,
    max_size=8,
)


@fuzz(200, 10000)
@given(pool_rows=rows, query_index=st.integers(0, 7), k=st.integers(0, 9), seed=st.integers(0, 3))
def test_demonstration_selection(pool_rows: list[tuple[str, str]], query_index: int, k: int, seed: int) -> None:
    pool = [Example(fields={"text": t or "x"}, label=lab) for t, lab in pool_rows]
    query = pool[query_index % len(pool)]
    for name in selector_names():
        picked = get_selector(name, pool, seed=seed).select(query, k)
        assert len(picked) <= k
        assert all(ex.key != query.key for ex in picked)
        assert picked == get_selector(name, pool, seed=seed).select(query, k)


# --- the data loader ------------------------------------------------------------------------------

TASK = TaskSpec.model_validate({"data": {"dir": "."}, "labels": ["negative", "positive"]})
json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
records = st.dictionaries(st.sampled_from(["text", "label", "other", ""]), json_values, max_size=4)


def _check_file(path: Path) -> None:
    try:
        rows = make_examples(read_rows(path), TASK, str(path))
    except DataError as exc:
        assert str(path) in str(exc), str(exc)
        return
    assert rows and all(ex.label in ("negative", "positive") and ex.fields["text"].strip() for ex in rows)


@fuzz(150, 5000)
@given(
    lines=st.lists(
        st.one_of(records.map(json.dumps), st.text(max_size=40), st.just(""), st.just("{broken")), max_size=8
    ),
    bom=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]),
)
def test_jsonl_files(tmp_path_factory: pytest.TempPathFactory, lines: list[str], bom: bool, encoding: str) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "train.jsonl"
    text = ("\ufeff" if bom else "") + "\n".join(lines)
    path.write_bytes(text.encode(encoding, errors="replace"))
    _check_file(path)


@fuzz(30, 1000)
@given(
    header=st.sampled_from(["text,label", "label,text", "text", "txt,label", '"text","label"']),
    cells=st.lists(
        st.tuples(st.text(max_size=15), st.sampled_from(["negative", "positive", "", "3", '"q"'])), max_size=5
    ),
    quote=st.booleans(),
)
def test_csv_files(
    tmp_path_factory: pytest.TempPathFactory, header: str, cells: list[tuple[str, str]], quote: bool
) -> None:
    directory = tmp_path_factory.mktemp("csv")
    path = directory / "train.csv"

    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if quote else value

    body = "\n".join(f"{cell(t)},{cell(lab)}" for t, lab in cells)
    path.write_text(header + ("\n" + body if body else "") + "\n", encoding="utf-8")
    os.environ.setdefault("HF_DATASETS_CACHE", str(directory / "cache"))
    _check_file(path)
    with contextlib.suppress(DataError):  # the same file through the split loader: ok or our error
        load_split(TASK, "train", directory)
