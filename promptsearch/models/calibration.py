"""Calibrated label scores: remove a model's prior preference for some label words, from train data only.

A language model scoring label words prefers some of them whatever the input (a small instruction-tuned
model may answer "negative" to every review). Two corrections, each a per-class offset subtracted from
the class log-probabilities (normalised over the classes) before the argmax:

- ``contextual`` (Zhao et al. 2021, "Calibrate Before Use"): the label probabilities the prompt gives a
  content-free input (``N/A`` in every text field, with the same instruction, template and demonstrations);
  subtracting their logarithm divides each probability by them.
- ``mean``: each label's mean log-probability over the train prompts.

The offsets are computed once per trial (the model does not change: calibration applies to in-context
trials) and travel with the best prompt's export, so ``predict`` applies the same ones.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from promptsearch.io.data import Example
from promptsearch.space.config import CalibrationParams, PromptConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from promptsearch.models.features import Encoded
    from promptsearch.models.runtime import ModelRuntime

__all__ = ["CONTENT_FREE", "apply_calibration", "compute_calibration", "offsets_from_probabilities"]

CONTENT_FREE = "N/A"


def offsets_from_probabilities(rows: Sequence[Sequence[float]], method: str) -> list[float]:
    """Per-class offsets from class probabilities ``[rows, classes]``: log of the mean (contextual), or the
    mean log (mean), normalised so the offsets are log-probabilities over the classes."""
    classes = len(rows[0])
    if method == "contextual":
        mean = [sum(r[c] for r in rows) / len(rows) for c in range(classes)]
        total = sum(mean)
        return [math.log(max(p / total, 1e-38)) for p in mean]
    logs = [sum(math.log(max(r[c], 1e-38)) for r in rows) / len(rows) for c in range(classes)]
    shift = math.log(sum(math.exp(x) for x in logs))
    return [x - shift for x in logs]


def compute_calibration(
    runtime: ModelRuntime, prompt: PromptConfig, train: Sequence[Example], *, encoded_train: Encoded | None = None
) -> CalibrationParams:
    """The offsets of ``prompt.calibration`` for the model as it is now, from the train rows only."""
    from promptsearch.models.trainer import predict_proba

    method = prompt.calibration
    if method not in ("contextual", "mean"):
        raise ValueError(f"no calibration to compute for {method!r}")
    pad_id = int(runtime.tokenizer.pad_token_id)
    if method == "contextual":
        fields = dict.fromkeys(train[0].fields, CONTENT_FREE)
        free = Example(fields=fields, label=runtime.labels[0], source="content-free input")
        encoded = runtime.encoder.encode(prompt, [free], train)
        source = f"content-free input {CONTENT_FREE!r}"
    else:
        encoded = encoded_train if encoded_train is not None else runtime.encoder.encode(prompt, train, train)
        source = f"mean over {len(encoded)} train prompts"
    uncalibrated = apply_calibration(encoded, None)
    probs = predict_proba(runtime.model, uncalibrated, runtime.device, pad_id, runtime.precision)
    offsets = offsets_from_probabilities(probs.tolist(), method)
    return CalibrationParams(method=method, offsets=[round(x, 6) for x in offsets], source=source)


def apply_calibration(encoded: Encoded, params: CalibrationParams | None) -> Encoded:
    """A copy of ``encoded`` whose class scores have ``params``' offsets subtracted (``None``: none)."""
    if encoded.tokens is None:
        return encoded  # a classification head scores no label words: nothing to calibrate
    offsets = tuple(params.offsets) if params is not None else None
    if len(offsets or ()) not in (0, len(encoded.tokens.ids)):
        raise ValueError(f"{len(offsets or ())} calibration offsets for {len(encoded.tokens.ids)} classes")
    return replace(encoded, tokens=replace(encoded.tokens, offsets=offsets))
