"""The loaded models of a space and their tokenized-split caches, one per (model id, head), loaded on first use.

A study's trials share them: the space's own model with its head is loaded first; the baseline's classification
head on the same body, or another model of a model list, is loaded the first time a trial needs it.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import TYPE_CHECKING

from promptsearch.io.data import TaskData
from promptsearch.models.features import FeatureCache
from promptsearch.models.runtime import ModelRuntime
from promptsearch.space.search_space import SearchSpace

if TYPE_CHECKING:
    import torch

__all__ = ["RuntimePool"]

logger = logging.getLogger(__name__)

Key = tuple[str | None, str]


class RuntimePool:
    """Loaded :class:`ModelRuntime` objects and their :class:`FeatureCache`, per (model id, head).

    ``first`` is the space's (first) model, already loaded with its head. A model id of ``None`` means the single
    (or first) model of the space.
    """

    def __init__(self, space: SearchSpace, data: TaskData, first: ModelRuntime) -> None:
        self.space = space
        self.data = data
        self.first = first
        self._runtimes: dict[Key, ModelRuntime] = {}
        self._features: dict[Key, FeatureCache] = {}
        self._add(self.key(first.head, None), first)

    @property
    def device(self) -> torch.device:
        return self.first.device

    def key(self, head: str, model: str | None) -> Key:
        """Runtimes and caches are per (model id, head); no id means the single (or first) model."""
        return (model if model is not None else next(iter(self.space.models), None), head)

    def runtime(self, head: str, model: str | None = None) -> ModelRuntime:
        """The loaded model ``model`` (an id of the model list; None: the single or first) with ``head``."""
        key = self.key(head, model)
        if key not in self._runtimes:
            t0 = time.perf_counter()
            spec = self.space.model_spec(key[0])
            runtime = ModelRuntime(spec, self.first.labels, self.device, head=head)
            logger.info("loaded %s with a %s head in %.1f s", runtime.name, head, time.perf_counter() - t0)
            self._add(key, runtime)
        return self._runtimes[key]

    def features(self, head: str, model: str | None = None) -> FeatureCache:
        """The tokenized-split cache of :meth:`runtime` ``(head, model)`` (loading it when needed)."""
        runtime = self.runtime(head, model)
        key = self.key(head, model)
        if key not in self._features:  # a view shares the loaded models, not the tokenized prompts
            self._features[key] = FeatureCache(runtime.encoder, self.data)
        return self._features[key]

    def view(self, data: TaskData) -> RuntimePool:
        """The same loaded models over other rows (a fold, the leave-one-out pool): tokenized prompts of its own."""
        other = copy.copy(self)
        other.data = data
        other._features = {}
        return other

    def _add(self, key: Key, runtime: ModelRuntime) -> None:
        self._runtimes[key] = runtime
        self._features[key] = FeatureCache(runtime.encoder, self.data)
