"""YAML from a user is read within limits, and a key given twice is refused (#18 classes 2 and 8).

Each property generates its class (alias bombs of any width and depth, nesting past the limit,
recursive aliases, long numbers, oversized files, a duplicated key at any path) and checks it is
refused quickly with one message that names the file, the line and the key path, through
``parse_space``, ``load_space``, ``load_prompt_config``, the CLI's ``validate`` and ``--set``.
Other properties check that documents within the limits load exactly as PyYAML loads them and
that every shipped space, however it is restyled, still parses to the same spec.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import fuzz

from promptsearch.cli import main
from promptsearch.errors import ConfigError, PromptsearchError, SpaceError
from promptsearch.io.export import EXPORT_FORMAT, load_prompt_config
from promptsearch.space.search_space import load_space, parse_space
from promptsearch.space.yamlsafe import EXPORT_LIMITS, SPACE_LIMITS, load_yaml

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "search_spaces").rglob("*.yaml"))
SECONDS = 5.0  # generous for a loaded 2-core machine; before the limits, 7 alias levels took 9.5 s
LIMIT = SPACE_LIMITS.max_depth

names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
bases = st.one_of(st.just(""), st.sampled_from(SPACES).map(lambda p: p.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Case:
    """A hostile document: its text, a fragment its one message must hold, and the line it must name."""

    text: str
    expect: str
    line: int | None = None


def _embed(base: str, keys: list[str], value: str) -> tuple[str, int]:
    """``base`` with ``value`` (one line) added under the key path ``keys``, and the line of ``value``."""
    base = base if not base or base.endswith("\n") else base + "\n"
    keys = [f"x_{keys[0]}", *keys[1:]]  # never one of a space's own top-level keys
    lines = [f"{'  ' * i}{k}:" for i, k in enumerate(keys)]
    lines[-1] += f" {value}"
    return base + "\n".join(lines) + "\n", base.count("\n") + len(keys)


@st.composite
def alias_bombs(draw: st.DrawFn) -> Case:
    """Anchors repeated inside each other: each level holds ``width`` aliases to the one before."""
    width = draw(st.integers(2, 10))
    levels = math.ceil(math.log(2 * SPACE_LIMITS.max_alias_nodes) / math.log(width)) + draw(st.integers(0, 25))
    items = ["&a0 [lol]"]
    for i in range(1, levels + 1):
        if draw(st.booleans()):
            items.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
        else:
            items.append(f"&a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(width)) + "}")
    text, line = _embed(draw(bases), draw(st.lists(names, min_size=1, max_size=3)), "[" + ", ".join(items) + "]")
    return Case(text, f"more than the {SPACE_LIMITS.max_alias_nodes:,} allowed", line)


def _flow_nesting(kinds: list[bool], inner: str = "x") -> str:
    opened = "".join("[" if seq else "{k: " for seq in kinds)
    return opened + inner + "".join("]" if seq else "}" for seq in reversed(kinds))


@st.composite
def deep_documents(draw: st.DrawFn) -> Case:
    """Mappings and lists nested past the limit, in flow style (up to 3,000 deep) or block style."""
    keys = draw(st.lists(names, min_size=1, max_size=3))
    if draw(st.booleans()):
        kinds = draw(st.lists(st.booleans(), min_size=LIMIT, max_size=3000))
        text, line = _embed(draw(bases), keys, _flow_nesting(kinds))
        return Case(text, f"nested {LIMIT + 1} levels deep, more than the {LIMIT} allowed", line)
    kinds = draw(st.lists(st.booleans(), min_size=LIMIT, max_size=300))
    block = "".join(f"\n{'  ' * (len(keys) + i)}{'-' if seq else 'k:'}" for i, seq in enumerate(kinds))
    text, _ = _embed(draw(bases), keys, block + f"\n{'  ' * (len(keys) + len(kinds))}x")
    return Case(text, f"nested {LIMIT + 1} levels deep, more than the {LIMIT} allowed")


@st.composite
def recursive_aliases(draw: st.DrawFn) -> Case:
    """An alias inside the block its anchor names, under any nesting of lists and mappings."""
    around = draw(st.lists(st.booleans(), max_size=6))
    siblings = draw(st.lists(names, max_size=3))
    inner = _flow_nesting(around, "*r")
    value = "&r [" + ", ".join([*siblings, inner]) + "]" if draw(st.booleans()) else "&r {y: " + inner + "}"
    text, line = _embed(draw(bases), draw(st.lists(names, min_size=1, max_size=3)), value)
    return Case(text, "the alias *r stands for the block that contains it (anchor &r)", line)


@st.composite
def long_numbers(draw: st.DrawFn) -> Case:
    """Integers and floats written with more characters than any setting needs (decimal, sexagesimal, hex)."""
    n = draw(st.integers(SPACE_LIMITS.max_number_chars + 1, 200_000))
    number = draw(
        st.sampled_from(
            [
                "1" * n,
                "-" + "9" * (n - 1),
                ("1:" * n)[: n - (n % 2 == 0)],  # sexagesimal: 1:1:...:1, quadratic to convert
                "0x" + "f" * (n - 2),
                "1." + "5" * (n - 2),
            ]
        )
    )
    text, line = _embed(draw(bases), draw(st.lists(names, min_size=1, max_size=3)), number)
    return Case(text, f"a number written with {len(number):,} characters", line)


# --- duplicated keys: a copy of a key inserted after it, in any mapping of a document --------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(names, c, max_size=4)), max_leaves=12
)


def _node(value: Any) -> yaml.Node:
    return yaml.SafeDumper(io.StringIO()).represent_data(value)


def _mappings(node: yaml.Node, route: tuple[int, ...] = (), keys: tuple[str, ...] = ()) -> list[Any]:
    """Every mapping of a node tree with scalar keys: (route of positions, key path), at most 6 steps deep."""
    found = []
    if isinstance(node, yaml.MappingNode) and node.value and len(keys) <= 6:
        found.append((route, keys))
    children: list[tuple[Any, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        children = [(str(k.value), v) for k, v in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = list(enumerate(node.value))
    for i, (step, child) in enumerate(children):
        found += _mappings(child, (*route, i), (*keys, str(step)))
    return found


def _follow(node: yaml.Node, route: tuple[int, ...]) -> yaml.Node:
    for i in route:
        node = node.value[i][1] if isinstance(node, yaml.MappingNode) else node.value[i]
    return node


@st.composite
def duplicated_keys(draw: st.DrawFn) -> Case:
    """A real space or a random document, with one key of one mapping given again further down."""
    if draw(st.booleans()):
        root = yaml.compose(draw(st.sampled_from(SPACES)).read_text(encoding="utf-8"))
    else:
        root = _node(draw(st.dictionaries(names, values, min_size=1, max_size=6)))
    route, keys = draw(st.sampled_from(_mappings(root)))
    mapping = _follow(root, route)
    i = draw(st.integers(0, len(mapping.value) - 1))
    key = mapping.value[i][0]
    j = draw(st.integers(i + 1, len(mapping.value)))
    mapping.value.insert(j, (yaml.ScalarNode(key.tag, key.value, style=key.style), _node(draw(values))))
    text = yaml.serialize(root, Dumper=yaml.SafeDumper, allow_unicode=True, width=draw(st.integers(40, 200)))
    again = _follow(yaml.compose(text), route)  # PyYAML itself keeps both keys: find their lines
    first, second = (again.value[n][0].start_mark.line + 1 for n in (i, j))
    path = ".".join((*keys, str(key.value)))
    return Case(
        text, f"{path}: the key {key.value!r} is given twice in one mapping (lines {first} and {second})", second
    )


CLASSES: dict[str, st.SearchStrategy[Case]] = {
    "alias bomb": alias_bombs(),
    "deep nesting": deep_documents(),
    "recursive alias": recursive_aliases(),
    "long number": long_numbers(),
    "duplicate key": duplicated_keys(),
}


def _refused(call: Callable[[], object], error: type[PromptsearchError]) -> PromptsearchError:
    start = time.monotonic()
    with pytest.raises(error) as caught:
        call()
    assert time.monotonic() - start < SECONDS
    return caught.value


def _check_space_message(case: Case, path: Path) -> None:
    exc = _refused(lambda: parse_space(case.text, path=path), SpaceError)
    assert isinstance(exc, SpaceError)
    assert len(exc.messages) == 1, exc.messages
    message = exc.messages[0]
    assert case.expect in message
    where = f"{path}:{case.line}: " if case.line is not None else f"{path}:"
    assert message.startswith(where), message
    assert "x_" in message or "the key" in message  # the key path is named


# --- the properties, class by class -----------------------------------------------------------------


@fuzz(25)
@given(case=alias_bombs())
def test_alias_bombs_are_refused_quickly(case: Case) -> None:
    _check_space_message(case, REPO / "search_spaces" / "bomb.yaml")


@fuzz(25)
@given(case=deep_documents())
def test_nesting_past_the_limit_is_refused(case: Case) -> None:
    _check_space_message(case, REPO / "search_spaces" / "deep.yaml")


@fuzz(25)
@given(case=recursive_aliases())
def test_recursive_aliases_are_refused(case: Case) -> None:
    _check_space_message(case, REPO / "search_spaces" / "loop.yaml")


@fuzz(25)
@given(case=long_numbers())
def test_numbers_longer_than_any_setting_are_refused(case: Case) -> None:
    _check_space_message(case, REPO / "search_spaces" / "number.yaml")


@fuzz(40)
@given(case=duplicated_keys())
def test_a_key_given_twice_is_refused_with_both_lines(case: Case) -> None:
    exc = _refused(lambda: parse_space(case.text, path=Path("twice.yaml")), SpaceError)
    assert isinstance(exc, SpaceError)
    assert exc.messages == [
        f"twice.yaml:{case.line}: {case.expect}, and only the last would count; remove one of them or rename it"
    ]


@fuzz(30)
@given(
    keys=st.lists(names, min_size=1, max_size=3), alias=st.integers(3, LIMIT - 5), over=st.booleans(), data=st.data()
)
def test_an_alias_counts_the_depth_it_expands_to(keys: list[str], alias: int, over: bool, data: st.DataObject) -> None:
    """An anchored block within the limit, repeated by an alias nested so deep that the copy may pass it."""
    room = LIMIT - len(keys) - 2 - alias  # the top level, the keys, b and its lists take the rest
    size = data.draw(st.integers(room + 1, LIMIT - 5) if over else st.integers(1, room))
    anchored = data.draw(st.lists(st.booleans(), min_size=size, max_size=size))
    copy = _flow_nesting([True] * alias, "*deep")
    text, line = _embed("", keys, "{a: &deep " + _flow_nesting(anchored) + ", b: " + copy + "}")
    depth = len(keys) + 2 + alias + size
    if not over:
        assert load_yaml(text, where="s.yaml", limits=SPACE_LIMITS).data is not None
        return
    exc = _refused(lambda: parse_space(text, path=Path("s.yaml")), SpaceError)
    assert str(exc).startswith(f"s.yaml:{line}: x_{keys[0]}.")
    assert f"nested {depth} levels deep through the alias *deep, more than the {LIMIT} allowed" in str(exc)


@fuzz(10)
@given(extra=st.integers(1, 1 << 32), export=st.booleans())
def test_files_over_the_size_limit_are_refused_unread(tmp_path: Path, extra: int, export: bool) -> None:
    """A sparse file of up to 4 GB: refused from its size, in well under the time it would take to read."""
    limits = EXPORT_LIMITS if export else SPACE_LIMITS
    path = tmp_path / "big.yaml"
    with path.open("wb") as fh:
        fh.write(f"format: {EXPORT_FORMAT}\nname: x\n".encode())
        fh.truncate(limits.max_bytes + extra)
    load: Callable[[], object] = (lambda: load_prompt_config(path)) if export else (lambda: load_space(path))
    exc = _refused(load, ConfigError if export else SpaceError)
    assert str(exc) == (
        f"{path}: {limits.max_bytes + extra:,} bytes, more than the {limits.max_bytes:,} bytes allowed for "
        f"{limits.what}; {limits.fix}"
    )


@fuzz(10)
@given(extra=st.integers(1, 5000))
def test_text_over_the_size_limit_is_refused(extra: int) -> None:
    text = "name: x\n#" + "-" * (SPACE_LIMITS.max_bytes + extra - 10) + "\n"
    exc = _refused(lambda: parse_space(text, path=Path("s.yaml")), SpaceError)
    assert f"s.yaml: {SPACE_LIMITS.max_bytes + extra:,} bytes, more than" in str(exc)


# --- no false positives -----------------------------------------------------------------------------


@fuzz(60)
@given(doc=st.dictionaries(names, values, max_size=6), shared=values, flow=st.booleans())
def test_documents_within_the_limits_load_as_pyyaml_loads_them(doc: dict[str, Any], shared: Any, flow: bool) -> None:
    """Any document ``safe_dump`` writes, with anchors and aliases for shared values, loads unchanged."""
    doc = {**doc, "shared_a": shared, "shared_b": [shared, {"again": shared}]}  # one object thrice: aliases
    text = yaml.safe_dump(doc, allow_unicode=True, default_flow_style=flow)
    loaded = load_yaml(text, where="doc.yaml", limits=SPACE_LIMITS)
    assert loaded.data == yaml.safe_load(text) == doc
    assert loaded.lines[()] >= 1 and all(line >= 1 for line in loaded.lines.values())


@pytest.mark.parametrize("path", SPACES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_space_still_parses(path: Path) -> None:
    assert load_space(path).spec is not None


@fuzz(30)
@given(path=st.sampled_from(SPACES), flow=st.booleans(), indent=st.integers(2, 8), width=st.integers(30, 200))
def test_shipped_spaces_restyled_parse_to_the_same_spec(path: Path, flow: bool, indent: int, width: int) -> None:
    """The same settings in flow or block style, at any indent and width."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    text = yaml.safe_dump(raw, allow_unicode=True, default_flow_style=flow, indent=indent, width=width)
    assert parse_space(text, path=path).spec == load_space(path).spec


