"""Demonstration selectors on the real SST-2 16-shot rows: never the query itself, deterministic, as "
"documented."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity
from test_fuzz import fuzz

from promptsearch.io.data import Example, TaskData
from promptsearch.prompts import demos
from promptsearch.prompts.demos import DemoSelector, get_selector, register_selector, selector_names

SELECTORS = ["random", "balanced", "similar", "fixed"]


def test_registered_selectors() -> None:
    assert selector_names() == ["balanced", "fixed", "random", "similar"]


def test_unknown_selector_name() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "unknown selection 'similr'. did you mean 'similar'? Available: ['balanced', 'fixed', 'random', 'similar']"
        ),
    ):
        get_selector("similr", [], seed=0)


@pytest.mark.parametrize("name", SELECTORS)
def test_never_the_query_among_its_own_demonstrations(sst2_data: TaskData, name: str) -> None:
    pool = sst2_data.train
    selector = get_selector(name, pool, seed=0)
    for query in pool:
        chosen = selector.select(query, 8)
        assert len(chosen) == 8
        assert query.key not in {d.key for d in chosen}
        assert len({d.key for d in chosen}) == 8  # no row twice


@pytest.mark.parametrize("name", SELECTORS)
def test_a_pool_row_with_the_query_texts_is_never_shown(sst2_data: TaskData, name: str) -> None:
    query = sst2_data.train[0]
    copy = replace(query, source="elsewhere.jsonl", row=99, label="positive")
    selector = get_selector(name, [*sst2_data.train, copy], seed=0)
    chosen = selector.select(query, len(sst2_data.train) + 1)
    assert len(chosen) == len(sst2_data.train) - 1
    assert query.key not in {d.key for d in chosen}


@pytest.mark.parametrize("name", SELECTORS)
def test_same_seed_same_demonstrations(sst2_data: TaskData, name: str) -> None:
    first = get_selector(name, sst2_data.train, seed=7)
    second = get_selector(name, sst2_data.train, seed=7)
    for query in sst2_data.dev:
        assert first.select(query, 4) == second.select(query, 4)
        assert first.select(query, 4) == first.select(query, 4)  # no hidden state between calls


@pytest.mark.parametrize("name", ["random", "balanced", "fixed"])
def test_another_seed_other_demonstrations(sst2_data: TaskData, name: str) -> None:
    a = get_selector(name, sst2_data.train, seed=0)
    b = get_selector(name, sst2_data.train, seed=1)
    differing = [q for q in sst2_data.dev if a.select(q, 4) != b.select(q, 4)]
    assert len(differing) > len(sst2_data.dev) // 2


def test_random_varies_with_the_query(sst2_data: TaskData) -> None:
    selector = get_selector("random", sst2_data.train, seed=0)
    picks = {tuple(d.row for d in selector.select(q, 4)) for q in sst2_data.dev}
    assert len(picks) > len(sst2_data.dev) // 2


@pytest.mark.parametrize("k", [2, 3, 5])
def test_balanced_covers_every_class(sst2_data: TaskData, k: int) -> None:
    selector = get_selector("balanced", sst2_data.train, seed=0)
    for query in [*sst2_data.train, *sst2_data.dev]:
        counts = Counter(d.label for d in selector.select(query, k))
        assert set(counts) == {"negative", "positive"}
        assert max(counts.values()) - min(counts.values()) <= 1


def test_balanced_covers_four_classes(agnews_train: list[Example]) -> None:
    selector = get_selector("balanced", agnews_train, seed=0)
    for query in agnews_train:
        assert Counter(d.label for d in selector.select(query, 4)) == {
            "world": 1,
            "sports": 1,
            "business": 1,
            "sci/tech": 1,
        }


def test_similar_returns_the_tfidf_nearest_rows(sst2_data: TaskData) -> None:
    pool = sst2_data.train
    docs = [ex.fields["text"] for ex in pool]
    vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b").fit(docs)
    matrix = vectorizer.transform(docs)
    selector = get_selector("similar", pool, seed=0)
    for query in [*sst2_data.dev, *pool]:
        sims = cosine_similarity(vectorizer.transform([query.fields["text"]]), matrix).ravel()
        allowed = [i for i, ex in enumerate(pool) if ex.key != query.key]
        expected = sorted(allowed, key=lambda i: -sims[i])[:5]
        chosen = [pool.index(d) for d in selector.select(query, 5)]
        np.testing.assert_allclose(sims[chosen], sims[expected], atol=1e-12)
        if sims[expected[0]] > sims[expected[1]] + 1e-9:
            assert chosen[0] == expected[0]


def test_similar_ranks_a_near_copy_first(sst2_data: TaskData) -> None:
    target = sst2_data.train[5]
    query = Example(fields={"text": target.fields["text"] + " really"}, label=target.label)
    assert get_selector("similar", sst2_data.train, seed=0).select(query, 1) == [target]


@pytest.mark.parametrize("name", SELECTORS)
def test_k_zero_and_k_beyond_the_pool(sst2_data: TaskData, name: str) -> None:
    pool = sst2_data.train[:5]
    selector = get_selector(name, pool, seed=0)
    assert selector.select(sst2_data.dev[0], 0) == []
    assert sorted(d.row for d in selector.select(sst2_data.dev[0], 50)) == sorted(ex.row for ex in pool)


def test_a_new_selector_plugs_in_by_name(sst2_data: TaskData) -> None:
    with demos.SELECTORS.temporary():

        @register_selector("first")
        class FirstRows(DemoSelector):
            def select(self, query: Example, k: int) -> list[Example]:
                return [self.pool[i] for i in self.candidates(query)[:k]]

        assert "first" in selector_names()
        selector = get_selector("first", sst2_data.train, seed=0)
        assert isinstance(selector, FirstRows)
        assert selector.select(sst2_data.train[0], 2) == sst2_data.train[1:3]
    assert "first" not in selector_names()


# --- fixed: one set for every query ---------------------------------------------------------------------


def test_fixed_shows_every_query_the_same_balanced_set(sst2_data: TaskData) -> None:
    pool = sst2_data.train
    for demo_set in range(4):
        selector = get_selector("fixed", pool, seed=0, demo_set=demo_set)
        for k in (2, 3, 4):
            sets = {tuple(d.key for d in selector.select(q, k)) for q in sst2_data.dev}
            assert len(sets) == 1  # no dev row is in the train pool
            counts = Counter(d.label for d in selector.select(sst2_data.dev[0], k))
            assert set(counts) == {"negative", "positive"} and max(counts.values()) - min(counts.values()) <= 1
            assert selector.select(sst2_data.dev[0], k)[: k - 1] == selector.select(sst2_data.dev[0], k - 1)
    drawn = {tuple(d.key for d in get_selector("fixed", pool, seed=0, demo_set=s).select(sst2_data.dev[0], 4))
             for s in range(4)}  # fmt: skip
    assert len(drawn) == 4  # the sets of one study differ


def test_fixed_balances_four_classes(agnews_train: list[Example]) -> None:
    selector = get_selector("fixed", agnews_train, seed=3, demo_set=1)
    query = Example(fields={"text": "an unseen headline"}, label="world")
    assert Counter(d.label for d in selector.select(query, 4)) == dict.fromkeys(
        ["world", "sports", "business", "sci/tech"], 1
    )


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_fixed_replaces_a_query_in_its_set_in_place_with_its_class(sst2_data: TaskData, k: int) -> None:
    rows = [*sst2_data.train, *sst2_data.dev]  # leave-one-out: every labelled row is a query and in the pool
    selector = get_selector("fixed", rows, seed=0, demo_set=2)
    the_set = selector.select(Example(fields={"text": "not a row"}, label="positive"), k)
    changed = 0
    for query in rows:
        shown = selector.select(query, k)
        assert len(shown) == k and query.key not in {d.key for d in shown} and len({d.key for d in shown}) == k
        if shown != the_set:
            changed += 1
            (at,) = [i for i, d in enumerate(the_set) if d.key == query.key]  # only its own row changed
            assert shown[:at] == the_set[:at] and shown[at + 1 :] == the_set[at + 1 :]
            assert shown[at].label == the_set[at].label and shown[at] not in the_set
    assert changed == k  # all other queries share the whole set


@fuzz(200, 10000)
@given(
    rows=st.lists(st.tuples(st.integers(0, 12), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=14),
    k=st.integers(0, 6),
    seed=st.integers(0, 3),
    demo_set=st.integers(0, 3),
)
def test_fixed_is_one_set_with_each_query_replaced_in_place(
    rows: list[tuple[int, str]], k: int, seed: int, demo_set: int
) -> None:
    pool = [Example(fields={"text": f"t{t}"}, label=label) for t, label in rows]  # repeated texts included
    selector = get_selector("fixed", pool, seed=seed, demo_set=demo_set)
    the_set = selector.select(Example(fields={"text": "unseen"}, label="a"), k)
    assert the_set == [pool[i] for i in selector.order[:k]] and len(the_set) == min(k, len(pool))
    members = {id(d) for d in the_set}  # by identity: the pool may hold equal rows
    for query in pool:
        shown = selector.select(query, k)
        assert query.key not in {d.key for d in shown}
        kept = [id(d) for d in the_set if d.key != query.key]
        assert [id(d) for d in shown if id(d) in members] == kept  # the rest of the set, in its order
        spare = [pool[i] for i in selector.order[k:] if pool[i].key != query.key]
        assert len(shown) == len(kept) + min(len(the_set) - len(kept), len(spare))  # replaced while rows remain
        at = next((i for i, d in enumerate(the_set) if d.key == query.key), None)
        if at is not None and len(shown) == k:  # the first replacement takes the query's first place in the set
            same = [r for r in spare if r.label == the_set[at].label]
            assert id(shown[at]) not in members and (shown[at].label == the_set[at].label or not same)
