"""Demonstration selection: which train rows are shown, with their labels, before each query.

Selectors plug in through :func:`register_selector` (the names live in
:data:`promptsearch.space.registry.SELECTORS`, where the search space reads them). Every selector is
deterministic given the seed and the query's text, draws from the train pool only, and never returns the query itself
(nor any pool row with the same texts).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from promptsearch.errors import did_you_mean
from promptsearch.io.data import Example
from promptsearch.space.registry import SELECTORS

__all__ = ["DemoSelector", "get_selector", "register_selector", "selector_names"]


def register_selector(name: str, *, replace: bool = False) -> Callable[[type[DemoSelector]], type[DemoSelector]]:
    """Class decorator: make a selector available as ``prompt.demonstrations.selection: <name>``."""

    def wrap(cls: type[DemoSelector]) -> type[DemoSelector]:
        SELECTORS.register(name, cls, replace=replace)
        cls.name = name
        return cls

    return wrap


def selector_names() -> list[str]:
    return sorted(SELECTORS)


def get_selector(name: str, pool: Sequence[Example], *, seed: int) -> DemoSelector:
    if name not in SELECTORS:
        raise ValueError(f"unknown selection '{name}'.{did_you_mean(name, SELECTORS)} Available: {selector_names()}")
    cls: type[DemoSelector] = SELECTORS[name]
    return cls(pool, seed=seed)


def _stable_int(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class DemoSelector(ABC):
    """Chooses demonstrations for a query from a fixed pool of train examples."""

    name: ClassVar[str] = ""

    def __init__(self, pool: Sequence[Example], *, seed: int) -> None:
        self.pool = list(pool)
        self.seed = seed

    def candidates(self, query: Example) -> list[int]:
        """Pool indices that may be shown for ``query``: every row except the query's own texts."""
        return [i for i, ex in enumerate(self.pool) if ex.key != query.key]

    def rng(self, query: Example) -> np.random.Generator:
        return np.random.default_rng(_stable_int(self.seed, self.name, query.key))

    @abstractmethod
    def select(self, query: Example, k: int) -> list[Example]:
        """Up to ``k`` demonstrations for ``query``, most useful first (truncation drops from the end)."""


@register_selector("random")
class RandomSelector(DemoSelector):
    def select(self, query: Example, k: int) -> list[Example]:
        cand = self.candidates(query)
        if k <= 0 or not cand:
            return []
        picked = self.rng(query).choice(len(cand), size=min(k, len(cand)), replace=False)
        return [self.pool[cand[i]] for i in picked]


@register_selector("balanced")
class BalancedSelector(DemoSelector):
    """Round-robin over the classes (in a seeded order), so k >= number of classes covers every class."""

    def select(self, query: Example, k: int) -> list[Example]:
        rng = self.rng(query)
        by_label: dict[str, list[int]] = {}
        for i in self.candidates(query):
            by_label.setdefault(self.pool[i].label, []).append(i)
        for idx in by_label.values():
            rng.shuffle(idx)
        order = sorted(by_label)
        rng.shuffle(order)
        out: list[Example] = []
        while len(out) < k and any(by_label.values()):
            for label in order:
                if by_label[label] and len(out) < k:
                    out.append(self.pool[by_label[label].pop()])
        return out


@register_selector("similar")
class SimilarSelector(DemoSelector):
    """The k nearest pool rows to the query by TF-IDF cosine similarity (scikit-learn)."""

    def __init__(self, pool: Sequence[Example], *, seed: int) -> None:
        super().__init__(pool, seed=seed)
        from sklearn.feature_extraction.text import TfidfVectorizer

        # one-character words count too: short texts and some scripts have nothing longer
        self._vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b")
        docs = [" ".join(ex.fields.values()) for ex in self.pool]
        try:
            self._matrix = self._vectorizer.fit_transform(docs) if docs else None
        except ValueError:  # no word at all in the pool (punctuation only): no similarity to rank by
            self._matrix = None

    def select(self, query: Example, k: int) -> list[Example]:
        cand = self.candidates(query)
        if k <= 0 or not cand:
            return []
        if self._matrix is None:
            return [self.pool[i] for i in cand[:k]]
        q = self._vectorizer.transform([" ".join(query.fields.values())])
        sims = (self._matrix[cand] @ q.T).toarray().ravel()
        order = sorted(range(len(cand)), key=lambda j: (-sims[j], cand[j]))[:k]
        return [self.pool[cand[j]] for j in order]
