"""Fine-tuning within the accelerator's memory: on out-of-memory, retry with micro-batches half as large.

The effective batch stays ``train.batch_size`` (gradients are accumulated over the micro-batches), so a retried
trial trains as it would have; only at micro-batches of one row does it give up with :class:`OutOfMemory`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from promptsearch.models.device import free_memory
from promptsearch.models.embedding import fit_embedding
from promptsearch.models.features import Encoded
from promptsearch.models.trainer import FitOptions, FitResult, fine_tune
from promptsearch.space.config import TrainConfig
from promptsearch.space.spec import EMBEDDING_METHODS

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["OutOfMemory", "fine_tune_within_memory", "is_out_of_memory"]

logger = logging.getLogger(__name__)


class OutOfMemory(RuntimeError):
    """The accelerator ran out of memory even at batch size 1: the config cannot run here."""


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def fine_tune_within_memory(
    model: PreTrainedModel,
    train: Encoded,
    dev: Encoded,
    config: TrainConfig,
    options: FitOptions,
    *,
    restore: Callable[[], PreTrainedModel],
    on_epoch: Callable[[int, float, FitResult], None] | None = None,
) -> tuple[PreTrainedModel, FitResult]:
    """:func:`fine_tune` ``model``; on out-of-memory, put it back as it was with ``restore()`` (which returns the
    model to train) and retry with twice the gradient accumulation. Returns the model and the result of the attempt
    that finished."""
    while True:
        try:
            # methods embedding and contrastive fit a logistic regression on sentence embeddings instead
            fit = fit_embedding if config.method in EMBEDDING_METHODS and config.trains else fine_tune
            return model, fit(model, train, dev, config, options, on_epoch=on_epoch)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            free_memory(options.device)
            micro = config.batch_size // options.accumulation
            if micro <= 1:
                raise OutOfMemory(
                    f"out of memory on {options.device} even with micro-batches of 1 row "
                    f"(batch size {config.batch_size})"
                ) from None
            options = replace(options, accumulation=options.accumulation * 2)
            logger.warning(
                "out of memory with micro-batches of %d rows; retrying with %d x %d (same effective batch)",
                micro,
                config.batch_size // options.accumulation,
                options.accumulation,
            )
            model = restore()
