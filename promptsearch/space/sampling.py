"""The one place that calls ``trial.suggest_*``: an Optuna trial -> a resolved :class:`TrialConfig`.

Parameter names are the dotted YAML paths (``prompt.template``, ``train.learning_rate``). Text
choices are suggested by their key (the mapping key, or the list index) and resolved afterwards,
because Optuna stores only primitives. ``optuna.trial.FixedTrial(params)`` works the same way,
which is how an exported config is re-run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptsearch.space.config import DemoConfig, LoraConfig, PromptConfig, TrainConfig, TrialConfig
from promptsearch.space.dimensions import Categorical, Dimension, Fixed, FloatRange, IntRange
from promptsearch.space.registry import DEFAULT_HEAD, head_traits
from promptsearch.space.search_space import SearchSpace, is_active
from promptsearch.space.spec import EMBEDDING_METHODS

if TYPE_CHECKING:
    import optuna

__all__ = ["baseline_config", "baseline_model", "is_meaningless", "sample_config"]

_TEMPLATE_PARAMS = (
    "prompt.template",
    "prompt.label_words",
    "prompt.demonstrations.count",
    "prompt.demonstrations.selection",
    "prompt.demonstrations.separator",
    "prompt.demonstrations.set",
)


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


def _train_key(values: dict[str, Any], key: str) -> str:
    """The parameter that holds training value ``key`` for the chosen model (its own, or the shared one)."""
    own = f"model.{values['model']}.train.{key}" if "model" in values else None
    return own if own is not None and own in values else f"train.{key}"


def is_meaningless(name: str, values: dict[str, Any], heads: dict[str, str] | None = None) -> bool:
    """Natural conditions: parameters that mean nothing given earlier values are not sampled.

    ``heads`` maps model ids to heads (a model list; ``""`` for a single model); the chosen model's head decides
    chat, calibration and whether the template applies.
    """
    head = (heads or {}).get(values.get("model", ""), None)
    if name in _TEMPLATE_PARAMS and head is not None and not head_traits(head).reads_template:
        return True  # an embedding head reads the instruction and the text alone
    if name in ("prompt.demonstrations.selection", "prompt.demonstrations.separator"):
        return not values.get("prompt.demonstrations.count")
    if name == "prompt.demonstrations.set":  # one of the sets of selection fixed
        return not values.get("prompt.demonstrations.count") or values.get("prompt.demonstrations.selection") != "fixed"
    if name == "prompt.chat" and head is not None:
        return not head_traits(head).chat
    method = values.get(_train_key(values, "method"))
    if name == "prompt.calibration":
        return (head is not None and not head_traits(head).label_words) or method != "none"
    train = name.removeprefix(f"model.{values['model']}.") if "model" in values else name
    if train.startswith("train.lora."):
        return method != "lora"
    if train == "train.pairs_per_row":
        return method != "contrastive"
    if train == "train.logistic_c":
        return method not in EMBEDDING_METHODS
    if train.startswith("train.") and train != "train.method":
        return method in ("none", "embedding")  # nothing trains by gradient: no training hyperparameters
    return False


def sample_config(trial: optuna.trial.BaseTrial, space: SearchSpace) -> TrialConfig:
    """Sample every active parameter of ``space`` in order and resolve text keys to their texts."""
    heads = {key: m.head for key, m in space.models.items()} or {"": space.model.head}
    values: dict[str, Any] = {}
    for name, dim in space.params.items():
        # calibration is sampled after train.method (which decides whether it means anything)
        if name == "prompt.calibration" or not is_active(dim, values) or is_meaningless(name, values, heads):
            continue
        values[name] = _suggest(trial, name, dim)
    calibration = space.params.get("prompt.calibration")
    if calibration is not None and not is_meaningless("prompt.calibration", values, heads):
        values["prompt.calibration"] = _suggest(trial, "prompt.calibration", calibration)

    model_id = values.get("model")
    head = heads[model_id] if model_id is not None else space.model.head
    demo_defaults = DemoConfig()
    reads_template = "prompt.template" in values  # not for an embedding head: the instruction and the text alone
    prompt = PromptConfig(
        instruction=space.instructions[values["prompt.instruction"]],
        template=space.templates[values["prompt.template"]].source if reads_template else None,
        label_words=dict(space.label_words[values["prompt.label_words"]])
        if reads_template
        else {label: label for label in space.spec.task.labels},
        demonstrations=DemoConfig(
            count=values.get("prompt.demonstrations.count", 0),  # absent when its condition is false
            selection=values.get("prompt.demonstrations.selection", demo_defaults.selection),
            separator=values.get("prompt.demonstrations.separator", demo_defaults.separator),
            set=values.get("prompt.demonstrations.set", demo_defaults.set),
        ),
        seed=space.spec.search.seed,
        chat=bool(values.get("prompt.chat", False)) and head_traits(head).chat,
        calibration=values.get("prompt.calibration", "none"),
    )
    prefix = f"model.{model_id}." if model_id is not None else ""
    train_values: dict[str, Any] = {}
    lora: dict[str, Any] = {}
    for name, value in values.items():
        key = name.removeprefix(prefix) if name.startswith(prefix + "train.") else name
        if key.startswith("train.lora."):
            lora[key.removeprefix("train.lora.")] = value
        elif key.startswith("train."):
            train_values[key.removeprefix("train.")] = value
    if train_values.get("method") == "lora":
        choice = space.models.get(model_id) if model_id is not None else None
        lora_spec = choice.train.lora if choice is not None and choice.train is not None else space.spec.train.lora
        train_values["lora"] = LoraConfig(**lora, target_modules=lora_spec.target_modules)
    if train_values.get("method") == "none":
        train_values["epochs"] = 0
    if train_values.get("method") == "embedding":
        train_values["epochs"] = 1  # one fit of the head, reported as epoch 1
    train = TrainConfig(**train_values)
    params = {k: v for k, v in values.items() if not isinstance(space.params[k], Fixed)}
    return TrialConfig(prompt=prompt, train=train, params=params, head=head, model=model_id)


def baseline_model(space: SearchSpace) -> str | None:
    """The model the baseline fine-tunes: ``baseline.model``, else the first classification model, else the first."""
    if not space.models:
        return None
    declared = space.spec.baseline.get("model")
    if declared is not None:
        return str(declared)
    return next((k for k, m in space.models.items() if m.head == DEFAULT_HEAD), next(iter(space.models)))


def baseline_config(space: SearchSpace) -> TrialConfig:
    """Plain fine-tuning: the texts alone (no instruction, demonstrations or template), default training.

    ``baseline:`` in the space overrides the training defaults (and, with a model list, names the model).
    """
    labels = space.spec.task.labels
    prompt = PromptConfig(label_words={label: label for label in labels}, seed=space.spec.search.seed)
    train = TrainConfig(**{k: v for k, v in space.spec.baseline.items() if k != "model"})
    return TrialConfig(prompt=prompt, train=train, baseline=True, model=baseline_model(space))
