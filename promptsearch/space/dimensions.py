"""Search dimensions: one fixed value, a categorical choice, or a float/int range (Optuna's semantics).

A dimension is written in YAML as a scalar (fixed), a list (categorical), or a mapping with
``low``/``high`` (+ ``log``, ``step``), ``choices`` or ``value``, each optionally with ``when``
(the parameter exists only when other parameters have given values).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from promptsearch.errors import did_you_mean

__all__ = [
    "Categorical",
    "Dimension",
    "Fixed",
    "FloatRange",
    "IntRange",
    "Kind",
    "edge_values",
    "parse_dimension",
]

Kind = Literal["float", "int", "str", "bool"]
_RANGE_KEYS = {"low", "high", "log", "step", "when"}
_CHOICE_KEYS = {"choices", "when"}
_FIXED_KEYS = {"value", "when"}
_FLOAT_MAX = sys.float_info.max
MAX_STEPS = 100_000  # values of a range in steps (every int range): Optuna's GP sampler lists them all


@dataclass(frozen=True)
class Fixed:
    value: Any
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def values(self) -> tuple[Any, ...]:
        return (self.value,)


@dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def values(self) -> tuple[Any, ...]:
        return self.choices


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def values(self) -> Sequence[int]:
        """Every value, lazily: a ``range`` (membership tests cost nothing, however wide the range)."""
        return range(self.low, self.high + 1, self.step)


Dimension = Fixed | Categorical | FloatRange | IntRange


def describe(dim: Dimension) -> str:
    """A short human description used by ``promptsearch validate``."""
    if isinstance(dim, Fixed):
        return f"fixed {dim.value!r}"
    if isinstance(dim, Categorical):
        return f"{len(dim.choices)} choices"
    kind = "int" if isinstance(dim, IntRange) else "float"
    scale = ", log" if dim.log else ""
    return f"{kind} [{dim.low}, {dim.high}{scale}]"


def edge_values(dim: Dimension) -> tuple[tuple[str, Any], ...]:
    """The values that stand for every value of ``dim``, each with the YAML key it came from.

    A fixed value and each choice stand for themselves; a range stands for its two ends (``low`` and ``high``),
    which is enough for interval constraints such as ``ge``/``le``: a value between two valid ends is valid.
    """
    if isinstance(dim, Fixed):
        return (("value", dim.value),)
    if isinstance(dim, Categorical):
        return tuple((f"choice {i}", v) for i, v in enumerate(dim.choices))
    return (("low", dim.low), ("high", dim.high))


def _coerce(value: Any, kind: Kind, what: str) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (isinstance(value, int) and abs(value) > _FLOAT_MAX) or not math.isfinite(value):
                raise ValueError(f"{what} must be a finite number (at most {_FLOAT_MAX:.4g}), but found {value!r}")
            return float(value)
        if isinstance(value, str):
            try:  # YAML 1.1 reads "1e-5" (no dot) as a string; accept it as the number it obviously is
                number = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
    elif kind == "str" and isinstance(value, str):
        return value
    expected = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}[kind]
    raise ValueError(f"{what} must be {expected}, but found {type(value).__name__} {value!r}")


def _parse_when(raw: Any) -> dict[str, tuple[Any, ...]]:
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(
            f"'when' must map parameter names to a value or a list of values "
            f"(for example when: {{train.method: full}}), but found {raw!r}"
        )
    out: dict[str, tuple[Any, ...]] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ValueError(f"'when' keys must be parameter names such as train.method, but found {key!r}")
        out[key] = tuple(value) if isinstance(value, list) else (value,)
    return out


def parse_dimension(raw: Any, kind: Kind, *, allowed: Collection[Any] | None = None) -> Dimension:
    """Turn the YAML form of a parameter into a :data:`Dimension`, or raise ``ValueError``."""
    if isinstance(raw, Mapping):
        keys = set(raw)
        when = _parse_when(raw["when"]) if "when" in raw else {}
        if "choices" in keys:
            _check_keys(keys, _CHOICE_KEYS, "a categorical parameter")
            return _categorical(raw["choices"], kind, allowed, when)
        if "value" in keys:
            _check_keys(keys, _FIXED_KEYS, "a fixed parameter")
            return Fixed(_check_allowed(_coerce(raw["value"], kind, "value"), allowed), when)
        if "low" in keys or "high" in keys:
            _check_keys(keys, _RANGE_KEYS, "a range")
            return _range(raw, kind, when)
        raise ValueError(
            "a parameter written as a mapping needs 'low' and 'high' (a range), 'choices' "
            f"(a categorical) or 'value' (a fixed value), but found keys {sorted(map(str, keys))}"
        )
    if isinstance(raw, list):
        return _categorical(raw, kind, allowed, {})
    return Fixed(_check_allowed(_coerce(raw, kind, "the value"), allowed))


def _check_keys(keys: set[Any], allowed: set[str], what: str) -> None:
    unknown = sorted(str(k) for k in keys - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for {what}; allowed keys: {sorted(allowed)}")


def _check_allowed(value: Any, allowed: Collection[Any] | None) -> Any:
    if allowed is not None and value not in allowed:
        hint = did_you_mean(str(value), [str(a) for a in allowed])
        raise ValueError(f"{value!r} is not one of the supported values {list(allowed)}.{hint}".rstrip("."))
    return value


def _categorical(raw: Any, kind: Kind, allowed: Collection[Any] | None, when: dict[str, tuple[Any, ...]]) -> Dimension:
    if not isinstance(raw, list):
        raise ValueError(f"'choices' must be a list, but found {type(raw).__name__} {raw!r}")
    if not raw:
        raise ValueError("the list of choices is empty; give at least one value")
    values = tuple(_check_allowed(_coerce(v, kind, f"choice {i}"), allowed) for i, v in enumerate(raw))
    if len(set(values)) != len(values):
        dupes = sorted({repr(v) for v in values if values.count(v) > 1})
        raise ValueError(f"the choices repeat {', '.join(dupes)}; list each value once")
    if len(values) == 1:
        return Fixed(values[0], when)
    return Categorical(values, when)


def _range(raw: Mapping[str, Any], kind: Kind, when: dict[str, tuple[Any, ...]]) -> Dimension:
    if kind not in ("int", "float"):
        raise ValueError(f"this parameter takes {kind} values, so it cannot be a low/high range; use a list")
    for key in ("low", "high"):
        if key not in raw:
            raise ValueError(f"a range needs both 'low' and 'high', but '{key}' is missing")
    low = _coerce(raw["low"], kind, "low")
    high = _coerce(raw["high"], kind, "high")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"'log' must be true or false, but found {log!r}")
    if low > high:
        raise ValueError(f"low must be <= high, but found low={low} > high={high}; swap them")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, but found low={low}; raise low or set log: false")
    step = raw.get("step")
    if step is not None:
        step = _coerce(step, kind, "step")
        if step <= 0:
            raise ValueError(f"step must be > 0, but found step={step}")
        if log:
            raise ValueError("'step' and 'log: true' cannot be combined (Optuna's rule); drop one of them")
    dim = IntRange(low, high, log, step or 1, when) if kind == "int" else FloatRange(low, high, log, step, when)
    _check_size(dim)
    _check_distribution(dim)
    return dim


def _check_size(dim: IntRange | FloatRange) -> None:
    """A float range's width must be a number, and a range in steps (every int range) must not list too much."""
    if isinstance(dim, FloatRange) and not math.isfinite(dim.high - dim.low):
        raise ValueError(f"high - low must be a finite number, but found low={dim.low}, high={dim.high}; narrow it")
    if dim.step is None:
        return
    # ints divide exactly (however large); a float quotient too large for a float is inf, still above the limit
    steps = (dim.high - dim.low) // dim.step if isinstance(dim, IntRange) else (dim.high - dim.low) / dim.step
    if steps >= MAX_STEPS:
        raise ValueError(
            f"this range holds more than the {MAX_STEPS} values a range in steps may hold (Optuna's GP sampler "
            "lists every one); narrow it or raise the step"
            + ("" if isinstance(dim, IntRange) else ", or drop the step")
        )


def _check_distribution(dim: IntRange | FloatRange) -> None:
    """Build the Optuna distribution the range is sampled from: what Optuna refuses is refused here."""
    import warnings

    from optuna.distributions import FloatDistribution, IntDistribution

    with warnings.catch_warnings():  # a range the step does not divide is shortened, with a warning: not an error
        warnings.simplefilter("ignore")
        try:
            if isinstance(dim, IntRange):
                IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
            else:
                FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
        except (ArithmeticError, ValueError) as exc:
            raise ValueError(f"Optuna refuses this range: {exc or type(exc).__name__}") from None
