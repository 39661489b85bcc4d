"""Split a stored example prompt into its parts (instruction, demonstrations, query) for display.

Trials store their first rendered train prompt as text (the ``prompt_example`` user attribute).
The report shows it with the parts a reader looks for marked: the instruction, each
demonstration, the query, and every label word (plus the answer slot, e.g. ``[MASK]``). The split
uses only the trial's config, so it needs neither the data nor the tokenizer.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["PromptPart", "highlight_html", "split_prompt"]

PartKind = Literal["instruction", "demonstration", "query", "text"]
# answer slots of the usual tokenizers: the query's {label} holds the mask token
SLOTS = ("[MASK]", "<mask>", "<extra_id_0>")


@dataclass(frozen=True)
class PromptPart:
    kind: PartKind
    text: str


def split_prompt(
    text: str, prompt: Mapping[str, Any], parts: Sequence[Sequence[str]] | None = None
) -> list[PromptPart]:
    """The parts of a rendered prompt, given the trial's prompt config (``TrialConfig.prompt`` as a dict).

    >>> [p.kind for p in split_prompt("Classify.\\nbad film It was terrible.\\n\\ngood It was [MASK].",
    ...     {"instruction": "Classify.", "template": "{text} It was {label}.",
    ...      "demonstrations": {"count": 1, "separator": "\\n\\n"}})]
    ['instruction', 'demonstration', 'query']
    """
    if not prompt.get("template"):
        return [PromptPart("query", text)]
    if parts and "".join(p[1] for p in parts) == text:  # the renderer's own pieces (trial attr prompt_parts)
        return [PromptPart(kind, piece) for kind, piece in parts]  # type: ignore[arg-type]
    return _guess_parts(text, prompt)


def _guess_parts(text: str, prompt: Mapping[str, Any]) -> list[PromptPart]:
    """Studies from before prompt_parts: split by the instruction and the separator (may mis-split)."""
    parts: list[PromptPart] = []
    rest = text
    instruction = str(prompt.get("instruction") or "")
    if instruction and rest.startswith(instruction):
        head = instruction + ("\n" if rest[len(instruction) :].startswith("\n") else "")
        parts.append(PromptPart("instruction", head))
        rest = rest[len(head) :]
    demos = prompt.get("demonstrations") or {}
    separator = str(demos.get("separator") or "")
    if int(demos.get("count") or 0) > 0 and separator and separator in rest:
        *shown, query = rest.split(separator)
        parts.extend(PromptPart("demonstration", piece + separator) for piece in shown)
        parts.append(PromptPart("query", query))
        parts = [p for p in parts if p.text.strip()] or parts
    else:
        parts.append(PromptPart("query", rest))
    return parts


def _mark_words(text: str, words: Sequence[str]) -> str:
    """HTML-escape ``text`` and wrap each label word and answer slot in ``<mark>``."""
    targets = sorted({w for w in words if w.strip()} | set(SLOTS), key=len, reverse=True)
    if not targets:
        return html.escape(text)
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" if w[0].isalnum() else re.escape(w) for w in targets))
    out, last = [], 0
    for match in pattern.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        cls = "slot" if match.group(0) in SLOTS else "label-word"
        out.append(f'<mark class="{cls}">{html.escape(match.group(0))}</mark>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def highlight_html(text: str, prompt: Mapping[str, Any] | None, parts: Sequence[Sequence[str]] | None = None) -> str:
    """The prompt as HTML: parts in ``<span class="part-KIND">``, label words and the slot in ``<mark>``."""
    prompt = prompt or {}
    words = list((prompt.get("label_words") or {}).values())
    spans = []
    for part in split_prompt(text, prompt, parts):
        title = {"instruction": "instruction", "demonstration": "demonstration", "query": "query"}.get(part.kind, "")
        spans.append(f'<span class="part part-{part.kind}" title="{title}">{_mark_words(part.text, words)}</span>')
    return "".join(spans)
