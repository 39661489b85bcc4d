"""Warm start: enqueue a previous best prompt (or the top trials of an earlier study) as the first trials.

A previous config is mapped onto the new space parameter by parameter. Text choices (instruction,
template, label words) are matched by their text, not their name, since two spaces may name them
differently; numbers and names must lie in the new parameter's range or choices. Whatever does not
fit is reported (and left to the sampler), never dropped silently. Each enqueued trial carries the
user attribute naming its source, so running the same command again does not enqueue
it twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.space.config import PromptConfig, TrainConfig
from promptsearch.space.dimensions import Categorical, Dimension, Fixed, FloatRange, IntRange, describe
from promptsearch.space.registry import DEFAULT_HEAD
from promptsearch.space.sampling import is_meaningless
from promptsearch.space.search_space import SearchSpace, is_active

if TYPE_CHECKING:
    import optuna

__all__ = ["WarmStart", "WarmStartPlan", "enqueue", "fit_config", "from_export", "from_study"]

logger = logging.getLogger(__name__)
_TEXT_PARAMS = ("prompt.instruction", "prompt.template", "prompt.label_words")


@dataclass
class WarmStart:
    """One trial to enqueue: where it comes from, the params that fit, and what did not fit."""

    source: str
    params: dict[str, Any]
    not_fitting: list[str] = field(default_factory=list)


@dataclass
class WarmStartPlan:
    trials: list[WarmStart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the user is told: one line per enqueued trial, then each parameter that did not fit."""
        out = list(self.notes)
        for trial in self.trials:
            fitted = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items()) or "no searched parameter"
            out.append(f"warm start from {trial.source}: {fitted}")
            out.extend(f"  not used: {problem}" for problem in trial.not_fitting)
        return out


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else repr(value)


def _fits(dim: Dimension, value: Any) -> bool:
    if isinstance(dim, Categorical):
        return value in dim.choices
    if isinstance(dim, IntRange):
        ok = isinstance(value, int) and not isinstance(value, bool) and dim.low <= value <= dim.high
        return ok and (value - dim.low) % dim.step == 0
    if isinstance(dim, FloatRange):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not dim.low <= value <= dim.high:
            return False
        return dim.step is None or math.isclose((value - dim.low) / dim.step, round((value - dim.low) / dim.step))
    return bool(dim.value == value)


def _text_key(space: SearchSpace, name: str, prompt: PromptConfig) -> tuple[bool, Any, str]:
    """The key of the new space's choice with the same text as ``prompt`` (found, key, shown value)."""
    if name == "prompt.instruction":
        options: Mapping[Any, Any] = space.instructions
        wanted: Any = prompt.instruction
    elif name == "prompt.template":
        options = {k: t.source for k, t in space.templates.items()}
        wanted = prompt.template
    else:
        options = {k: dict(v) for k, v in space.label_words.items()}
        wanted = prompt.label_words
    for key, text in options.items():
        if text == wanted:
            return True, key, repr(wanted)
    return False, None, f"{wanted!r} is not among this space's choices {list(options.values())}"


def _previous_value(name: str, prompt: PromptConfig, train: TrainConfig) -> tuple[bool, Any]:
    """The earlier config's value of ``name`` (``False`` when it had none, e.g. LoRA's rank without LoRA)."""
    if name.startswith("train.lora."):
        if train.lora is None:
            return False, None
        return True, getattr(train.lora, name.rsplit(".", 1)[1])
    section, _, key = name.partition(".")
    if section == "train":
        return True, getattr(train, key)
    if name.startswith("prompt.demonstrations."):
        return True, getattr(prompt.demonstrations, name.rsplit(".", 1)[1])
    if name == "prompt.chat":
        return True, prompt.chat
    return False, None


