"""A prompt template engine that can only substitute plain names.

Templates are user text with ``{name}`` placeholders. Unlike ``str.format`` there is no attribute
access, indexing, conversion or format spec, so ``{text.__class__}`` is refused when the template
is parsed, not when a trial is half-way through. ``{{`` and ``}}`` write literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from promptsearch.errors import TemplateError

__all__ = ["Template"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FIX = "Placeholders are plain names such as {text}; write '{{' and '}}' for literal braces."


@dataclass(frozen=True)
class Placeholder:
    name: str


Segment = str | Placeholder


@dataclass(frozen=True)
class Template:
    """A parsed template: a sequence of literal strings and placeholders."""

    source: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        """Parse ``source``; raise :class:`TemplateError` on anything but ``{name}``, ``{{`` and ``}}``."""
        if not isinstance(source, str):
            raise TemplateError(f"a template must be a string, but found {type(source).__name__} {source!r}")
        segments: list[Segment] = []
        literal: list[str] = []
        i, n = 0, len(source)
        while i < n:
            ch = source[i]
            if ch == "{" and source.startswith("{{", i):
                literal.append("{")
                i += 2
            elif ch == "}" and source.startswith("}}", i):
                literal.append("}")
                i += 2
            elif ch == "{":
                end = source.find("}", i + 1)
                inner_open = source.find("{", i + 1)
                if end == -1 or (inner_open != -1 and inner_open < end):
                    raise TemplateError(f"unclosed '{{' at character {i} of template {source!r}. {_FIX}")
                name = source[i + 1 : end]
                if not _NAME.match(name):
                    raise TemplateError(
                        f"placeholder '{{{name}}}' is not allowed in template {source!r}: "
                        f"attribute access, indexing, conversions and format specs are refused. {_FIX}"
                    )
                if literal:
                    segments.append("".join(literal))
                    literal = []
                segments.append(Placeholder(name))
                i = end + 1
            elif ch == "}":
                raise TemplateError(f"single '}}' at character {i} of template {source!r}. {_FIX}")
            else:
                literal.append(ch)
                i += 1
        if literal:
            segments.append("".join(literal))
        return cls(source=source, segments=tuple(segments))

    @property
    def names(self) -> tuple[str, ...]:
        """Placeholder names in order of appearance (with repeats)."""
        return tuple(s.name for s in self.segments if isinstance(s, Placeholder))

    def slice(self, start: int, stop: int | None = None) -> Template:
        """The template made of ``segments[start:stop]``."""
        segments = self.segments[start:stop]
        return Template(source=_unparse(segments), segments=segments)

    def render(self, values: Mapping[str, str]) -> str:
        """Substitute every placeholder; a missing value raises :class:`TemplateError`."""
        out: list[str] = []
        for seg in self.segments:
            if isinstance(seg, Placeholder):
                if seg.name not in values:
                    raise TemplateError(
                        f"template {self.source!r} needs a value for '{{{seg.name}}}', "
                        f"but only {sorted(values)} are available"
                    )
                out.append(values[seg.name])
            else:
                out.append(seg)
        return "".join(out)


def _unparse(segments: tuple[Segment, ...]) -> str:
    parts = []
    for seg in segments:
        if isinstance(seg, Placeholder):
            parts.append("{" + seg.name + "}")
        else:
            parts.append(seg.replace("{", "{{").replace("}", "}}"))
    return "".join(parts)
