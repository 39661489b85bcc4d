"""Label words from the class names, checked against each model's tokenizer, and the texts' length in tokens.

A class name is a good label word when every tokenizer reads it as one token (a causal model after a space,
as a template writes ``Answer: {label}``; a masked LM in the mask's place): its score is then one token's
probability, not a product that favours short words. Where a name is several tokens, a second map offers a
single-token word for each class: a part of the name (``sci`` for ``sci/tech``) or, failing that, the
class's letter (``A``, ``B``, ...).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from promptsearch.io.data import Example

__all__ = [
    "LONG_TOKENS",
    "LabelWords",
    "ModelTokens",
    "TextLengths",
    "Tokenize",
    "choose_label_words",
    "text_lengths",
]

Tokenize = Callable[[str], list[str]]  # text -> its tokens
LONG_TOKENS = 256  # a text longer than this is reported: the prompts of most models cut it
_PARTS = re.compile(r"[^0-9A-Za-z]+")
_SAMPLE = 2000  # rows whose length is measured (evenly spaced over a larger split)


@dataclass(frozen=True)
class LabelWords:
    """The label-word maps of the written space and what the tokenizers said about them."""

    names: Mapping[str, str]  # class -> its name as a word ('_' read as a space)
    single: Mapping[str, str] | None  # class -> a one-token word, when some name is several tokens
    several: Mapping[str, str] = field(default_factory=dict)  # class -> "model: a, b, c" where a name splits
    checked: tuple[str, ...] = ()  # the models whose tokenizer checked the words
    not_checked: str | None = None  # why no tokenizer checked them


@dataclass(frozen=True)
class ModelTokens:
    """How one model reads a label word: its tokenizer, whether the word follows a space, its unknown token."""

    tokenize: Tokenize
    after_space: bool = False  # a causal model reads the word as the continuation of "Answer:"
    unknown: str | None = None  # a word read as this token is no word to the model

    def split(self, word: str) -> list[str] | None:
        """The tokens of ``word`` when it is not one known token, else None."""
        tokens = self.tokenize((" " if self.after_space else "") + word)
        return None if len(tokens) == 1 and tokens[0] != self.unknown else tokens


def _word(name: str) -> str:
    return name.replace("_", " ").strip() or name


def _pieces(tokenizers: Mapping[str, ModelTokens], word: str) -> dict[str, list[str]]:
    """Each model's tokens of ``word`` where it is not one known token."""
    out = {}
    for model, reader in tokenizers.items():
        tokens = reader.split(word)
        if tokens is not None:
            out[model] = tokens
    return out


def choose_label_words(
    labels: Sequence[str], tokenizers: Mapping[str, ModelTokens], *, not_checked: str | None = None
) -> LabelWords:
    """The ``names`` map, and a ``single`` map where a name is several tokens (or unknown) for some model.

    ``tokenizers`` maps a model id to how it reads a word; with none, the names are the only map.
    """
    names = {c: _word(c) for c in labels}
    several = {}
    for label, word in names.items():
        split = _pieces(tokenizers, word)
        if split:
            several[label] = "; ".join(f"{m}: {' '.join(t)}" for m, t in split.items())
    if not several:
        return LabelWords(names=names, single=None, checked=tuple(tokenizers), not_checked=not_checked)
    used = {w.lower() for label, w in names.items() if label not in several}
    single = {}
    for i, label in enumerate(labels):
        if label not in several:
            single[label] = names[label]
            continue
        letter = chr(ord("A") + i) if i < 26 else None
        candidates = [p for p in _PARTS.split(label) if p] + ([letter] if letter else [])
        for candidate in candidates:
            if candidate.lower() not in used and not _pieces(tokenizers, candidate):
                single[label] = candidate
                used.add(candidate.lower())
                break
    if len(single) < len(labels):  # more than 26 classes of long names: no single-token map
        return LabelWords(names=names, single=None, several=several, checked=tuple(tokenizers))
    return LabelWords(names=names, single=single, several=several, checked=tuple(tokenizers))


@dataclass(frozen=True)
class TextLengths:
    """The length of the rows' text (both texts of a pair together), in one model's tokens."""

    unit: str  # "MiniLM tokens", or "words" when no tokenizer loaded
    median: int
    p95: int
    longest: int
    long_rows: int  # rows longer than LONG_TOKENS
    measured: int  # rows measured


def text_lengths(rows: Sequence[Example], tokenize: Tokenize | None, unit: str) -> TextLengths:
    """Token counts of ``rows`` (at most 2,000, evenly spaced); words when ``tokenize`` is None."""
    step = max(1, len(rows) // _SAMPLE)
    sample = rows[::step][:_SAMPLE]
    count: Callable[[str], int] = (lambda t: len(tokenize(t))) if tokenize is not None else (lambda t: len(t.split()))
    lengths = sorted(sum(count(text) for text in ex.fields.values()) for ex in sample)
    p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
    return TextLengths(
        unit=unit,
        median=int(statistics.median(lengths)),
        p95=p95,
        longest=lengths[-1],
        long_rows=sum(n > LONG_TOKENS for n in lengths),
        measured=len(lengths),
    )