def fit_config(
    space: SearchSpace,
    prompt: PromptConfig,
    train: TrainConfig,
    *,
    source: str,
    params: Mapping[str, Any] | None = None,
) -> WarmStart:
    """Map a previous config onto ``space``: the params to enqueue and a line for each one that does not fit.

    ``params`` are the previous trial's Optuna params; any of them that is no parameter of the new
    space is reported too.
    """
    fitted: dict[str, Any] = {}
    resolved: dict[str, Any] = {}  # every parameter's value, fixed ones too, for the 'when' conditions
    problems: list[str] = []
    for name, dim in space.params.items():
        if not is_active(dim, resolved):
            continue
        if is_meaningless(name, resolved):
            continue  # not sampled either: demonstration settings without demonstrations, training without it
        if name in _TEXT_PARAMS:
            found, value, shown = _text_key(space, name, prompt)
            if not found:
                problems.append(f"{name}: the previous {shown}")
                continue
        else:
            known, value = _previous_value(name, prompt, train)
            if not known:
                problems.append(f"{name}: the previous config has no value for it (left to the sampler)")
                continue
            if not _fits(dim, value):
                problems.append(f"{name}: the previous value {value!r} is outside this space ({describe(dim)})")
                continue
        resolved[name] = value
        if not isinstance(dim, Fixed):
            fitted[name] = value
    for name in params or {}:
        if name not in space.params:
            problems.append(f"{name}: not a parameter of this space")
    return WarmStart(source=source, params=fitted, not_fitting=problems)


def from_export(space: SearchSpace, path: str | Path) -> WarmStartPlan:
    """The plan for ``--warm-start best_prompt.yaml``."""
    from promptsearch.io.export import load_prompt_config

    export = load_prompt_config(path)
    source = f"{path} (trial {export.trial} of '{export.name}')"
    if export.prompt.is_plain and export.model.head == DEFAULT_HEAD:
        return WarmStartPlan(
            notes=[f"warm start from {source}: it is the plain fine-tuning baseline, which every study runs first"]
        )
    fitted = fit_config(space, export.prompt, export.train, source=source, params=export.params)
    if export.model.head != space.model.head:
        fitted.not_fitting.append(
            f"model.head: the earlier config answered with a {export.model.head} head, this space with "
            f"{space.model.head}; its prompt is reused, its score does not carry over"
        )
    return WarmStartPlan(trials=[fitted])


def from_study(space: SearchSpace, storage: str, study_name: str, *, top: int = 3) -> WarmStartPlan:
    """The plan for ``--warm-start-study URL NAME``: the ``top`` best completed trials, baseline excluded."""
    import optuna

    from promptsearch.redact import mask_url
    from promptsearch.study.records import trial_records
    from promptsearch.study.storage import make_storage

    if top < 1:
        raise ConfigError(f"--warm-start-top must be at least 1, but got {top}")
    store = make_storage(storage, create=False, read_only=True)  # it only reads the earlier study
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if study_name not in names:
        raise ConfigError(
            f"--warm-start-study {mask_url(storage)} {study_name}: no such study there; "
            f"studies there: {names or 'none'}"
        )
    old = optuna.load_study(study_name=study_name, storage=store)
    done = [
        r
        for r in trial_records(old, states=(optuna.trial.TrialState.COMPLETE,))
        if r.values and r.config is not None and not r.is_baseline
    ]
    if not done:
        return WarmStartPlan(notes=[f"warm start: study '{study_name}' has no completed sampled trial to start from"])
    maximize = old.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda r: (-(r.dev or 0.0) if maximize else (r.dev or 0.0), r.number))
    plan = WarmStartPlan()
    for r in done[:top]:
        config = r.config
        assert config is not None  # filtered above
        source = f"study '{study_name}' trial {r.number} (dev {100 * (r.dev or 0.0):.2f})"
        plan.trials.append(fit_config(space, config.prompt, config.train, source=source, params=r.params))
    return plan


def enqueue(study: optuna.Study, plan: WarmStartPlan) -> int:
    """Enqueue the plan's trials not enqueued before (by source); return how many were added."""
    from promptsearch.study.records import enqueue_warm_start, warm_start_sources

    seen = warm_start_sources(study)
    added = 0
    for trial in plan.trials:
        if trial.source in seen:
            logger.info("warm start from %s: already in the study", trial.source)
            continue
        enqueue_warm_start(study, trial.params, trial.source)
        added += 1
    return added
