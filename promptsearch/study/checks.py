"""Checks that need the space together with its data or its models (`validate`, `run` and `worker` run them)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError, SpaceError
from promptsearch.io.data import Example, TaskData
from promptsearch.space.config import PromptConfig
from promptsearch.space.dimensions import Categorical, Fixed, IntRange
from promptsearch.space.search_space import SearchSpace, possible_values

if TYPE_CHECKING:
    from promptsearch.models.features import PromptEncoder

__all__ = ["check_label_words", "check_space_data", "data_summary"]


def check_label_words(space: SearchSpace, encoder: PromptEncoder) -> int:
    """Every template x label-word map x chat choice must give label tokens the head can score.

    Returns how many combinations were checked; raises :class:`ConfigError` naming the map and the word.
    """
    if encoder.head == "classification":
        return 0
    where = f"{space.path}: " if space.path else ""
    chats = possible_values(space.params.get("prompt.chat", Fixed(False))) or (False,)
    if True in chats:
        try:
            encoder.check_chat()
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
    checked = 0
    for template in space.templates.values():
        for key, words in space.label_words.items():
            for chat in chats:
                prompt = PromptConfig(template=template.source, label_words=dict(words), chat=bool(chat))
                try:
                    encoder.label_tokens(prompt)
                except ConfigError as exc:
                    raise ConfigError(f"{where}prompt.label_words ({key}): {exc}") from None
                checked += 1
    return checked


def _max_count(space: SearchSpace) -> int:
    dim = space.params["prompt.demonstrations.count"]
    if isinstance(dim, Fixed):
        return int(dim.value)
    if isinstance(dim, Categorical):
        return int(max(dim.choices))
    assert isinstance(dim, IntRange)
    return dim.high


def check_space_data(space: SearchSpace, data: TaskData) -> None:
    """Raise :class:`SpaceError` when the data cannot supply what the space asks for."""
    where = str(space.path) if space.path else "<string>"
    problems = []
    most = _max_count(space)
    if most > len(data.train) - 1:
        problems.append(
            f"{where}: prompt.demonstrations.count: up to {most} demonstrations per prompt, but the train split "
            f"has {len(data.train)} rows and a query is never its own demonstration (at most "
            f"{len(data.train) - 1}); lower the count"
        )
    test = space.spec.task.splits.test
    if test is not None and not data.has_test:
        problems.append(
            f"{where}: task.splits.test: no '{test}' split in the data, so the final report has no test score; "
            "add task.data.files.test or set task.splits.test: null"
        )
    if problems:
        raise SpaceError(problems)


def data_summary(data: TaskData) -> str:
    def counts(rows: list[Example]) -> str:
        c = Counter(ex.label for ex in rows)
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))

    return f"train {len(data.train)} ({counts(data.train)}); dev {len(data.dev)} ({counts(data.dev)})"
