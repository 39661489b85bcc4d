"""The ``mlm`` head: the template's ``{label}`` slot holds the mask token; the masked-LM logits at that position,
restricted to the label words' tokens, are the class scores (LM-BFF's prompt-based fine-tuning)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError, TemplateError
from promptsearch.models.heads.base import LabelTokens, LabelWordHead, combine
from promptsearch.models.heads.registry import register_head

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from promptsearch.prompts.render import RenderedPrompt

__all__ = ["MaskedLMHead"]

# architectures whose vocabulary projection can run at the mask alone (the module that holds it)
_FAST_MLM = {"BertForMaskedLM": "cls", "RobertaForMaskedLM": "lm_head", "XLMRobertaForMaskedLM": "lm_head"}


@register_head("mlm")
class MaskedLMHead(LabelWordHead):
    auto_class = "AutoModelForMaskedLM"

    def check_tokenizer(self, tokenizer: PreTrainedTokenizerBase, model_name: str) -> None:
        if tokenizer.mask_token is None:
            raise ConfigError(
                f"model.head: 'mlm' needs a tokenizer with a mask token, and the one of '{model_name}' has none; "
                "use head 'causal' (decoder models) or 'classification'"
            )

    def trains_as_head(self, model: PreTrainedModel, parameter: str, new_modules: Sequence[str]) -> bool:
        # the masked-LM head's own weights, everything outside the body (its tied decoder weight is listed under
        # the body's word embeddings, so it stays frozen)
        return not parameter.startswith(model.base_model_prefix + ".")

    def find_slots(
        self, tokenizer: PreTrainedTokenizerBase, input_ids: Sequence[Sequence[int]], prompts: Sequence[RenderedPrompt]
    ) -> list[int]:
        mask_id = tokenizer.mask_token_id
        slots = []
        for ids, p in zip(input_ids, prompts, strict=True):
            where = [i for i, t in enumerate(ids) if t == mask_id]
            if len(where) != 1:
                raise TemplateError(
                    f"the rendered prompt holds {len(where)} mask tokens, but the mlm head needs exactly one "
                    f"(at the {{label}} slot); check the instruction and template for '{tokenizer.mask_token}': "
                    f"{p.text!r}"
                )
            slots.append(where[0])
        return slots

    def vocab_logits(
        self, model: PreTrainedModel, batch: Mapping[str, torch.Tensor], slots: torch.Tensor
    ) -> torch.Tensor:
        import torch

        rows = torch.arange(slots.shape[0], device=slots.device)
        head_name = _FAST_MLM.get(type(model).__name__)
        if head_name is not None:  # the vocabulary projection only at the mask, not at every position
            hidden = getattr(model, model.base_model_prefix)(**batch)[0]
            return getattr(model, head_name)(hidden[rows, slots])
        return model(**batch).logits[rows, slots]

    def word_scores(
        self, model: PreTrainedModel, batch: Mapping[str, torch.Tensor], slots: torch.Tensor, tokens: LabelTokens
    ) -> torch.Tensor:
        import torch

        return combine(torch.log_softmax(self.vocab_logits(model, batch, slots).float(), dim=-1), tokens)
