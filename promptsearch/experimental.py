"""Mark features still settling, as Optuna does: the first call warns once with an :class:`ExperimentalWarning`.

>>> @experimental("0.1.0")
... def racing(...): ...                                   # doctest: +SKIP

Silence them with ``warnings.filterwarnings("ignore", category=promptsearch.ExperimentalWarning)``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ExperimentalWarning", "experimental"]

T = TypeVar("T", bound=Callable[..., Any])


class ExperimentalWarning(UserWarning):
    """The feature works and is tested, but its interface may change in a minor release."""


def experimental(version: str, *, name: str | None = None) -> Callable[[T], T]:
    """Decorate a function or class added in ``version`` whose interface may still change.

    The first call (or instantiation) in a process warns once; later calls are silent. The docstring
    gets a note saying so.
    """

    def decorate(obj: T) -> T:
        shown = name or getattr(obj, "__qualname__", repr(obj))
        message = (
            f"{shown} is experimental (added in promptsearch {version}): it works and is tested, but its "
            "interface may change in a minor release"
        )
        note = f"\n\n    .. note:: Experimental (added in {version}): the interface may change in a minor release.\n"
        warned: list[bool] = []

        def warn_once() -> None:
            if not warned:
                warned.append(True)
                warnings.warn(message, ExperimentalWarning, stacklevel=3)

        if isinstance(obj, type):
            init = obj.__init__  # type: ignore[misc]

            @functools.wraps(init)
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                warn_once()
                init(self, *args, **kwargs)

            obj.__init__ = __init__  # type: ignore[misc]
            obj.__doc__ = (obj.__doc__ or "") + note
            return obj

        @functools.wraps(obj)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            warn_once()
            return obj(*args, **kwargs)

        wrapper.__doc__ = (obj.__doc__ or "") + note
        return wrapper  # type: ignore[return-value]

    return decorate