def test_keys_that_read_as_the_same_value_are_duplicates() -> None:
    """``1`` and ``true`` differ as text, but are one key of a Python dict."""
    text = "name: x\nlabels:\n  1: a\n  true: b\n"
    exc = _refused(lambda: parse_space(text, path=Path("s.yaml")), SpaceError)
    assert str(exc) == (
        "s.yaml:4: labels.true: the keys '1' (line 3) and 'true' (line 4) are the same key once read "
        "(YAML reads both as 1), and only the last would count; remove one of them or rename it"
    )


def test_merge_keys_may_repeat_and_be_overridden() -> None:
    """``<<`` may appear more than once, and a key given next to a merge overrides the merged one."""
    text = "base: &b {x: 1, y: 2}\nmore: &m {z: 3}\nuse:\n  <<: *b\n  <<: *m\n  x: 9\n"
    assert load_yaml(text, where="s.yaml", limits=SPACE_LIMITS).data["use"] == {"x": 9, "y": 2, "z": 3}


# --- the same classes through every reader of user YAML -------------------------------------------


@pytest.mark.parametrize("kind", CLASSES)
@fuzz(3)
@given(data=st.data())
def test_validate_exits_2_with_one_message(
    kind: str, data: st.DataObject, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = data.draw(CLASSES[kind])
    path = tmp_path / "space.yaml"
    path.write_text(case.text, encoding="utf-8")
    start = time.monotonic()
    assert main(["validate", str(path)]) == 2
    assert time.monotonic() - start < SECONDS
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("error:") == 1 and err.startswith(f"error: {path}:"), err
    assert case.expect in " ".join(err.split()), err


@pytest.mark.parametrize("kind", CLASSES)
@fuzz(3)
@given(data=st.data())
def test_best_prompt_files_are_read_within_the_same_limits(kind: str, data: st.DataObject, tmp_path: Path) -> None:
    case = data.draw(CLASSES[kind])
    path = tmp_path / "best_prompt.yaml"
    path.write_text(case.text + f"format: {EXPORT_FORMAT}\n", encoding="utf-8")  # last: the lines stay
    exc = _refused(lambda: load_prompt_config(path), ConfigError)
    assert str(exc).startswith(f"{path}:{case.line}: " if case.line is not None else f"{path}:"), str(exc)
    assert case.expect in str(exc)


@fuzz(5)
@given(
    value=st.one_of(
        alias_bombs().map(lambda c: c.text.splitlines()[-1].split(": ", 1)[1]),
        st.lists(st.booleans(), min_size=LIMIT, max_size=1000).map(_flow_nesting),
        st.lists(st.booleans(), max_size=5).map(lambda kinds: "&r [" + _flow_nesting(kinds, "*r") + "]"),
        st.lists(names, min_size=1, max_size=5, unique=True).map(
            lambda ks: "{" + ", ".join(f"k{k}: 1" for k in [*ks, ks[0]]) + "}"
        ),
    )
)
def test_set_values_are_read_within_the_limits(
    value: str, tiny_space: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", str(tiny_space), "--set", f"prompt.instruction={value}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("error:") == 1 and err.startswith("error: --set prompt.instruction: "), err


def test_validate_in_a_real_process_refuses_an_alias_bomb(tmp_path: Path) -> None:
    """The probe's case: nine levels of nine aliases ran past 90 s; now one message, at once."""
    lines = ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "promptsearch.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {path}:6: a5.") and "aliases expand this document" in result.stderr
