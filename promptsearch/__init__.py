"""promptsearch: search prompt structure and fine-tuning hyperparameters together, on Optuna.

The pipeline, one module each: ``space`` (YAML -> validated :class:`SearchSpace`) -> ``sampling``
(Optuna trial -> :class:`TrialConfig`) -> ``render`` (prompts) -> ``features`` (tokens) ->
``trainer`` (fine-tune, evaluate) -> ``objective``/``study`` (trials, pruning, storage) ->
``final`` (test scores) -> ``report``/``export``.
"""

from __future__ import annotations

from promptsearch.api import SearchResult, export_best, load_any_space, report, search, train
from promptsearch.errors import ConfigError, DataError, PromptsearchError, SpaceError, TemplateError
from promptsearch.io.data import Example, TaskData, load_task_data
from promptsearch.io.export import PromptExport, load_prompt_config, write_prompt_config
from promptsearch.prompts.render import PromptRenderer, RenderedPrompt
from promptsearch.space.config import DemoConfig, PromptConfig, TrainConfig, TrialConfig
from promptsearch.space.sampling import baseline_config, sample_config
from promptsearch.space.search_space import SearchSpace, load_space, parse_space
from promptsearch.space.template import Template

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DemoConfig",
    "Example",
    "PromptConfig",
    "PromptExport",
    "PromptRenderer",
    "PromptsearchError",
    "RenderedPrompt",
    "SearchResult",
    "SearchSpace",
    "SpaceError",
    "TaskData",
    "Template",
    "TemplateError",
    "TrainConfig",
    "TrialConfig",
    "baseline_config",
    "export_best",
    "load_any_space",
    "load_prompt_config",
    "load_space",
    "load_task_data",
    "parse_space",
    "report",
    "sample_config",
    "search",
    "train",
    "write_prompt_config",
]
