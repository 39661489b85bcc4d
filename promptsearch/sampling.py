"""The one place that calls ``trial.suggest_*``: an Optuna trial -> a resolved :class:`TrialConfig`.

Parameter names are the dotted YAML paths (``prompt.template``, ``train.learning_rate``). Text
choices are suggested by their key (the mapping key, or the list index) and resolved afterwards,
because Optuna stores only primitives. ``optuna.trial.FixedTrial(params)`` works the same way,
which is how an exported config is re-run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptsearch.config import DemoConfig, LoraConfig, PromptConfig, TrainConfig, TrialConfig
from promptsearch.dimensions import Categorical, Dimension, Fixed, FloatRange, IntRange
from promptsearch.space import SearchSpace, is_active

if TYPE_CHECKING:
    import optuna

__all__ = ["baseline_config", "is_meaningless", "sample_config"]


def _suggest(trial: optuna.trial.BaseTrial, name: str, dim: Dimension) -> Any:
    if isinstance(dim, Fixed):
        return dim.value
    if isinstance(dim, Categorical):
        return trial.suggest_categorical(name, list(dim.choices))
    if isinstance(dim, IntRange):
        return trial.suggest_int(name, dim.low, dim.high, step=dim.step, log=dim.log)
    if isinstance(dim, FloatRange):
        return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
    raise TypeError(f"unknown dimension {dim!r}")


def is_meaningless(name: str, values: dict[str, Any]) -> bool:
    """Natural conditions: parameters that mean nothing given earlier values are not sampled."""
    if name in ("prompt.demonstrations.selection", "prompt.demonstrations.separator"):
        return not values.get("prompt.demonstrations.count")
    method = values.get("train.method")
    if name.startswith("train.lora."):
        return method != "lora"
    if name.startswith("train.") and name != "train.method":
        return method == "none"  # nothing trains, so no training hyperparameters
    return False


def sample_config(trial: optuna.trial.BaseTrial, space: SearchSpace) -> TrialConfig:
    """Sample every active parameter of ``space`` in order and resolve text keys to their texts."""
    values: dict[str, Any] = {}
    for name, dim in space.params.items():
        if not is_active(dim, values) or is_meaningless(name, values):
            continue
        values[name] = _suggest(trial, name, dim)

    demo_defaults = DemoConfig()
    prompt = PromptConfig(
        instruction=space.instructions[values["prompt.instruction"]],
        template=space.templates[values["prompt.template"]].source,
        label_words=dict(space.label_words[values["prompt.label_words"]]),
        demonstrations=DemoConfig(
            count=values.get("prompt.demonstrations.count", 0),  # absent when its condition is false
            selection=values.get("prompt.demonstrations.selection", demo_defaults.selection),
            separator=values.get("prompt.demonstrations.separator", demo_defaults.separator),
        ),
        seed=space.spec.search.seed,
        chat=bool(values.get("prompt.chat", False)),
    )
    train_values = {
        k.removeprefix("train."): v for k, v in values.items() if k.startswith("train.") and ".lora." not in k
    }
    if train_values.get("method") == "lora":
        lora = {k.removeprefix("train.lora."): v for k, v in values.items() if k.startswith("train.lora.")}
        train_values["lora"] = LoraConfig(**lora, target_modules=space.spec.train.lora.target_modules)
    if train_values.get("method") == "none":
        train_values["epochs"] = 0
    train = TrainConfig(**train_values)
    params = {k: v for k, v in values.items() if not isinstance(space.params[k], Fixed)}
    return TrialConfig(prompt=prompt, train=train, params=params, head=space.spec.model.head)


def baseline_config(space: SearchSpace) -> TrialConfig:
    """Plain fine-tuning: the texts alone (no instruction, demonstrations or template), default training.

    ``baseline:`` in the space overrides the training defaults.
    """
    labels = space.spec.task.labels
    prompt = PromptConfig(label_words={label: label for label in labels}, seed=space.spec.search.seed)
    return TrialConfig(prompt=prompt, train=TrainConfig(**space.spec.baseline), baseline=True)
