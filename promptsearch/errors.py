"""Our own error types. Every message says where, what was expected, what was found and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "DataError",
    "IncompleteStudy",
    "PromptsearchError",
    "SpaceError",
    "TemplateError",
    "did_you_mean",
]


class PromptsearchError(Exception):
    """Base class of the errors that promptsearch reports to users as one clear message."""


class SpaceError(PromptsearchError):
    """A search-space file is invalid. ``messages`` holds one line per problem."""

    def __init__(self, messages: list[str] | str) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


class TemplateError(PromptsearchError):
    """A prompt template uses syntax that the template engine refuses."""


class DataError(PromptsearchError):
    """A data file or split cannot be used (missing, malformed, wrong columns or labels)."""


class ConfigError(PromptsearchError):
    """An exported prompt config, a storage URL or a command-line option is invalid."""


class IncompleteStudy(PromptsearchError):
    """A run stopped before its study reached the budget (its workers died); the same command continues it.

    ``missing``: the counted trials the budget still needs; ``report``: the report of the study as it stands
    (a :class:`promptsearch.reporting.schema.Report`), when one could be written. The CLI exits with its own
    code (3).
    """

    def __init__(self, message: str, *, missing: int, report: object | None = None) -> None:
        self.missing = missing
        self.report = report
        super().__init__(message)


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """Return ``" did you mean 'x'?"`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""
