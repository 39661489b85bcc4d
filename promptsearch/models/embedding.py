"""Methods ``embedding`` and ``contrastive`` (head ``embedding``): a logistic regression on the body's sentence
embeddings, after (``contrastive``) training the body on pairs of rows, as SetFit does.

``contrastive`` runs ``epochs`` epochs; each draws ``pairs_per_row`` pairs per training row, half with a row of the
same label (target cosine similarity 1) and half with a row of another label (target 0), and lowers the squared
error of their cosine similarity (SetFit's ``CosineSimilarityLoss``). After every epoch the body is frozen for a
moment, the logistic regression (scikit-learn, ``C = logistic_c``) is fitted on the training rows' embeddings and
copied into the head's linear layer, and dev is scored: so pruners see every epoch. ``embedding`` trains no body:
one fit of the head, reported as epoch 1. The head's probabilities are the logistic regression's, so a saved model
predicts exactly what the trial scored, with no pickle in the folder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from promptsearch.models.device import autocast
from promptsearch.models.features import Encoded, collate
from promptsearch.models.heads.embedding import linear_head, sentence_embeddings
from promptsearch.space.config import SEED_MAX, TrainConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from promptsearch.models.trainer import FitOptions, FitResult

__all__ = ["contrastive_pairs", "embed", "fit_embedding", "fit_logistic_head"]

_ABSENT_CLASS_BIAS = -30.0  # a class with no training row (a tiny fold) gets a probability of about 0


def contrastive_pairs(
    labels: Sequence[int], pairs_per_row: int, rng: np.random.Generator
) -> list[tuple[int, int, float]]:
    """``(i, j, target)`` pairs: for each row and round, one partner of its label (1.0) and one of another (0.0),
    never the row itself; a row whose label has no other row (or no other label exists) skips that half."""
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    partners = [
        ([j for j in by_label[label] if j != i], [j for lab, rows in by_label.items() if lab != label for j in rows])
        for i, label in enumerate(labels)
    ]
    out: list[tuple[int, int, float]] = []
    for _ in range(pairs_per_row):
        for i, (same, other) in enumerate(partners):
            if same:
                out.append((i, int(same[rng.integers(len(same))]), 1.0))
            if other:
                out.append((i, int(other[rng.integers(len(other))]), 0.0))
    return out


def embed(
    model: PreTrainedModel, encoded: Encoded, device: torch.device, pad_id: int, precision: str = "auto"
) -> np.ndarray:
    """``[rows, hidden]`` sentence embeddings of ``encoded``, in its order (no gradients)."""
    import torch

    from promptsearch.models.trainer import EVAL_BATCH_SIZE, batches

    model.eval()
    out: np.ndarray | None = None
    with torch.inference_mode(), autocast(device, precision):
        for idx in batches(encoded.lengths, EVAL_BATCH_SIZE, None):
            vectors = sentence_embeddings(model, collate(encoded, idx, pad_id, device)).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(encoded), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
    assert out is not None, "no rows to embed"
    return out


def fit_logistic_head(
    model: PreTrainedModel, embeddings: np.ndarray, labels: Sequence[int], *, c: float, seed: int
) -> None:
    """Fit scikit-learn's logistic regression and copy it into the head's linear layer (softmax of the layer's
    logits = the regression's probabilities; two classes: logits 0 and w.x + b)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    linear = linear_head(model)
    classes = linear.out_features
    weight = np.zeros((classes, linear.in_features), dtype=np.float64)
    bias = np.full(classes, _ABSENT_CLASS_BIAS, dtype=np.float64)
    present = sorted(set(labels))
    if len(present) == 1:
        bias[present[0]] = 0.0  # one class in the rows: it is the only answer
    else:
        # a trial's seed (search.seed x 100003 + trial number) may exceed what scikit-learn takes
        fitted = LogisticRegression(C=c, max_iter=1000, random_state=seed % (SEED_MAX + 1))
        fitted.fit(embeddings, list(labels))
        if len(present) == 2:
            weight[present[1]] = fitted.coef_[0]
            bias[present[0]], bias[present[1]] = 0.0, fitted.intercept_[0]
        else:
            for row, label in enumerate(fitted.classes_):
                weight[int(label)] = fitted.coef_[row]
                bias[int(label)] = fitted.intercept_[row]
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))


def _contrastive_epoch(
    model: PreTrainedModel,
    train: Encoded,
    pairs: list[tuple[int, int, float]],
    config: TrainConfig,
    options: FitOptions,
    optimizer: torch.optim.Optimizer,
    scheduler: object,
    rng: np.random.Generator,
) -> None:
    import torch

    from promptsearch.models.trainer import NonFiniteLoss

    device, pad_id = options.device, options.pad_id
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    order = rng.permutation(len(pairs))
    for start in range(0, len(order), config.batch_size):
        chunk = [pairs[k] for k in order[start : start + config.batch_size]]
        left, right = [a for a, _, _ in chunk], [b for _, b, _ in chunk]
        target = torch.tensor([t for _, _, t in chunk], dtype=torch.float32, device=device)
        with autocast(device, options.precision):
            u = sentence_embeddings(model, collate(train, left, pad_id, device))
            v = sentence_embeddings(model, collate(train, right, pad_id, device))
        loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(u, v), target)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"the contrastive loss is {loss.item()}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        scheduler.step()  # type: ignore[attr-defined]
        optimizer.zero_grad(set_to_none=True)


def fit_embedding(
    model: PreTrainedModel,
    train: Encoded,
    dev: Encoded,
    config: TrainConfig,
    options: FitOptions,
    *,
    on_epoch: Callable[[int, float, FitResult], None] | None = None,
) -> FitResult:
    """Methods ``embedding`` and ``contrastive`` (see the module); the same contract as
    :func:`promptsearch.models.trainer.fine_tune`."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from promptsearch.models.trainer import FitResult, make_optimizer, score_epoch

    torch.manual_seed(options.seed)
    result = FitResult()
    head = {id(p) for p in linear_head(model).parameters()}

    def keep(_: str, param: torch.nn.Parameter) -> bool:  # the body (when it trains) and the fitted head
        return param.requires_grad or id(param) in head

    contrastive = config.method == "contrastive"
    epochs = config.epochs if contrastive else 1
    optimizer = scheduler = None
    if contrastive:  # every epoch draws as many pairs: 2 per row and round, less where a label has one row
        per_epoch = len(contrastive_pairs(train.labels, config.pairs_per_row, np.random.default_rng(options.seed)))
        steps = math.ceil(per_epoch / config.batch_size) * epochs
        optimizer = make_optimizer(model, config, options.device)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            if contrastive:
                assert optimizer is not None
                rng = np.random.default_rng(options.seed + epoch - 1)  # fresh partners every epoch
                pairs = contrastive_pairs(train.labels, config.pairs_per_row, rng)
                _contrastive_epoch(model, train, pairs, config, options, optimizer, scheduler, rng)
            vectors = embed(model, train, options.device, options.pad_id, options.precision)
            fit_logistic_head(model, vectors, train.labels, c=config.logistic_c, seed=options.seed)
            result.train_seconds += time.perf_counter() - t0
            result.epochs_run = epoch
            score_epoch(model, dev, options, result, epoch, keep=keep, on_epoch=on_epoch)
        return result
    finally:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
