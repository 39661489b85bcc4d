"""``promptsearch render``: one point of the space (some parameters fixed by the user), rendered."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import optuna

from promptsearch.config import TrialConfig
from promptsearch.data import TaskData
from promptsearch.dimensions import Fixed, FloatRange
from promptsearch.errors import ConfigError, did_you_mean
from promptsearch.render import RenderedPrompt
from promptsearch.sampling import sample_config
from promptsearch.space import SearchSpace, possible_values

__all__ = ["candidate_lines", "check_sets", "render_examples"]


def candidate_lines(generated: dict[str, Any]) -> list[str]:
    """Generated candidates, each with its parameter key, and what they came from (for ``render``)."""
    lines = []
    sources = generated.get("sources") or {}
    words = sources.get("label_words")
    if words:
        lines.append(
            f"generated label words (prompt.label_words), ranked by {words['model']} ({words['head']} head) at the "
            f"{{label}} slot of {words['template']!r} over {words['train_prompts']} train prompts:"
        )
        for label, ranked in words["words"].items():
            lines.append(f"  {label}: " + ", ".join(f"{w} ({score:.2f})" for w, score in ranked))
        for key, mapping in generated.get("label_words", {}).items():
            accuracy = words["maps"][key]["train_accuracy"]
            lines.append(f"  {key}: {json.dumps(mapping)} (zero-shot train accuracy {100 * accuracy:.1f})")
    instructions = sources.get("instructions")
    if instructions:
        kept = sum(p["kept"] for p in instructions["proposals"])
        lines.append(
            f"generated instructions (prompt.instruction), proposed by {instructions['model']} from "
            f"{instructions['examples_per_proposal']} labelled train examples each ({kept} distinct of "
            f"{len(instructions['proposals'])} proposals):"
        )
        lines += [f"  {key}: {text!r}" for key, text in generated.get("instructions", {}).items()]
    return lines


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
    from promptsearch.features import PromptEncoder
    from promptsearch.modeling import load_tokenizer, usable_max_length

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
