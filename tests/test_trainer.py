"""The fine-tuning loop (models/trainer.py): what a batch is padded to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from promptsearch.io.data import Example
from promptsearch.models import trainer
from promptsearch.models.device import resolve_device
from promptsearch.models.features import collate
from promptsearch.models.runtime import ModelRuntime
from promptsearch.models.trainer import FitOptions, fine_tune
from promptsearch.space.config import DemoConfig, PromptConfig, TrainConfig
from promptsearch.space.spec import ModelSpec

LABELS = ["negative", "positive"]


def _rows() -> list[Example]:
    """Texts of very different lengths, so a batch padded to the longest row of all would be mostly padding."""
    words = ["a", "fine", "film", "with", "a", "dull", "plot", "and", "some", "great", "acting", "in", "the", "middle"]
    return [
        Example(fields={"text": " ".join(words[: 1 + (7 * i) % len(words)])}, label=LABELS[i % 2], row=i)
        for i in range(24)
    ]


def _train(model_dir: Path, head: str, pad_to_longest_of_all: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    runtime = ModelRuntime(ModelSpec(name=str(model_dir), head=head, max_length=64, precision="fp32"), LABELS,
                           resolve_device("cpu"))  # fmt: skip
    prompt = PromptConfig(
        template="{text} It was {label}.",
        label_words={"negative": "bad", "positive": "good"},
        demonstrations=DemoConfig(count=0),
    )
    rows = _rows()
    encoded = runtime.encoder.encode(prompt, rows, rows)
    widths: list[tuple[int, int, int]] = []  # (tokens skipped: a shared prefix, the batch's longest, padded to)
    longest = max(encoded.lengths)

    def padded(encoded: Any, index: Any, pad_id: int, device: Any, *, start: int = 0) -> dict[str, torch.Tensor]:
        batch = collate(encoded, index, pad_id, device, start=start)
        width = batch["input_ids"].shape[1]
        if pad_to_longest_of_all:  # the reference: every batch as wide as the longest row of the split
            extra = longest - start - width
            batch = {k: torch.nn.functional.pad(v, (0, extra), value=pad_id if k == "input_ids" else 0)
                     for k, v in batch.items()}  # fmt: skip
        widths.append((start, width, batch["input_ids"].shape[1]))
        return batch

    monkeypatch.setattr(trainer, "collate", padded)
    config = TrainConfig(learning_rate=5e-3, epochs=2, batch_size=4)
    model = runtime.restore(seed=0, train=config)
    options = FitOptions(device=runtime.device, pad_id=int(runtime.tokenizer.pad_token_id), seed=0, precision="fp32")
    result = fine_tune(model, encoded, encoded, config, options)
    state = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    return result, state, widths, longest


@pytest.mark.parametrize("fixture, head", [("tiny_model", "classification"), ("tiny_llama", "causal")])
def test_training_batches_are_padded_to_their_own_longest_row_with_the_same_result(
    fixture: str, head: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dynamic padding (each batch as wide as its longest row) trains the same weights as padding every batch to
    the longest row of the split: the attention mask hides the padding (to float rounding)."""
    model_dir = request.getfixturevalue(fixture)
    result, state, widths, longest = _train(model_dir, head, False, monkeypatch)
    assert all(padded == own for _, own, padded in widths)  # the trainer pads a batch to its own longest row
    assert any(own < longest - start for start, own, _ in widths)  # and that is narrower than the longest of all
    reference, reference_state, wide, _ = _train(model_dir, head, True, monkeypatch)
    assert all(padded == longest - start for start, _, padded in wide)
    assert result.history == pytest.approx(reference.history, abs=1e-5)
    assert state.keys() == reference_state.keys()
    diff = max(float((state[k] - reference_state[k]).abs().max()) for k in state)
    assert diff < 1e-5
    moved = max(float((state[k] - v).abs().max()) for k, v in _train(model_dir, head, False, monkeypatch)[1].items())
    assert moved == 0.0  # deterministic: the comparison is not hiding run-to-run noise
