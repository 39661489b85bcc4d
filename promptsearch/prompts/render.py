"""Prompt rendering: instruction + demonstrations (with their gold label words) + the query.

The template's *example part* is everything after its last ``{instruction}``/``{demos}``
placeholder; demonstrations and the query are both rendered with it. Without ``{instruction}``
a non-empty instruction goes first, followed by a newline; without ``{demos}`` the demonstrations
go right before the query. In the query the ``{label}`` slot holds ``slot`` (the tokenizer's mask
token), or, with ``stop_at_slot`` (causal heads), the query ends where ``{label}`` starts; the
slot text is removed from the data so that a prompt never holds two. When a prompt is longer than
``max_length`` tokens,
demonstrations are dropped from the end first; then the query's longest text is cut by words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from promptsearch.errors import TemplateError
from promptsearch.io.data import Example
from promptsearch.prompts.demos import DemoSelector, get_selector
from promptsearch.space.config import PromptConfig
from promptsearch.space.template import Template

__all__ = ["PromptRenderer", "RenderedPrompt"]

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered query. ``text_pair`` is set only for plain (template-less) sentence pairs."""

    text: str
    label: str
    text_pair: str | None = None
    demos: tuple[Example, ...] = ()
    demos_requested: int = 0
    query_truncated: bool = False
    parts: tuple[tuple[str, str], ...] = ()  # (kind, text): instruction, demonstration, text, query; joined = text

    @property
    def demos_dropped(self) -> int:
        return self.demos_requested - len(self.demos)


class PromptRenderer:
    """Renders queries for one :class:`PromptConfig`; demonstrations come from ``pool`` (train only)."""

    def __init__(
        self,
        config: PromptConfig,
        pool: Sequence[Example],
        *,
        slot: str = "",
        count_tokens: TokenCounter | None = None,
        max_length: int | None = None,
        stop_at_slot: bool = False,
    ) -> None:
        self.config = config
        self.slot = slot
        self.count_tokens = count_tokens
        self.max_length = max_length
        self._selector: DemoSelector | None = None
        if config.template is not None:
            tpl = Template.parse(config.template)
            names = tpl.names
            cut = max((i for i, s in enumerate(tpl.segments) if _is(s, ("instruction", "demos"))), default=-1)
            self._head = tpl.slice(0, cut + 1)
            self._example = tpl.slice(cut + 1)
            self._query = self._example
            at = next((i for i, s in enumerate(self._example.segments) if _is(s, ("label",))), None)
            before = self._example.segments[at - 1] if at else ""
            self._space_before_slot = isinstance(before, str) and before[-1:].isspace()
            if stop_at_slot:
                at = next(i for i, s in enumerate(self._example.segments) if _is(s, ("label",)))
                self._query = self._example.slice(0, at)
            self._has_instruction = "instruction" in names
            self._has_demos = "demos" in names
            if config.demonstrations.count > 0:
                demos = config.demonstrations
                self._selector = get_selector(demos.selection, pool, seed=config.seed, demo_set=demos.set)

    def render(self, query: Example) -> RenderedPrompt:
        """Render ``query`` (deterministic), fitting ``max_length`` when a token counter is given."""
        if self.config.template is None:  # the texts alone, the instruction (if any) before the first
            texts = list(query.fields.values())
            first = f"{self.config.instruction} {texts[0]}" if self.config.instruction else texts[0]
            return RenderedPrompt(text=first, text_pair=texts[1] if len(texts) > 1 else None, label=query.label)
        k = self.config.demonstrations.count
        demos = self._selector.select(query, k) if self._selector is not None and k > 0 else []
        available = len(demos)  # the pool may hold fewer than k: only truncation counts as dropping
        fields = self._clean(query.fields)
        text = self._compose(demos, fields)
        truncated = False
        if self.count_tokens is not None and self.max_length is not None:
            while demos and self.count_tokens(text) > self.max_length:
                demos = demos[:-1]
                text = self._compose(demos, fields)
            if self.count_tokens(text) > self.max_length:
                fields, truncated = self._cut_query(demos, fields), True
                text = self._compose(demos, fields)
                if self.count_tokens(text) > self.max_length:
                    empty = self.count_tokens(self._compose([], dict.fromkeys(fields, "")))
                    raise TemplateError(
                        f"the instruction and template alone take {empty} tokens, more than model.max_length "
                        f"({self.max_length}), so no text of the query fits; shorten the instruction or the "
                        "template, or raise model.max_length"
                    )
        return RenderedPrompt(
            text=text,
            label=query.label,
            demos=tuple(demos),
            demos_requested=available,
            query_truncated=truncated,
            parts=tuple(self._parts(demos, fields)),
        )

    def render_all(self, rows: Sequence[Example]) -> list[RenderedPrompt]:
        return [self.render(row) for row in rows]

    def _compose(self, demos: Sequence[Example], fields: Mapping[str, str]) -> str:
        return "".join(text for _, text in self._parts(demos, fields))

    def _parts(self, demos: Sequence[Example], fields: Mapping[str, str]) -> list[tuple[str, str]]:
        """The prompt as (kind, text) pieces: instruction, demonstration (each), text (template), query."""
        words = {k: self._demo_word(w) for k, w in self.config.label_words.items()}
        sep = self.config.demonstrations.separator
        shown = [
            ("demonstration", self._example.render({**self._clean(d.fields), "label": words[d.label]}) + sep)
            for d in demos
        ]
        parts: list[tuple[str, str]] = []
        if self.config.instruction and not self._has_instruction:
            parts.append(("instruction", self.config.instruction + "\n"))
        for seg in self._head.segments:
            if _is(seg, ("instruction",)):
                parts.append(("instruction", self.config.instruction))
            elif _is(seg, ("demos",)):
                parts.extend(shown)
            else:
                parts.append(("text", str(seg)))
        if not self._has_demos:
            parts.extend(shown)
        parts.append(("query", self._query.render({**fields, "label": self.slot})))
        out: list[tuple[str, str]] = []
        for kind, text in parts:  # the prompt starts at its first non-blank character
            text = text if out else text.lstrip()
            if text:
                out.append((kind, text))
        return out

    def _demo_word(self, word: str) -> str:
        """A word's own leading space is dropped where the template already has one (``great`` = `` great``)."""
        return word.lstrip() if self._space_before_slot else word

    def _clean(self, fields: Mapping[str, str]) -> dict[str, str]:
        if not self.slot:
            return dict(fields)
        return {k: v.replace(self.slot, " ") for k, v in fields.items()}

    def _cut_query(self, demos: Sequence[Example], fields: dict[str, str]) -> dict[str, str]:
        """The query's fields with its longest text cut by words to the most that fits."""
        assert self.count_tokens is not None and self.max_length is not None
        name = max(fields, key=lambda f: len(fields[f]))
        words = fields[name].split()
        lo, hi = 0, len(words)
        while lo < hi:  # largest n such that the first n words fit
            mid = (lo + hi + 1) // 2
            if self.count_tokens(self._compose(demos, {**fields, name: " ".join(words[:mid])})) <= self.max_length:
                lo = mid
            else:
                hi = mid - 1
        return {**fields, name: " ".join(words[:lo])}


def _is(segment: object, names: tuple[str, ...]) -> bool:
    return getattr(segment, "name", None) in names
