"""Read YAML that a user wrote, within limits: size, nesting depth, alias expansion, and no key twice.

PyYAML's safe loader builds no Python objects from tags, but it sets no limits. Anchors and aliases
nested in each other ("billion laughs") let a few hundred bytes stand for billions of nodes, which
every later walk of the data visits; a recursive alias or a few thousand nested brackets end in a
``RecursionError``; a long sexagesimal integer (``1:2:3:...``) takes quadratic time to convert; and
a key given twice in one mapping silently keeps the last value. The loader here counts while it
composes the node tree, before any Python object is built, and the first limit passed, or every key
given twice, becomes one message naming the file, the line and the key path. It also records the
line of every key path, so no caller walks the tree (or its aliases) again for line numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from promptsearch.errors import PromptsearchError, SpaceError

__all__ = ["EXPORT_LIMITS", "SET_VALUE_LIMITS", "SPACE_LIMITS", "YamlDocument", "YamlLimits", "load_yaml", "read_text"]

MERGE_TAG = "tag:yaml.org,2002:merge"
NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
MAX_SHOWN_STEPS = 8
Lines = dict[tuple[Any, ...], int]


@dataclass(frozen=True)
class YamlLimits:
    """How much one YAML document may hold; ``what`` names the document and ``fix`` says how to make it smaller."""

    what: str
    max_bytes: int
    fix: str
    max_depth: int = 64  # the shipped spaces nest 5 levels; Python's recursion limit is far above 64
    max_alias_nodes: int = 100_000  # nodes that aliases add when expanded (a shipped space has a few hundred)
    max_number_chars: int = 100  # no setting needs a number this long; longer integers cost quadratic time


SPACE_LIMITS = YamlLimits(
    "a search-space file",
    1 << 20,
    "a search space is a few KB of settings (the shipped ones are under 5 KB); check that this is the right file",
)
EXPORT_LIMITS = YamlLimits(
    "a best-prompt file",
    64 << 20,
    "it holds the train rows that demonstrations are drawn from; export from a smaller train split",
)
SET_VALUE_LIMITS = YamlLimits("a --set value", 64 << 10, "give a shorter value")


@dataclass(frozen=True)
class YamlDocument:
    """The data of one YAML document and the line of every key path in it (``()`` is the top level)."""

    data: Any
    lines: Lines


def read_text(path: Path, *, limits: YamlLimits, error: type[PromptsearchError] = SpaceError) -> str:
    """The UTF-8 text of ``path``, read only up to ``limits.max_bytes`` (a larger file is refused, not read).

    ``OSError`` and ``UnicodeDecodeError`` reach the caller, which words them for its file.
    """
    with path.open("rb") as fh:
        data = fh.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise _errors(error, [_size_message(str(path), max(len(data), path.stat().st_size), limits)])
    return data.decode("utf-8")


def load_yaml(
    text: str, *, where: str, limits: YamlLimits, error: type[PromptsearchError] = SpaceError, lines: bool = True
) -> YamlDocument:
    """Load one YAML document from ``text`` (safe tags only) within ``limits``.

    A limit passed or a duplicated key raises ``error`` naming ``where`` (and the line, with ``lines``);
    text that is no YAML raises ``yaml.YAMLError`` as PyYAML words it, for the caller to word for its file.

    >>> load_yaml("a: 1\\nb: [x, y]\\n", where="s.yaml", limits=SPACE_LIMITS).lines[("b", 1)]
    2
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise _errors(error, [_size_message(where, size, limits)])
    loader = _Loader(text, where=where, limits=limits, error=error, lines=lines)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return YamlDocument(data=data, lines=loader.line_of)


def _size_message(where: str, size: int, limits: YamlLimits) -> str:
    return f"{where}: {size:,} bytes, more than the {limits.max_bytes:,} bytes allowed for {limits.what}; {limits.fix}"


def _errors(error: type[PromptsearchError], messages: list[str]) -> PromptsearchError:
    """``error`` carrying ``messages``: a SpaceError keeps them as its lines, the others join them."""
    return SpaceError(messages) if issubclass(error, SpaceError) else error("\n".join(messages))


def _line(mark: Any) -> int:
    """The 1-based line of a PyYAML mark (0 where PyYAML gives none)."""
    return mark.line + 1 if mark is not None else 0


def _step(parent: Node | None, index: Any) -> str | int | None:
    """The key-path step of a node composed at ``index`` of ``parent`` (None for the top and for keys)."""
    if isinstance(index, Node):  # a mapping value: index is its key
        return str(index.value) if isinstance(index, ScalarNode) else "?"
    return index if isinstance(index, int) and parent is not None else None


