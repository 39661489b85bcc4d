"""``promptsearch render``: one point of the space (some parameters fixed by the user), rendered."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna

from promptsearch.errors import ConfigError, did_you_mean
from promptsearch.io.data import TaskData
from promptsearch.prompts.render import RenderedPrompt
from promptsearch.space.config import TrialConfig
from promptsearch.space.dimensions import Fixed, FloatRange
from promptsearch.space.sampling import sample_config
from promptsearch.space.search_space import SearchSpace, possible_values

__all__ = ["check_sets", "render_examples"]


def check_sets(space: SearchSpace, sets: dict[str, Any]) -> dict[str, Any]:
    """Check ``--set`` values against the space: known parameter names and values the space can take."""
    names = list(space.params)
    out = {}
    for key, value in sets.items():
        if key not in space.params:
            raise ConfigError(
                f"--set {key}: no such parameter.{did_you_mean(key, names)} Parameters: {', '.join(names)}"
            )
        dim = space.params[key]
        if isinstance(dim, Fixed):
            if value != dim.value:
                raise ConfigError(f"--set {key}: the space fixes it to {dim.value!r}")
            continue
        if isinstance(dim, FloatRange):
            if not isinstance(value, (int, float)) or not dim.low <= value <= dim.high:
                raise ConfigError(f"--set {key}={value!r}: expected a number in [{dim.low}, {dim.high}]")
            out[key] = float(value)
            continue
        options = possible_values(dim)
        if options is not None and value not in options:
            # text choices given by a list are stored by index; accept the index written as a string too
            as_int = int(value) if isinstance(value, str) and value.isdigit() else value
            if as_int not in options:
                raise ConfigError(f"--set {key}={value!r}: expected one of {list(options)}")
            value = as_int
        out[key] = value
    return out


def render_examples(
    space: SearchSpace, data: TaskData, sets: dict[str, Any], *, n: int, split: str, seed: int
) -> tuple[TrialConfig, list[tuple[RenderedPrompt, int]], dict[str, list[str]]]:
    """Sample a config (``sets`` fixed, the rest at random with ``seed``) and render ``n`` rows of ``split``.

    Also returns the tokens each label's word is scored by (empty for a classification head).
    """
    from promptsearch.models.features import PromptEncoder
    from promptsearch.models.runtime import load_tokenizer, usable_max_length

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.enqueue_trial(check_sets(space, sets))
    config = sample_config(study.ask(), space)
    spec = space.model_spec(config.model)
    tokenizer = load_tokenizer(spec)
    max_length = usable_max_length(spec.max_length, tokenizer)
    encoder = PromptEncoder(tokenizer, spec.head, max_length, space.spec.task.labels, spec.scoring)
    rows = (data.train if split == "train" else data.dev)[:n]
    encoded = encoder.encode(config.prompt, rows, data.train)
    out = [
        (replace(prompt, text=encoder.model_text(prompt.text, config.prompt.chat)), len(ids))
        for prompt, ids in zip(encoded.prompts, encoded.input_ids, strict=True)
    ]
    answers: dict[str, list[str]] = {}
    if encoded.tokens is not None:
        for label, ids in zip(encoder.labels, encoded.tokens.ids, strict=True):
            answers[label] = [str(t) for t in tokenizer.convert_ids_to_tokens(list(ids))]
    return config, out, answers
