"""The fine-tuning loop: AdamW, linear warmup then decay, gradient clipping, dev after every epoch.

Read it top to bottom: :func:`fine_tune` trains (its settings in one :class:`FitOptions` record), :func:`evaluate`
scores, :func:`predict_proba` gives class probabilities (in batches of similar length; with a head that reuses a
prefix, the tokens most prompts start with are read once: :func:`promptsearch.models.features.shared_prefix`).
``on_epoch(epoch, score, progress)`` is where a trial reports to Optuna and may raise ``optuna.TrialPruned``;
``progress`` is the :class:`FitResult` so far, so a caller still has the epochs and seconds of a pruned fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from promptsearch.models.device import autocast
from promptsearch.models.features import Encoded, collate, shared_prefix
from promptsearch.models.heads import get_head
from promptsearch.models.metrics import compute_metric
from promptsearch.space.config import TrainConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = [
    "FitOptions",
    "FitResult",
    "NonFiniteLoss",
    "evaluate",
    "fine_tune",
    "length_batches",
    "make_optimizer",
    "predict_proba",
    "predict_scores",
    "prompts_read_whole",
    "score_epoch",
]

EVAL_BATCH_SIZE = 64
# On a CPU a padded token costs as much as a real one, so evaluation batches hold rows of similar length (padding
# at most this share of the real tokens); on an accelerator a batch's launch costs more than its padding.
MAX_PADDING_CPU = 0.25
_reuse_prefix = True  # False inside prompts_read_whole()


class NonFiniteLoss(ArithmeticError):
    """The training loss became NaN or infinite: the trial cannot recover and stops."""


@dataclass
class FitResult:
    """Dev score per epoch, the best of them, and where the time went."""

    history: list[float] = field(default_factory=list)
    best_score: float = float("nan")
    best_epoch: int = 0
    epochs_run: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    best_state: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class FitOptions:
    """How :func:`fine_tune` runs (the hyperparameters are the :class:`TrainConfig`)."""

    device: torch.device
    pad_id: int
    seed: int
    metric: str = "accuracy"  # scored on dev after every epoch (promptsearch.models.metrics)
    maximize: bool = True  # whether a higher dev score is better (which epoch is best)
    keep_best_state: bool = False  # keep a CPU copy of the trainable parameters at the best dev epoch
    accumulation: int = 1  # micro-batches per optimizer step (same effective batch, less memory)
    precision: str = "auto"  # auto | fp32 | bf16 (promptsearch.models.device)


def batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None) -> list[list[int]]:
    """Shuffled batches when ``rng`` is given; otherwise length-sorted batches (less padding for eval)."""
    if rng is None:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    else:
        order = list(rng.permutation(len(lengths)))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def length_batches(
    rows: Sequence[int], lengths: Sequence[int], batch_size: int, *, max_padding: float | None = None
) -> list[list[int]]:
    """``rows`` in batches of at most ``batch_size`` and of similar ``lengths[row]`` (shortest first); with
    ``max_padding``, a batch also ends before a longer row would make padding more than that share of its real
    tokens (a bucket of similar lengths)."""
    out: list[list[int]] = []
    real = 0
    for i in sorted(rows, key=lambda i: lengths[i]):
        batch = out[-1] if out else []
        padded = (len(batch) + 1) * lengths[i]  # sorted: the new row is the batch's longest
        if (
            not batch
            or len(batch) == batch_size
            or (max_padding is not None and padded > (real + lengths[i]) * (1 + max_padding))
        ):
            out.append([i])
            real = lengths[i]
        else:
            batch.append(i)
            real += lengths[i]
    return out


def scores(
    model: PreTrainedModel,
    encoded: Encoded,
    index: Sequence[int],
    device: torch.device,
    pad_id: int,
    *,
    prefix: Any = None,
    start: int = 0,
) -> torch.Tensor:
    """Class scores ``[len(index), classes]`` of the rows at ``index`` (see :meth:`.heads.Head.scores`); with
    ``prefix`` (what the head kept of the first ``start`` tokens, which these rows share), only their own tokens
    are read (:meth:`.heads.Head.scores_after`)."""
    import torch

    batch = collate(encoded, index, pad_id, device, start=start)
    slots = None
    if encoded.slots is not None:
        slots = torch.tensor([encoded.slots[i] - start for i in index], dtype=torch.long).to(device)
    head = get_head(encoded.head)
    if prefix is not None:
        return head.scores_after(model, prefix, batch, slots, encoded.tokens)
    return head.scores(model, batch, slots, encoded.tokens)


@contextmanager
def prompts_read_whole() -> Iterator[None]:
    """Within it, :func:`predict_scores` reads every prompt whole, as with ``reuse_prefix=False`` (the scoring path
    before the shared-prefix cache) wherever it is called from: a whole search can be timed that way. One switch
    for the process, for benchmarks; the scores are the same to float rounding.

    >>> with prompts_read_whole():                     # doctest: +SKIP
    ...     study.optimize(6)
    """
    global _reuse_prefix
    before, _reuse_prefix = _reuse_prefix, False
    try:
        yield
    finally:
        _reuse_prefix = before


def predict_scores(
    model: PreTrainedModel,
    encoded: Encoded,
    device: torch.device,
    pad_id: int,
    precision: str = "auto",
    *,
    reuse_prefix: bool = True,
) -> np.ndarray:
    """Class scores ``[rows, classes]`` (as :meth:`.heads.Head.scores`), in the order of ``encoded``.

    Rows are scored in batches of similar length (:func:`length_batches`; on a CPU, buckets of at most
    :data:`MAX_PADDING_CPU` padding). With a head that reuses a prefix (the causal head) and ``reuse_prefix``, the
    leading tokens that most rows share (:func:`~promptsearch.models.features.shared_prefix`) are read once, and
    those rows read only their own tokens after them; the others are read whole. The scores are the same either
    way, to float rounding (``reuse_prefix=False`` reads every row whole).
    """
    import torch

    model.eval()
    classes = len(encoded.tokens.ids) if encoded.tokens is not None else int(model.config.num_labels or 2)
    out = np.zeros((len(encoded), classes), dtype=np.float32)
    head = get_head(encoded.head)
    padding = MAX_PADDING_CPU if device.type == "cpu" else None
    with torch.inference_mode(), autocast(device, precision):
        reuse = reuse_prefix and _reuse_prefix and head.reuses_prefix
        shared = shared_prefix(encoded.input_ids) if reuse else None
        prefix = None
        if shared is not None:
            prefix = head.read_prefix(model, torch.tensor([shared.ids], dtype=torch.long, device=device))
        after = set(shared.rows) if shared is not None and prefix is not None else set()
        whole = [i for i in range(len(encoded)) if i not in after]
        for idx in length_batches(whole, encoded.lengths, EVAL_BATCH_SIZE, max_padding=padding):
            out[idx] = scores(model, encoded, idx, device, pad_id).float().cpu().numpy()
        if shared is not None and prefix is not None:
            start = len(shared.ids)
            own = [n - start for n in encoded.lengths]  # what each row reads after the prefix
            for idx in length_batches(shared.rows, own, EVAL_BATCH_SIZE, max_padding=padding):
                logits = scores(model, encoded, idx, device, pad_id, prefix=prefix, start=start)
                out[idx] = logits.float().cpu().numpy()
    return out


def predict_proba(
    model: PreTrainedModel,
    encoded: Encoded,
    device: torch.device,
    pad_id: int,
    precision: str = "auto",
    *,
    reuse_prefix: bool = True,
) -> np.ndarray:
    """Class probabilities, in the order of ``encoded`` (``precision``: see :mod:`promptsearch.models.device`): the
    softmax of :func:`predict_scores`, which says how rows are batched and when a shared prefix is read once."""
    import torch

    logits = predict_scores(model, encoded, device, pad_id, precision, reuse_prefix=reuse_prefix)
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def evaluate(
    model: PreTrainedModel, encoded: Encoded, device: torch.device, pad_id: int, metric: str, precision: str = "auto"
) -> float:
    probs = predict_proba(model, encoded, device, pad_id, precision)
    return compute_metric(metric, encoded.labels, list(probs.argmax(axis=1)))


def score_epoch(
    model: PreTrainedModel,
    dev: Encoded,
    options: FitOptions,
    result: FitResult,
    epoch: int,
    *,
    keep: Callable[[str, torch.nn.Parameter], bool],
    on_epoch: Callable[[int, float, FitResult], None] | None = None,
) -> None:
    """Score ``dev`` after ``epoch`` into ``result`` (history, best epoch, and with ``keep_best_state`` a CPU copy
    of the parameters ``keep(name, param)`` selects), then call ``on_epoch``."""
    t0 = time.perf_counter()
    score = evaluate(model, dev, options.device, options.pad_id, options.metric, options.precision)
    result.eval_seconds += time.perf_counter() - t0
    result.history.append(score)
    better = result.best_score < score if options.maximize else score < result.best_score
    if math.isnan(result.best_score) or better:
        result.best_score, result.best_epoch = score, epoch
        if options.keep_best_state:
            result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters() if keep(k, v)}
    if on_epoch is not None:
        on_epoch(epoch, score, result)


def make_optimizer(model: PreTrainedModel, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (no weight decay on biases and norms)."""
    import torch

    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # the fused kernel runs on CUDA and, since torch 2.4, on CPU: one pass over all parameters per step
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=device.type in ("cuda", "cpu"))


