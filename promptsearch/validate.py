"""Checks that need both the space and its data (``promptsearch validate`` runs them)."""

from __future__ import annotations

from collections import Counter

from promptsearch.data import Example, TaskData, has_split
from promptsearch.dimensions import Categorical, Fixed, IntRange
from promptsearch.errors import SpaceError
from promptsearch.space import SearchSpace

__all__ = ["check_space_data", "data_summary"]


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
    if test is not None and not has_split(space.spec.task, test, space.base_dir):
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
