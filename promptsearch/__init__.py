"""promptsearch: search prompt structure and fine-tuning hyperparameters together, on Optuna.

Python API: ``Space.from_dict``/``from_yaml`` -> ``Study(space, data=...).optimize(n)`` -> ``study.best`` ->
``train(study.best)`` -> ``model.predict``/``predict_proba``/``save`` -> ``load(dir)``; ``evaluate(space, config)``
scores one config. The pipeline, one module each: ``space`` (YAML -> validated :class:`SearchSpace`) -> ``sampling``
(Optuna trial -> :class:`TrialConfig`) -> ``render`` (prompts) -> ``features`` (tokens) ->
``trainer`` (fine-tune, evaluate) -> ``objective``/``study`` (trials, pruning, storage) ->
``final`` (test scores) -> ``report``/``export``.
"""

from __future__ import annotations

from promptsearch.api import (
    Evaluation,
    Finalist,
    SearchResult,
    Study,
    config_from,
    evaluate,
    export_best,
    load,
    load_any_space,
    report,
    search,
    train,
    train_config,
)
from promptsearch.errors import ConfigError, DataError, PromptsearchError, SpaceError, TemplateError
from promptsearch.experimental import ExperimentalWarning, experimental
from promptsearch.inference.predict import Model
from promptsearch.io.data import Example, TaskData, load_task_data, task_data
from promptsearch.io.export import PromptExport, load_prompt_config, write_prompt_config
from promptsearch.prompts.render import PromptRenderer, RenderedPrompt
from promptsearch.reporting.summary import RunSummary, run_summary
from promptsearch.scaffold import InitResult, init_space
from promptsearch.space.budget import BUDGETS, BudgetPreset
from promptsearch.space.config import DemoConfig, PromptConfig, TrainConfig, TrialConfig
from promptsearch.space.sampling import baseline_config, sample_config
from promptsearch.space.search_space import SearchSpace, load_space, parse_space
from promptsearch.space.search_space import SearchSpace as Space
from promptsearch.space.template import Template

__version__ = "0.1.0"

__all__ = [
    "BUDGETS",
    "BudgetPreset",
    "ConfigError",
    "DataError",
    "DemoConfig",
    "Evaluation",
    "Example",
    "ExperimentalWarning",
    "Finalist",
    "InitResult",
    "Model",
    "PromptConfig",
    "PromptExport",
    "PromptRenderer",
    "PromptsearchError",
    "RenderedPrompt",
    "RunSummary",
    "SearchResult",
    "SearchSpace",
    "Space",
    "SpaceError",
    "Study",
    "TaskData",
    "Template",
    "TemplateError",
    "TrainConfig",
    "TrialConfig",
    "baseline_config",
    "config_from",
    "evaluate",
    "experimental",
    "export_best",
    "init_space",
    "load",
    "load_any_space",
    "load_prompt_config",
    "load_space",
    "load_task_data",
    "parse_space",
    "report",
    "run_summary",
    "sample_config",
    "search",
    "task_data",
    "train",
    "train_config",
    "write_prompt_config",
]
