"""The names the search space accepts, and what they stand for: heads, metrics, demonstration selectors, samplers
and pruners.

Each :class:`Registry` maps a name to its implementation. Built-in entries point to it lazily, as
``"module:attr"`` (transformers' auto mappings do the same), so validating a space imports neither torch nor the
models; outside code adds entries at runtime (:func:`promptsearch.models.heads.register_head`,
:func:`promptsearch.models.metrics.register_metric`, :func:`promptsearch.prompts.demos.register_selector`,
:func:`register_sampler`, :func:`register_pruner`). The YAML's choices and its "did you mean" come from here.

Heads also carry :class:`HeadTraits`: what the space checks need to know about a head without loading it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from promptsearch.errors import did_you_mean

__all__ = [
    "DEFAULT_HEAD",
    "HEADS",
    "METRICS",
    "PRUNERS",
    "SAMPLERS",
    "SELECTORS",
    "SINGLE_OBJECTIVE_SAMPLERS",
    "HeadTraits",
    "Registry",
    "head_names",
    "head_traits",
    "quoted",
    "register_head_traits",
    "register_pruner",
    "register_sampler",
]

T = TypeVar("T")


def _is_builtin(entry: object) -> bool:
    """An object (or a lazy ``"module:attr"`` entry) from the promptsearch package itself."""
    module = entry.partition(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "") or ""
    return module == "promptsearch" or module.startswith("promptsearch.")


class Registry(Mapping[str, T], Generic[T]):
    """Name -> implementation, in registration order; built-ins resolve lazily from ``"module:attr"``.

    ``kind`` names the thing in messages ("head"), ``key`` the YAML key that takes these names ("model.head").
    """

    def __init__(self, kind: str, key: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind
        self.key = key
        self._entries: dict[str, T | str] = dict(builtins)
        self._builtins = frozenset(builtins)

    def register(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Add ``obj`` as ``name``. An existing name is refused unless ``replace`` (or it is this very object,
        e.g. a built-in's module registering what the lazy entry names)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty text, but got {name!r}")
        current = self._entries.get(name)
        if current is not None and not replace and current is not obj and current != _path_of(obj):
            raise ValueError(
                f"{self.kind} '{name}' is already registered ({_describe(current)}); choose another name, "
                "or pass replace=True to replace it"
            )
        self._entries[name] = obj
        return obj

    def decorator(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            return self.register(name, obj, replace=replace)

        return wrap

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def builtin_names(self) -> tuple[str, ...]:
        """The names promptsearch itself provides (not those a plug-in registered since): what the docs list."""
        return tuple(name for name, entry in self._entries.items() if name in self._builtins or _is_builtin(entry))

    @contextmanager
    def temporary(self) -> Iterator[None]:
        """Registrations made inside are undone on exit (tests that register their own entries)."""
        saved = dict(self._entries)
        try:
            yield
        finally:
            self._entries.clear()
            self._entries.update(saved)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise KeyError(self.unknown(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            resolved: T = getattr(importlib.import_module(module), attr)
            if isinstance(self._entries[name], str):  # importing it may have registered it already
                self._entries[name] = resolved
            return resolved
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def unknown(self, name: str) -> str:
        """``unknown head 'x'. did you mean 'y'? Available: ...`` (the names registered now)."""
        return f"unknown {self.kind} '{name}'.{did_you_mean(str(name), self.names())} Available: {', '.join(self)}"

    def check(self, name: str) -> str:
        """``name`` when registered; otherwise a ``ValueError`` saying what is (pydantic validators raise it)."""
        if name not in self._entries:
            raise ValueError(self.unknown(name))
        return name


def _path_of(obj: Any) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}:{qualname}" if module and qualname else None


def _describe(entry: Any) -> str:
    return entry if isinstance(entry, str) else (_path_of(entry) or repr(entry))


# --- heads ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadTraits:
    """What the search space needs to know about a head, without loading it."""

    label_words: bool
    """It scores label words at the template's ``{label}`` slot (so label words, calibration and generated
    label words apply); otherwise the prompt is only extra input text to a classifier."""
    starts_random: bool = False
    """Its weights are new and start random: an untrained one only guesses (no method 'none', no 0 epochs)."""
    own_weights: bool = True
    """Method 'head' trains weights of its own (not a language model's output layer tied to the embeddings)."""
    continuation: bool = False
    """The answer continues the prompt: the query ends where ``{label}`` starts (text after it is never read), and
    a label word is scored as its whole token sequence, whitespace included."""
    chat: bool = False
    """It can wrap the prompt in the tokenizer's chat template (``prompt.chat``)."""
    generates: bool = False
    """The model writes text (it can propose instructions: ``prompt.instruction.auto``)."""
    multi_token: tuple[str, ...] = ()
    """``model.multi_token`` rules it accepts for label words of several tokens; the first is its default."""
    reads_template: bool = True
    """It reads the rendered template (and demonstrations); otherwise only the instruction, prefixed to the text."""


DEFAULT_HEAD = "classification"  # plain fine-tuning (and the baseline): a new classifier on the body

_HEAD_TRAITS: dict[str, HeadTraits] = {
    "classification": HeadTraits(label_words=False, starts_random=True),
    "mlm": HeadTraits(label_words=True, multi_token=("error", "mean")),
    "embedding": HeadTraits(label_words=False, starts_random=True, reads_template=False),
    "causal": HeadTraits(
        label_words=True,
        own_weights=False,
        continuation=True,
        chat=True,
        generates=True,
        multi_token=("sum", "mean", "error"),
    ),
}
HEADS: Registry[Any] = Registry(
    "head",
    "model.head",
    {
        "classification": "promptsearch.models.heads.classification:ClassificationHead",
        "mlm": "promptsearch.models.heads.mlm:MaskedLMHead",
        "causal": "promptsearch.models.heads.causal:CausalLMHead",
        "embedding": "promptsearch.models.heads.embedding:EmbeddingHead",
    },
)


def register_head_traits(name: str, traits: HeadTraits) -> None:
    """Record what the space checks know about head ``name`` (:func:`promptsearch.models.heads.register_head`)."""
    if not isinstance(traits, HeadTraits):
        raise TypeError(f"head '{name}': traits must be a HeadTraits, but got {type(traits).__name__}")
    _HEAD_TRAITS[name] = traits


def head_traits(name: str) -> HeadTraits:
    """The traits of head ``name``; a ``ValueError`` with "did you mean" for an unknown one."""
    HEADS.check(name)
    return _HEAD_TRAITS[name]


def head_names(where: Callable[[HeadTraits], bool] | None = None) -> tuple[str, ...]:
    """The registered heads (those whose traits satisfy ``where``), in registration order."""
    return tuple(n for n in HEADS if n in _HEAD_TRAITS and (where is None or where(_HEAD_TRAITS[n])))


def quoted(names: tuple[str, ...] | list[str], joiner: str = "or") -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``: names as messages list them."""
    items = [f"'{n}'" for n in names]
    if len(items) <= 1:
        return "".join(items) or "(none)"
    return f"{', '.join(items[:-1])} {joiner} {items[-1]}"


# --- metrics, demonstration selectors, samplers, pruners ---------------------------------------------------------

METRICS: Registry[Any] = Registry(
    "metric",
    "task.metric",
    {name: f"promptsearch.models.metrics:{name}" for name in ("accuracy", "macro_f1", "mcc")},
)
SELECTORS: Registry[Any] = Registry(
    "selection",
    "prompt.demonstrations.selection",
    {
        "random": "promptsearch.prompts.demos:RandomSelector",
        "balanced": "promptsearch.prompts.demos:BalancedSelector",
        "similar": "promptsearch.prompts.demos:SimilarSelector",
        "fixed": "promptsearch.prompts.demos:FixedSelector",
    },
)
# A sampler entry is a factory ``(seed, n_trials) -> optuna sampler``; a pruner entry is the pruner class (its
# keyword arguments are search.pruner.options). Optuna is imported only when one is made.


def _tpe(seed: int, n_trials: int) -> Any:
    import optuna

    # Small budgets: fewer random start-up trials; group=True handles conditional parameters.
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=max(3, min(10, n_trials // 3)), multivariate=True, group=True
    )


def _random(seed: int, n_trials: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _gp(seed: int, n_trials: int) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=seed)


def _cmaes(seed: int, n_trials: int) -> Any:
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed)


SAMPLERS: Registry[Any] = Registry("sampler", "search.sampler", {})
for _name, _factory in (("tpe", _tpe), ("random", _random), ("gp", _gp), ("cmaes", _cmaes)):
    SAMPLERS.register(_name, _factory)
PRUNERS: Registry[Any] = Registry(
    "pruner",
    "search.pruner.type",
    {
        "median": "optuna.pruners:MedianPruner",
        "successive_halving": "optuna.pruners:SuccessiveHalvingPruner",
        "hyperband": "optuna.pruners:HyperbandPruner",
        "none": "optuna.pruners:NopPruner",
    },
)
SINGLE_OBJECTIVE_SAMPLERS = {"cmaes"}  # samplers that optimise one objective only


def register_sampler(name: str, *, replace: bool = False, single_objective: bool = False) -> Callable[[T], T]:
    """Decorator: a factory ``(seed: int, n_trials: int) -> optuna.samplers.BaseSampler`` as ``search.sampler``."""

    def wrap(factory: T) -> T:
        SAMPLERS.register(name, factory, replace=replace)
        if single_objective:
            SINGLE_OBJECTIVE_SAMPLERS.add(name)
        return factory

    return wrap


def register_pruner(name: str, *, replace: bool = False) -> Callable[[T], T]:
    """Decorator: an Optuna pruner class (or factory taking search.pruner.options) as ``search.pruner.type``."""
    return PRUNERS.decorator(name, replace=replace)
