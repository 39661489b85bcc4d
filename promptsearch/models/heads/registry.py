"""Heads by name: :func:`register_head` adds one, :func:`get_head` returns it (the names live in
:data:`promptsearch.space.registry.HEADS`, where the search space reads them without loading any model)."""

from __future__ import annotations

from collections.abc import Callable

from promptsearch.models.heads.base import Head
from promptsearch.space.registry import HEADS, HeadTraits, head_traits, register_head_traits

__all__ = ["get_head", "register_head"]

_INSTANCES: dict[type[Head], Head] = {}


def register_head(
    name: str, *, traits: HeadTraits | None = None, replace: bool = False
) -> Callable[[type[Head]], type[Head]]:
    """Class decorator: make a :class:`Head` subclass available as ``model.head: <name>``.

    ``traits`` (or the class attribute ``traits``) says what the search space checks need to know about it::

        @register_head("mean_pool", traits=HeadTraits(label_words=False, starts_random=True))
        class MeanPoolHead(Head):
            auto_class = "AutoModel"

            def scores(self, model, batch, slots, tokens): ...
    """

    def wrap(cls: type[Head]) -> type[Head]:
        if not (isinstance(cls, type) and issubclass(cls, Head)):
            raise TypeError(f"register_head('{name}') decorates a subclass of Head, but got {cls!r}")
        given = traits if traits is not None else cls.__dict__.get("traits")
        if given is None and name not in HEADS:
            raise ValueError(
                f"head '{name}' needs its traits: pass register_head('{name}', traits=HeadTraits(...)) "
                "or set the class attribute traits"
            )
        HEADS.register(name, cls, replace=replace)
        if given is not None:
            register_head_traits(name, given)
        cls.name = name
        cls.traits = head_traits(name)
        return cls

    return wrap


def get_head(name: str) -> Head:
    """The head registered as ``name``; a ``ValueError`` with "did you mean" for an unknown one."""
    cls = HEADS[HEADS.check(name)]
    if cls not in _INSTANCES:
        _INSTANCES[cls] = cls()
    return _INSTANCES[cls]
