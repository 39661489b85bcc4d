"""Demonstration selection: which train rows are shown, with their labels, before each query.

Selectors plug in through :func:`register_selector` (the names live in
:data:`promptsearch.space.registry.SELECTORS`, where the search space reads them). Every selector is
deterministic given the seed and the query's text, draws from the train pool only, and never returns the query itself
(nor any pool row with the same texts).

``random``, ``balanced`` and ``similar`` choose per query. ``fixed`` shows every query the same set (a DSPy-style
demo set), so all prompts start with the same tokens and a causal model reads them once
(:func:`promptsearch.models.features.shared_prefix`); which of the study's sets a trial shows is itself searched
(``prompt.demonstrations.sets``).
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


def get_selector(name: str, pool: Sequence[Example], *, seed: int, demo_set: int = 0) -> DemoSelector:
    """The selector ``name`` over ``pool``; ``demo_set`` is the set number of a selector with sets (``fixed``)."""
    if name not in SELECTORS:
        raise ValueError(f"unknown selection '{name}'.{did_you_mean(name, SELECTORS)} Available: {selector_names()}")
    cls: type[DemoSelector] = SELECTORS[name]
    return cls(pool, seed=seed, demo_set=demo_set)


def _stable_int(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class DemoSelector(ABC):
    """Chooses demonstrations for a query from a fixed pool of train examples."""

    name: ClassVar[str] = ""

    def __init__(self, pool: Sequence[Example], *, seed: int, demo_set: int = 0) -> None:
        self.pool = list(pool)
        self.seed = seed
        self.demo_set = demo_set  # which of the seed's sets (selectors with sets; the others ignore it)

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


def _round_robin(pool: Sequence[Example], indices: Sequence[int], rng: np.random.Generator) -> list[int]:
    """``indices`` shuffled within each class and dealt one class at a time (classes in a seeded order), so any
    first k of them cover min(k, classes) classes, each class taking the floor or the ceiling of k / classes."""
    by_label: dict[str, list[int]] = {}
    for i in indices:
        by_label.setdefault(pool[i].label, []).append(i)
    for idx in by_label.values():
        rng.shuffle(idx)
    labels = sorted(by_label)
    rng.shuffle(labels)
    out: list[int] = []
    while any(by_label.values()):
        for label in labels:
            if by_label[label]:
                out.append(by_label[label].pop())
    return out


@register_selector("balanced")
class BalancedSelector(DemoSelector):
    """Round-robin over the classes (in a seeded order), so k >= number of classes covers every class."""

    def select(self, query: Example, k: int) -> list[Example]:
        order = _round_robin(self.pool, self.candidates(query), self.rng(query)) if k > 0 else []
        return [self.pool[i] for i in order[:k]]


@register_selector("fixed")
class FixedSelector(DemoSelector):
    """The same demonstrations for every query: set ``demo_set`` of those the seed draws from the pool.

    Set s is the pool in a round-robin order over the classes (as ``balanced``, drawn from the seed and s, not
    from the query), and its first k rows are the demonstrations: balanced over the classes when k >= the
    number of classes, and the set for k is the start of the set for k + 1. The sets are drawn once per study
    (the seed is the study's), so every trial that picks set s shows the same rows.

    A query whose own texts are in the set (leave-one-out scoring, where every labelled row is a query and in the
    pool) sees the set with that row replaced, in its place, by the set's next row of the same class (or of any
    class when its class has none left): the query is never shown, the set keeps its size, balance and order, and
    the prompt still starts with the instruction and the demonstrations before the replaced one. Every other
    query, that is all but at most k of them, shares the whole prefix up to its own text.
    """

    def __init__(self, pool: Sequence[Example], *, seed: int, demo_set: int = 0) -> None:
        super().__init__(pool, seed=seed, demo_set=demo_set)
        rng = np.random.default_rng(_stable_int(seed, self.name, demo_set))
        self.order = _round_robin(self.pool, range(len(self.pool)), rng)  # set demo_set: its first k rows

    def select(self, query: Example, k: int) -> list[Example]:
        if k <= 0:
            return []
        chosen = self.order[:k]
        spare = [i for i in self.order[k:] if self.pool[i].key != query.key]
        out: list[int] = []
        for i in chosen:
            if self.pool[i].key != query.key:
                out.append(i)
                continue
            same = [j for j in spare if self.pool[j].label == self.pool[i].label]
            if same or spare:
                out.append((same or spare)[0])
                spare.remove(out[-1])
        return [self.pool[i] for i in out]


@register_selector("similar")
class SimilarSelector(DemoSelector):
    """The k nearest pool rows to the query by TF-IDF cosine similarity (scikit-learn)."""

    def __init__(self, pool: Sequence[Example], *, seed: int, demo_set: int = 0) -> None:
        super().__init__(pool, seed=seed, demo_set=demo_set)
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
