"""Checks that need the space together with its data or its models (`validate`, `run` and `worker` run them).

:func:`check_models` is the one place for what needs the models: what the head needs from the tokenizer (a mask
token, a chat template), label words the head can score, and, with the models loaded, methods that would train
nothing and LoRA target modules.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError, DataError, SpaceError
from promptsearch.io.data import Example, TaskData
from promptsearch.space.config import LoraConfig, PromptConfig
from promptsearch.space.dimensions import Categorical, Fixed, IntRange
from promptsearch.space.registry import head_traits
from promptsearch.space.search_space import SearchSpace, possible_values
from promptsearch.study.evaluation import check_folds, labelled_rows

if TYPE_CHECKING:
    from promptsearch.models.features import PromptEncoder
    from promptsearch.models.pool import RuntimePool
    from promptsearch.models.runtime import ModelRuntime

__all__ = ["ModelChecks", "check_label_words", "check_models", "check_space_data", "check_test_split", "data_summary"]


@dataclass(frozen=True)
class ModelChecks:
    """What :func:`check_models` checked."""

    label_words: int = 0  # template x label-word map x chat combinations scored by a tokenizer
    loaded: bool = False  # methods and LoRA targets were checked on the loaded models
    not_checked: str | None = None  # why the tokenizer checks did not run (a model not installed, or offline)


def check_models(space: SearchSpace, models: RuntimePool | None = None) -> ModelChecks:
    """Check ``space`` against its models; raise :class:`ConfigError` naming the file, the model and the key.

    Without ``models`` only the tokenizers are loaded (``promptsearch validate``): what each head needs from its
    tokenizer and the label words it scores; a tokenizer that cannot load (a model not installed, the Hub
    offline) is reported in ``not_checked`` rather than raised. With ``models`` (``run`` and ``worker``, before
    the first trial) every model of the space is loaded with its head and the training methods and LoRA targets
    are checked as well.
    """
    from promptsearch.models.features import PromptEncoder
    from promptsearch.models.runtime import check_tokenizer, load_tokenizer, usable_max_length

    where = f"{space.path}: " if space.path else ""
    checked = 0
    for model_id in space.models or [None]:
        spec = space.model_spec(model_id)
        if models is not None:
            runtime = models.runtime(spec.head, model_id)
            _check_training(space, model_id, runtime, where)
            checked += check_label_words(space, runtime.encoder)
            continue
        if not head_traits(spec.head).label_words:
            continue
        try:
            tokenizer = load_tokenizer(spec, check_head=False)
        except ConfigError as exc:  # not installed, or on the Hub while offline: the rest of the space is fine
            return ModelChecks(label_words=checked, not_checked=str(exc))
        check_tokenizer(spec, tokenizer)
        max_length = usable_max_length(spec.max_length, tokenizer)
        encoder = PromptEncoder(tokenizer, spec.head, max_length, space.spec.task.labels, spec.scoring)
        checked += check_label_words(space, encoder)
    return ModelChecks(label_words=checked, loaded=models is not None)


def _check_training(space: SearchSpace, model_id: str | None, runtime: ModelRuntime, where: str) -> None:
    """Methods that would train nothing in the model, and LoRA adapters that peft cannot place."""
    own = f"model.{model_id}.train.method"
    method_dim = space.params.get(own, space.params.get("train.method"))
    methods = possible_values(method_dim) if method_dim is not None else ()
    choice = space.models.get(model_id) if model_id is not None else None
    lora = choice.train.lora if choice is not None and choice.train is not None else space.spec.train.lora
    try:
        runtime.check_methods(methods or ())
        if "lora" in (methods or ()):
            runtime.check_lora(LoraConfig(target_modules=lora.target_modules))
    except ConfigError as exc:
        name = f"model '{model_id}': " if model_id is not None else ""
        raise ConfigError(f"{where}{name}{exc}") from None


def check_label_words(space: SearchSpace, encoder: PromptEncoder) -> int:
    """Every template x label-word map x chat choice must give label tokens the head can score.

    Returns how many combinations were checked; raises :class:`ConfigError` naming the map and the word.
    """
    if not encoder.answer.traits.label_words:
        return 0
    where = f"{space.path}: " if space.path else ""
    chats = possible_values(space.params.get("prompt.chat", Fixed(False))) or (False,)
    if True in chats:
        try:
            encoder.check_chat()
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
    checked = 0
    for template in space.templates.values():
        for key, words in space.label_words.items():
            for chat in chats:
                prompt = PromptConfig(template=template.source, label_words=dict(words), chat=bool(chat))
                try:
                    encoder.label_tokens(prompt)
                except ConfigError as exc:
                    raise ConfigError(f"{where}prompt.label_words ({key}): {exc}") from None
                checked += 1
    return checked


def _max_count(space: SearchSpace) -> int:
    dim = space.params["prompt.demonstrations.count"]
    if isinstance(dim, Fixed):
        return int(dim.value)
    if isinstance(dim, Categorical):
        return int(max(dim.choices))
    assert isinstance(dim, IntRange)
    return dim.high


def check_space_data(space: SearchSpace, data: TaskData) -> None:
    """Raise :class:`SpaceError` when the data cannot supply what the space asks for."""
    where = str(space.path) if space.path else "<string>"
    problems = []
    most = _max_count(space)
    if most > len(data.train) - 1:
        problems.append(
            f"{where}: prompt.demonstrations.count: up to {most} demonstrations per prompt, but the train split "
            f"has {len(data.train)} rows and a query is never its own demonstration (at most "
            f"{len(data.train) - 1}); lower the count"
        )
    evaluation = space.spec.search.evaluation
    if evaluation.cross_validated:  # the folds every trial is scored on can be drawn from this data
        try:
            check_folds(labelled_rows(data.train, data.dev), evaluation.folds)
        except ValueError as exc:
            problems.append(f"{where}: search.evaluation.folds: {exc}")
    test = space.spec.task.splits.test
    if test is not None and not data.has_test:
        problems.append(
            f"{where}: task.splits.test: no '{test}' split in the data, so the final report has no test score; "
            "add task.data.files.test or set task.splits.test: null"
        )
    problems.extend(_test_split_problems(data))
    if problems:
        raise SpaceError(problems)


def _test_split_problems(data: TaskData) -> list[str]:
    try:
        check_test_split(data)
    except DataError as exc:
        return str(exc).splitlines()
    return []


def check_test_split(data: TaskData) -> None:
    """Read the test split now, under the rules of train and dev (fields, labels, encoding): a bad test file is found
    before any training, not at the final evaluation after the search. Raises :class:`DataError` naming the file, row
    and field. The rows are not kept (:meth:`~promptsearch.io.data.TaskData.check_test`): no search holds them."""
    data.check_test()


def data_summary(data: TaskData) -> str:
    def counts(rows: list[Example]) -> str:
        c = Counter(ex.label for ex in rows)
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))

    test = f"; test {len(data.test)} ({counts(data.test)})" if data.has_test else ""
    return f"train {len(data.train)} ({counts(data.train)}); dev {len(data.dev)} ({counts(data.dev)}){test}"
