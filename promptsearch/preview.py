"""``promptsearch render``: one point of the space (some parameters fixed by the user), rendered."""

from __future__ import annotations

from typing import Any

import optuna

from promptsearch.config import TrialConfig
from promptsearch.data import TaskData
from promptsearch.dimensions import Fixed, FloatRange
from promptsearch.errors import ConfigError, did_you_mean
from promptsearch.render import PromptRenderer, RenderedPrompt
from promptsearch.sampling import sample_config
from promptsearch.space import SearchSpace, possible_values

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
) -> tuple[TrialConfig, list[tuple[RenderedPrompt, int]]]:
    """Sample a config (``sets`` fixed, the rest at random with ``seed``) and render ``n`` rows of ``split``."""
    from transformers import AutoTokenizer

    from promptsearch.modeling import _quiet_transformers, resolve_model_name, usable_max_length

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.enqueue_trial(check_sets(space, sets))
    config = sample_config(study.ask(), space)
    spec = space.spec.model
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_name(spec.name), revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    max_length = usable_max_length(spec.max_length, tokenizer)
    renderer = PromptRenderer(
        config.prompt, data.train, slot=tokenizer.mask_token or "", count_tokens=count, max_length=max_length
    )
    rows = (data.train if split == "train" else data.dev)[:n]
    out = []
    for row in rows:
        prompt = renderer.render(row)
        tokens = len(tokenizer(prompt.text, prompt.text_pair, add_special_tokens=True)["input_ids"])
        out.append((prompt, tokens))
    return config, out
