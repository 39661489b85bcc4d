"""Fully resolved trial configurations: what one trial renders and trains, with no ranges left."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from promptsearch.space.registry import DEFAULT_HEAD, HEADS

__all__ = [
    "SEED_MAX",
    "CalibrationParams",
    "DemoConfig",
    "LoraConfig",
    "PromptConfig",
    "Seed",
    "TrainConfig",
    "TrialConfig",
    "choices_of",
    "refusal",
]

SEED_MAX = 2**32 - 1
# numpy's RandomState (Optuna's samplers, scikit-learn's random_state) takes seeds in [0, 2**32 - 1]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX, description="A seed: 0 to 2**32 - 1, as numpy takes it.")]
# Upper bounds of the integer hyperparameters: generous, but finite. Optuna's GP sampler lists every value of an
# integer range (a range of 10**9 values would take gigabytes), and a step count beyond 1e308 overflows the
# learning-rate schedule's float arithmetic.
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_DEMONSTRATIONS = 1_000
MAX_LORA_RANK = 4_096
MAX_LORA_ALPHA = 65_536
MAX_PAIRS_PER_ROW = 1_000


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoConfig(_Frozen):
    count: int = Field(0, ge=0, le=MAX_DEMONSTRATIONS, description="Demonstrations per prompt.")
    selection: str = Field("random", description="random | balanced | similar | fixed")
    separator: str = Field("\n\n", description="Text after each demonstration.")
    set: int = Field(0, ge=0, description="selection fixed: which of the study's demonstration sets (0 = the first).")


class PromptConfig(_Frozen):
    """How one input becomes model text. ``template=None`` is plain fine-tuning: the texts alone."""

    instruction: str = ""
    template: str | None = None
    label_words: dict[str, str] = Field(default_factory=dict)
    demonstrations: DemoConfig = Field(default_factory=DemoConfig)
    seed: Seed = Field(0, description="Seed of the demonstration choice (rendering is deterministic given it).")
    chat: bool = Field(False, description="Causal head: wrap the prompt in the tokenizer's chat template.")
    calibration: Literal["none", "contextual", "mean"] = Field(
        "none", description="How label scores are calibrated (mlm and causal heads, in-context trials)."
    )

    @property
    def is_plain(self) -> bool:
        """The text alone: no template and no instruction (the baseline's prompt)."""
        return self.template is None and not self.instruction


class CalibrationParams(_Frozen):
    """What a calibrated trial subtracts from each class's log-probability (label order), from train data only."""

    method: Literal["contextual", "mean"]
    offsets: list[float] = Field(description="Per-class log-probabilities (normalised over the classes).")
    source: str = Field("", description="What they were computed from, e.g. 'content-free input N/A'.")


class LoraConfig(_Frozen):
    r: int = Field(8, ge=1, le=MAX_LORA_RANK)
    alpha: int = Field(16, ge=1, le=MAX_LORA_ALPHA)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = None


class TrainConfig(_Frozen):
    """Fine-tuning hyperparameters; the defaults are the plain fine-tuning baseline."""

    method: Literal["full", "lora", "head", "bitfit", "none", "embedding", "contrastive"] = Field(
        "full", description="full | lora | head | bitfit | none (no training) | embedding | contrastive"
    )
    lora: LoraConfig | None = Field(None, description="Set when method is lora.")
    learning_rate: float = Field(2e-5, gt=0, allow_inf_nan=False)
    epochs: int = Field(10, ge=0, le=MAX_EPOCHS)
    batch_size: int = Field(8, ge=1, le=MAX_BATCH_SIZE)
    weight_decay: float = Field(0.01, ge=0, allow_inf_nan=False)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0, allow_inf_nan=False)
    pairs_per_row: int = Field(
        5, ge=1, le=MAX_PAIRS_PER_ROW, description="method contrastive: pairs per row and epoch."
    )
    logistic_c: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="methods embedding and contrastive: logistic regression's C."
    )

    @property
    def trains(self) -> bool:
        """Whether any weight changes: not with method 'none' or 0 epochs (the prompt in context only)."""
        return self.method != "none" and self.epochs > 0


class TrialConfig(_Frozen):
    """One point of the space: the prompt, the training, and the Optuna params it came from."""

    prompt: PromptConfig
    train: TrainConfig
    params: dict[str, Any] = Field(default_factory=dict, description="Optuna params (dotted names -> keys/values).")
    baseline: bool = False
    head: str = Field(
        DEFAULT_HEAD, description="How the model answers, a registered head (the baseline: a classification head)."
    )
    model: str | None = Field(None, description="The model's id when the space lists several models.")

    @field_validator("head")
    @classmethod
    def _known_head(cls, value: str) -> str:
        return HEADS.check(value)


def choices_of(model: type[BaseModel], name: str) -> tuple[Any, ...]:
    """The values of a ``Literal`` field of a trial model (``choices_of(TrainConfig, "method")``)."""
    return get_args(model.model_fields[name].annotation)


def refusal(model: type[BaseModel], name: str, value: Any) -> str | None:
    """Why a trial would refuse ``value`` for field ``name`` of ``model``, or None when it takes it.

    The trial model itself judges (its field's type and constraints, and its validators), so the space is
    checked against exactly what trials build. Fields not given keep their defaults.

    >>> refusal(TrainConfig, "warmup_ratio", 2)
    'warmup_ratio should be less than or equal to 1'
    >>> refusal(TrainConfig, "warmup_ratio", 0.5) is None
    True
    """
    try:
        model.model_validate({name: value})
    except ValidationError as exc:
        errors = [e for e in exc.errors() if tuple(e["loc"][:1]) == (name,)]
        if errors:
            text = str(errors[0]["msg"]).removeprefix("Value error, ")
            return f"{name} {text.removeprefix('Input ')}" if text.startswith("Input should") else f"{name}: {text}"
    return None
