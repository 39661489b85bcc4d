"""Fully resolved trial configurations: what one trial renders and trains, with no ranges left."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DemoConfig", "PromptConfig", "TrainConfig", "TrialConfig"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoConfig(_Frozen):
    count: int = Field(0, ge=0, description="Demonstrations per prompt.")
    selection: str = Field("random", description="random | balanced | similar")
    separator: str = Field("\n\n", description="Text after each demonstration.")


class PromptConfig(_Frozen):
    """How one input becomes model text. ``template=None`` is plain fine-tuning: the texts alone."""

    instruction: str = ""
    template: str | None = None
    label_words: dict[str, str] = Field(default_factory=dict)
    demonstrations: DemoConfig = Field(default_factory=DemoConfig)
    seed: int = Field(0, description="Seed of the demonstration choice (rendering is deterministic given it).")

    @property
    def is_plain(self) -> bool:
        return self.template is None


class TrainConfig(_Frozen):
    """Fine-tuning hyperparameters; the defaults are the plain fine-tuning baseline."""

    method: Literal["full", "head"] = Field("full", description="full | head (only the classification head trains)")
    learning_rate: float = Field(2e-5, gt=0)
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(8, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)


class TrialConfig(_Frozen):
    """One point of the space: the prompt, the training, and the Optuna params it came from."""

    prompt: PromptConfig
    train: TrainConfig
    params: dict[str, Any] = Field(default_factory=dict, description="Optuna params (dotted names -> keys/values).")
    baseline: bool = False