def fine_tune(
    model: PreTrainedModel,
    train: Encoded,
    dev: Encoded,
    config: TrainConfig,
    options: FitOptions,
    *,
    on_epoch: Callable[[int, float, FitResult], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train`` for ``config.epochs`` epochs, scoring ``dev`` after each one.

    With 0 epochs the model is scored once, untrained (epoch 0). ``on_epoch(epoch, score, progress)`` is called
    after each score with the :class:`FitResult` so far (a caller keeps it to know the epochs and seconds when
    ``on_epoch`` raises, as a pruned trial does). With ``options.accumulation`` > 1 each optimizer step sums the
    gradients of that many micro-batches of ``config.batch_size // accumulation`` rows (same effective batch, less
    memory). A NaN or infinite loss raises :class:`NonFiniteLoss` at once on CPU, and at the end of the epoch on
    accelerators (where checking every step would force a device sync). ``options.precision`` is ``auto`` (bf16
    autocast where the hardware has native bf16), ``fp32`` or ``bf16``; the weights, the optimizer state and the
    loss stay fp32.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    device, pad_id, precision = options.device, options.pad_id, options.precision
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    result = FitResult()
    labels = torch.tensor(train.labels, dtype=torch.long)
    micro = max(1, config.batch_size // options.accumulation)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]

    def score_dev(epoch: int) -> None:  # keeps what training changed: the trainable parameters
        score_epoch(model, dev, options, result, epoch, keep=lambda _, v: v.requires_grad, on_epoch=on_epoch)

    if not config.trains or not trainable:
        score_dev(0)  # in context only: the prompt as it is, nothing trains
        return result
    optimizer = make_optimizer(model, config, device)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    try:
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            finite = torch.ones((), dtype=torch.bool, device=device)
            for idx in batches(train.lengths, config.batch_size, rng):
                for start in range(0, len(idx), micro):
                    part = idx[start : start + micro]
                    target = labels[part].to(device, non_blocking=device.type == "cuda")
                    with autocast(device, precision):
                        logits = scores(model, train, part, device, pad_id)
                    # sum over micro-batches of (mean loss x share of the batch) = the batch's mean loss
                    loss = torch.nn.functional.cross_entropy(logits.float(), target) * (len(part) / len(idx))
                    if device.type == "cpu":
                        if not torch.isfinite(loss):
                            raise NonFiniteLoss(f"the training loss is {loss.item()} at epoch {epoch}")
                    else:
                        finite &= torch.isfinite(loss)
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not bool(finite):
                raise NonFiniteLoss(f"the training loss became NaN or infinite in epoch {epoch}")
            result.train_seconds += time.perf_counter() - t0
            result.epochs_run = epoch
            score_dev(epoch)
        return result
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer, scheduler


def load_state(model: PreTrainedModel, state: dict[str, torch.Tensor]) -> None:
    """Copy the parameters saved by ``keep_best_state`` back into ``model`` in place."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            params[key].copy_(value)