class _Loader(yaml.SafeLoader):
    """A safe loader that checks its limits and duplicate keys while it composes, before it constructs."""

    def __init__(
        self, text: str, *, where: str, limits: YamlLimits, error: type[PromptsearchError], lines: bool
    ) -> None:
        super().__init__(text)
        self.where, self.limits, self.error, self.lines = where, limits, error, lines
        self.line_of: Lines = {}
        self._path: list[Any] = []
        self._depth = 0  # of the node being composed (the top-level node is at depth 1)
        self._deepest = 0  # the deepest depth reached, aliases expanded, in the subtree being composed
        self._alias_nodes = 0  # nodes that the aliases so far add when expanded
        self._nodes = 0  # nodes so far, aliases expanded
        self._extent: dict[str, tuple[int, int]] = {}  # anchor -> (its nodes, aliases expanded; its height)
        self._open: set[str] = set()  # anchors of the nodes being composed: an alias to one of them recurses
        self._duplicates: list[tuple[int, str]] = []

    # --- composition, with the counts ---------------------------------------------------------------------

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        step = _step(parent, index)
        if step is not None:
            self._path.append(step)
        try:
            event = self.peek_event()
            here = tuple(self._path)
            if isinstance(index, Node):
                self.line_of[here] = _line(index.start_mark)  # a key's own line wins over its value's
            self.line_of.setdefault(here, _line(event.start_mark))
            if isinstance(event, yaml.AliasEvent):
                return self._compose_alias(event, parent, index)
            return self._compose_new(event, parent, index)
        finally:
            if step is not None:
                self._path.pop()

    def _compose_alias(self, event: yaml.AliasEvent, parent: Node | None, index: Any) -> Node | None:
        name = str(event.anchor)
        line = _line(event.start_mark)
        if name in self._open:
            raise self._fail(
                line,
                f"the alias *{name} stands for the block that contains it (anchor &{name}), so it would nest "
                "without end; write out the values it should repeat instead",
            )
        node = super().compose_node(parent, index)  # PyYAML refuses an undefined alias
        size, height = self._extent[name]
        self._nodes += size
        self._alias_nodes += size
        if self._alias_nodes > self.limits.max_alias_nodes:
            raise self._fail(
                line,
                f"aliases expand this document by {self._alias_nodes:,} nodes here (*{name} repeats {size:,}), "
                f"more than the {self.limits.max_alias_nodes:,} allowed; anchors repeated inside each other "
                "grow exponentially, so write the repeated values out or use fewer aliases",
            )
        self._reach(self._depth + height, line, f" through the alias *{name}")
        return node

    def _compose_new(self, event: Any, parent: Node | None, index: Any) -> Node | None:
        anchor = event.anchor
        self._depth += 1
        outer_deepest, self._deepest = self._deepest, 0
        self._reach(self._depth, _line(event.start_mark), "")
        before = self._nodes
        self._nodes += 1
        if anchor is not None:
            self._open.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open.discard(anchor)
            self._extent[anchor] = (self._nodes - before, self._deepest - self._depth + 1)
        if isinstance(node, ScalarNode):
            self._check_number(node)
        elif isinstance(node, MappingNode):
            self._check_keys(node)
        self._deepest = max(outer_deepest, self._deepest)
        self._depth -= 1
        return node

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if self._duplicates:
            raise _errors(self.error, [text for _, text in sorted(self._duplicates)])
        return node

    # --- the checks ---------------------------------------------------------------------------------------

    def _reach(self, depth: int, line: int, how: str) -> None:
        self._deepest = max(self._deepest, depth)
        if depth > self.limits.max_depth:
            raise self._fail(
                line,
                f"nested {depth} levels deep{how}, more than the {self.limits.max_depth} allowed; "
                "no promptsearch setting needs more than a few levels: check for unclosed brackets, or flatten it",
            )

    def _check_number(self, node: ScalarNode) -> None:
        if node.tag in NUMBER_TAGS and len(node.value) > self.limits.max_number_chars:
            raise self._fail(
                _line(node.start_mark),
                f"a number written with {len(node.value):,} characters, more than the "
                f"{self.limits.max_number_chars} allowed; no setting needs one this long (quote it if it is text)",
            )

    def _check_keys(self, node: MappingNode) -> None:
        """Record every key of ``node`` that equals an earlier one (merge keys ``<<`` may repeat)."""
        seen: dict[Any, ScalarNode] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == MERGE_TAG:
                continue  # a non-scalar key is refused as unhashable when the mapping is constructed
            first = seen.setdefault(self._key_value(key), key)
            if first is not key:
                self._duplicates.append((_line(key.start_mark), self._duplicate_message(first, key)))

    def _key_value(self, key: ScalarNode) -> Any:
        """The Python value of a key, as the constructed dict will hold it (so ``1`` and ``true`` collide)."""
        try:
            value = self.construct_object(key)
            hash(value)
        except (yaml.YAMLError, TypeError, ValueError):
            return (key.tag, key.value)  # construction refuses it later, with PyYAML's own message
        return value

    def _duplicate_message(self, first: ScalarNode, second: ScalarNode) -> str:
        a, b = _line(first.start_mark), _line(second.start_mark)
        at = f" (lines {a} and {b})" if self.lines else ""
        if first.value == second.value:
            said = f"the key {second.value!r} is given twice in one mapping{at}"
        else:
            lines = (f" (line {a})", f" (line {b})") if self.lines else ("", "")
            said = (
                f"the keys {first.value!r}{lines[0]} and {second.value!r}{lines[1]} are the same key once read "
                "(YAML reads both as " + repr(self._key_value(first)) + ")"
            )
        return self._message(b, f"{said}, and only the last would count; remove one of them or rename it", key=second)

    def _fail(self, line: int, text: str) -> PromptsearchError:
        return _errors(self.error, [self._message(line, text)])

    def _message(self, line: int, text: str, *, key: ScalarNode | None = None) -> str:
        path = [str(p) for p in (*self._path, *([key.value] if key is not None else []))]
        if len(path) > MAX_SHOWN_STEPS:  # a path 64 levels deep says less than its ends
            path = [*path[: MAX_SHOWN_STEPS // 2], "...", *path[-2:]]
        loc = ".".join(path) or "(top level)"
        return f"{self.where}{f':{line}' if self.lines else ''}: {loc}: {text}"
