"""The search-space file format, as frozen pydantic models that reject unknown keys.

Parsing a file (YAML -> these models) happens in :mod:`promptsearch.space.search_space`, which adds the file name,
key paths and line numbers to every message and runs the checks that span several sections.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Collection
from functools import cache, partial
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from promptsearch.errors import did_you_mean
from promptsearch.space.budget import BUDGETS, MEDIUM, apply_budget, budget_preset
from promptsearch.space.config import (
    DemoConfig,
    LoraConfig,
    PromptConfig,
    Seed,
    TrainConfig,
    choices_of,
    refusal,
)
from promptsearch.space.dimensions import (
    Categorical,
    Dimension,
    Fixed,
    FloatRange,
    IntRange,
    edge_values,
    parse_dimension,
)
from promptsearch.space.registry import (
    DEFAULT_HEAD,
    HEADS,
    METRICS,
    PRUNERS,
    SAMPLERS,
    SELECTORS,
    head_names,
    head_traits,
)

__all__ = [
    "AutoInstructions",
    "AutoLabelWords",
    "DataSource",
    "DemoSpec",
    "DevFromTrain",
    "EvaluationSpec",
    "FewShot",
    "HubSource",
    "LoraSpec",
    "ModelChoice",
    "ModelSpec",
    "ObjectiveSpec",
    "PromptSpec",
    "PrunerSpec",
    "SearchSpec",
    "SpaceSpec",
    "TaskSpec",
    "TrainSpec",
]

DEFAULT_MODEL = "default"
# heads, metrics, demonstration selectors, samplers and pruners: the names are those of promptsearch.space.registry
METHODS = choices_of(TrainConfig, "method")
EMBEDDING_METHODS = ("embedding", "contrastive")  # the head fitted on pooled embeddings (head: embedding)
EMBEDDED_MODELS = (DEFAULT_MODEL, "minilm", "smollm2")
CALIBRATIONS = choices_of(PromptConfig, "calibration")
MAX_EVALUATION_SEEDS = 100  # each is a training run per fold and trial; a trial plans all of its runs at once
MAX_DEMO_SETS = 100  # prompt.demonstrations.sets
AUTO = "auto"  # the reserved key of generated candidates in prompt.instruction and prompt.label_words


class _Strict(BaseModel):
    """Frozen, and unknown keys get 'did you mean ...?' with the list of allowed keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in allowed:
                    hint = did_you_mean(str(key), allowed)
                    # The key travels in ctx so that messages can point at its own line, not its parent's.
                    listed = ", ".join(allowed)
                    text = f"unknown key '{key}'.{hint} Allowed keys here: {listed}"
                    raise PydanticCustomError("unknown_key", "{text}", {"text": text, "key": str(key)})
        elif data is not None and not isinstance(data, BaseModel):
            raise ValueError(f"expected a mapping of keys to values, but found {type(data).__name__} {data!r}")
        return data


class _TrialValues(_Strict):
    """A section whose parameters become the fields of the same names of ``trial_model``, the model trials build.

    Every value a parameter can take (its value, each choice, a range's ends) must be one that ``trial_model``
    takes, so that a space that validates never builds a trial config that pydantic refuses.
    """

    trial_model: ClassVar[type[BaseModel]]

    @field_validator("*", mode="after")
    @classmethod
    def _values_trials_take(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if isinstance(value, (Fixed, Categorical, FloatRange, IntRange)) and name in cls.trial_model.model_fields:
            problem = _refused_value(cls.trial_model, name, value)
            if problem is not None:
                raise problem
        return value


def _refused_value(model: type[BaseModel], name: str, dim: Dimension) -> PydanticCustomError | None:
    """The first value of ``dim`` that ``model`` refuses for field ``name``, as the error that names it."""
    for key, candidate in edge_values(dim):
        why = refusal(model, name, candidate)
        if why is None:
            continue
        if key in ("low", "high"):  # the error carries the key, so that the message points at its own line
            text = f"the range's {key} is {candidate!r}, but a trial's {why}; change {key} so that every value of "
            return PydanticCustomError("trial_value", "{text}", {"text": text + "the range is valid", "key": key})
        if key == "value":
            text = f"found {candidate!r}, but a trial's {why}; change the value"
        else:
            text = f"{key} is {candidate!r}, but a trial's {why}; change or remove that choice"
        return PydanticCustomError("trial_value", "{text}", {"text": text})
    return None


def _dim(kind: str, allowed: Collection[Any] | None = None) -> Any:
    return BeforeValidator(partial(_parse_dim, kind=kind, allowed=allowed))


def _parse_dim(raw: Any, *, kind: Any, allowed: Collection[Any] | None) -> Dimension:
    if isinstance(raw, (Fixed, Categorical, FloatRange, IntRange)):
        return raw  # already parsed (a default, or a model built in code)
    return parse_dimension(raw, kind, allowed=allowed)


def pruner_class(name: str) -> Callable[..., Any]:
    """The Optuna pruner class behind ``search.pruner.type`` (Optuna imported only when needed)."""
    cls: Callable[..., Any] = PRUNERS[PRUNERS.check(name)]
    return cls


@cache
def keyword_options(factory: Callable[..., Any]) -> type[BaseModel]:
    """A model of the keyword arguments ``factory`` takes: their names and annotated types, strictly.

    ``search.pruner.options`` is checked against it, so an option the pruner's signature does not name, or a value
    of another type (``1.5`` for an ``int``), is refused with the key's line instead of inside the study.
    """
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # annotations that do not resolve: check the names only
        hints = {}
    params = list(inspect.signature(factory).parameters.values())
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    fields: dict[str, Any] = {p.name: (hints.get(p.name, Any), None) for p in params if p.kind in named}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    config = ConfigDict(extra="allow" if takes_any else "forbid", strict=True)
    model: type[BaseModel] = create_model(
        f"{getattr(factory, '__name__', 'Factory')}Options", __config__=config, **fields
    )
    return model


# Options promptsearch sets when the space does not: few-shot trials train for a handful of epochs, so
# the rungs start at epoch 1 and each keeps the better half (Optuna's own defaults suit long runs).
# benchmarks/pruning.py measures them against no pruning.
PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "successive_halving": {"min_resource": 1, "reduction_factor": 2},
    "hyperband": {"min_resource": 1, "reduction_factor": 2},
}


FloatDim = Annotated[Dimension, _dim("float")]
IntDim = Annotated[Dimension, _dim("int")]
StrDim = Annotated[Dimension, _dim("str")]


class HubSource(_Strict):
    path: str = Field(description="Hugging Face dataset id, e.g. 'glue' (needs internet).")
    name: str | None = Field(None, description="Dataset configuration, e.g. 'sst2'.")
    revision: str | None = Field(None, description="Dataset revision (branch, tag or commit).")


class DataSource(_Strict):
    dir: str | None = Field(
        None,
        description="Folder with one file per split, <split>.jsonl/.json/.csv/.tsv/.parquet (e.g. LM-BFF's "
        "k-shot/SST-2/16-13/). Relative paths start at the space file's folder.",
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="Split name -> file path; overrides files found in 'dir'."
    )
    hub: HubSource | None = Field(None, description="Load from the Hugging Face Hub instead of local files.")

    @model_validator(mode="after")
    def _one_source(self) -> DataSource:
        if self.hub is not None and (self.dir or self.files):
            raise ValueError("give either 'hub' or local 'dir'/'files', not both")
        if self.hub is None and not self.dir and not self.files:
            raise ValueError("no data: set 'dir' (a folder of split files), 'files' (split -> path) or 'hub'")
        return self


class FewShot(_Strict):
    k: int = Field(gt=0, description="Examples per class sampled from the train split.")
    seed: Seed = Field(13, description="Seed of the sampling (0 to 2**32 - 1).")
    dev_k: int | None = Field(
        None,
        gt=0,
        description="When the data has no dev split: examples per class for dev, from the rest of train.",
    )


class DevFromTrain(_Strict):
    """``task.dev_from_train``: dev carved from a small train file that comes without one (all rows are kept)."""

    fraction: float = Field(
        0.25, gt=0, lt=1, description="Share of each class's rows (distinct texts) that becomes dev; the rest trains."
    )
    seed: Seed = Field(13, description="Seed of the split (0 to 2**32 - 1).")


class Splits(_Strict):
    train: str = Field("train", description="The split trials train on (and demonstrations come from).")
    dev: str = Field("dev", description="The split that scores trials with train (the objective).")
    test: str | None = Field("test", description="The split of the final report only; null for none.")


class TaskSpec(_Strict):
    data: DataSource | None = Field(
        None,
        description="Where the splits are. Required in a space file; a space built in code "
        "(Space.from_dict) may leave it out and pass the splits (promptsearch.Study(space, data=...)).",
    )
    text_fields: list[str] = Field(
        default_factory=lambda: ["text"],
        min_length=1,
        max_length=2,
        description="One field, or two for pairs.",
    )
    label_field: str = Field("label", description="The column holding the class.")
    labels: list[str] = Field(
        min_length=2,
        description="Every class, as written in the data (an integer label i from the Hub maps to the i-th name).",
    )
    metric: str = Field("accuracy", description="How dev and test are scored; a registered metric name.")
    splits: Splits = Field(
        default_factory=Splits,
        description="Which split is train, dev (the objective) and test (the final report only).",
    )
    few_shot: FewShot | None = Field(
        None,
        description="Sample k rows per class from train; with no dev split, dev_k per class from the rest of train.",
    )
    dev_from_train: DevFromTrain | None = Field(
        None,
        description="When the data has no dev split: {fraction, seed}, a stratified share of train becomes dev "
        "(a small file; task.few_shot.dev_k samples a few rows per class from a large one instead).",
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return METRICS.check(value)

    @field_validator("labels", "text_fields", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("labels", "text_fields")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            raise ValueError(f"names must be unique, but {dupes} appear more than once")
        if any(not v for v in value):
            raise ValueError("names must not be empty")
        return value

    @model_validator(mode="after")
    def _one_way_to_dev(self) -> TaskSpec:
        if self.dev_from_train is not None and self.few_shot is not None:
            raise ValueError(
                "task.few_shot and task.dev_from_train both shape train and dev; keep one: few_shot (with dev_k) "
                "samples K rows per class from a large file, dev_from_train splits a small one"
            )
        return self


class ModelSpec(_Strict):
    name: str = Field(
        DEFAULT_MODEL,
        description="Hub id (needs internet) or local folder; 'default'/'minilm' is the embedded MiniLM "
        "(all-MiniLM-L6-v2), 'smollm2' the embedded SmolLM2-135M-Instruct (GGUF).",
    )
    max_length: int = Field(
        128,
        ge=8,
        le=32768,
        description="Max tokens of a rendered prompt (a causal head counts the answer's tokens too).",
    )
    head: str = Field(
        DEFAULT_HEAD,
        description="How the model answers (a registered head): classification (a new head on the body) | mlm (the "
        "masked-LM head fills the {label} slot) | causal (the label word continues the prompt) | embedding (a "
        "linear head on the mean-pooled sentence embedding). See the heads page.",
    )
    multi_token: Literal["error", "mean", "sum"] | None = Field(
        None,
        description="Label words of several tokens: error (mlm default: each word must be one token), mean "
        "(mean of the sub-token log-probabilities) or sum (causal default: log-probability of the whole word).",
    )
    gguf_file: str | None = Field(
        None, description="A .gguf file inside the model folder, loaded (dequantised) through the gguf package."
    )
    revision: str | None = Field(None, description="Passed to from_pretrained: a branch, tag or commit.")
    trust_remote_code: bool = Field(
        False, description="Passed to from_pretrained; a model's own code runs only when this is true."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto (bf16 autocast where the hardware has native bf16: recent GPUs, CPUs with AVX512-BF16 "
        "or AMX; fp32 elsewhere) | fp32 | bf16. Weights, optimizer state and loss stay fp32; predict uses the same "
        "setting. Not part of the study's identity: a resumed study may change it.",
    )

    @field_validator("head")
    @classmethod
    def _known_head(cls, value: str) -> str:
        return HEADS.check(value)

    @model_validator(mode="after")
    def _multi_token_rule(self) -> ModelSpec:
        traits = head_traits(self.head)
        if not traits.label_words and self.multi_token is not None:
            scoring = head_names(lambda t: t.label_words)
            raise ValueError(f"multi_token applies to the {' and '.join(scoring)} heads only; remove it")
        if self.multi_token is not None and self.multi_token not in traits.multi_token:
            if self.multi_token == "sum":
                raise ValueError(
                    f"multi_token 'sum' needs one mask per sub-token, which an {self.head} prompt does not have; "
                    "use 'mean' (mean of the sub-token log-probabilities at the one mask) or 'error'"
                )
            raise ValueError(
                f"multi_token '{self.multi_token}' does not apply to the {self.head} head; use "
                f"{' or '.join(repr(r) for r in traits.multi_token)}"
            )
        return self

    @property
    def scoring(self) -> str:
        """The multi-token rule in effect: the head's default when none is set."""
        if self.multi_token is not None:
            return self.multi_token
        traits = head_traits(self.head)
        return traits.multi_token[0] if traits.multi_token else "error"


class DemoSpec(_TrialValues):
    trial_model = DemoConfig

    count: IntDim = Field(default=Fixed(0), description="Demonstrations per prompt (0 = none).")
    selection: Annotated[Dimension, _dim("str", SELECTORS)] = Field(
        default=Fixed("random"),
        description="random | balanced (round-robin over classes) | similar (TF-IDF nearest neighbours): chosen per "
        "query; fixed: one set for every query (balanced over classes when count >= the classes), so the prompts "
        "share their prefix and a causal model reads it once. In leave-one-out scoring a query whose own row is in "
        "the set sees it replaced, in place, by the set's next row of its class; all other queries share the set.",
    )
    separator: StrDim = Field(default=Fixed("\n\n"), description="Text after each demonstration.")
    sets: int | list[int] = Field(
        1,
        description="selection fixed: the demonstration sets a trial chooses from (the parameter "
        "prompt.demonstrations.set), each drawn once per study from search.seed: a number N (sets 0 to N-1) or a list "
        "of set numbers (an exported best prompt names its one set).",
    )

    @field_validator("sets", mode="before")
    @classmethod
    def _valid_sets(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DEMO_SETS:
            return value
        numbers = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if numbers and value and 0 <= min(value) <= max(value) < MAX_DEMO_SETS and len(set(value)) == len(value):
            return value
        raise ValueError(
            f"sets must be a number from 1 to {MAX_DEMO_SETS} or a list of distinct set numbers from 0 to "
            f"{MAX_DEMO_SETS - 1}, but found {value!r}"
        )

    @model_validator(mode="after")
    def _sets_need_fixed(self) -> DemoSpec:
        choices = self.selection.values() if isinstance(self.selection, (Fixed, Categorical)) else ()
        if self.set_numbers != (0,) and "fixed" not in choices:
            raise ValueError(
                f"sets is {self.sets}, but selection cannot be 'fixed', the only selection with sets; "
                "add fixed to selection or remove sets"
            )
        return self

    @property
    def set_numbers(self) -> tuple[int, ...]:
        """The sets a trial with selection fixed chooses from."""
        return tuple(range(self.sets)) if isinstance(self.sets, int) else tuple(self.sets)


_BOOL_HINT = ' (YAML reads bare yes/no/true/false/on/off as booleans: quote the word, e.g. "yes")'


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    hint = _BOOL_HINT if isinstance(value, bool) else ""
    raise ValueError(f"{what} must be a text, but found {type(value).__name__} {value!r}{hint}")


class AutoInstructions(_Strict):
    """``prompt.instruction: {auto: {n: N}}``: task descriptions proposed by an instruction-following model."""

    n: int = Field(gt=0, le=50, description="Instructions to propose (after removing duplicates).")
    examples: int = Field(6, ge=1, le=32, description="Labelled train examples shown in each proposal's meta-prompt.")
    model: str | None = Field(
        None,
        description="The causal LM that writes them: a model id of this space's model list, or a model name "
        "(e.g. smollm2 or a Hub id); default: the space's (first) causal model.",
    )
    meta_prompt: str | None = Field(
        None,
        description="Replaces the shipped APE-style meta-prompt; placeholders {examples} (required) and {labels}.",
    )
    max_new_tokens: int = Field(40, ge=4, le=256, description="Tokens generated per proposal at most.")
    temperature: float = Field(0.9, gt=0, le=2, description="Sampling temperature of the proposals.")

    @field_validator("meta_prompt")
    @classmethod
    def _has_examples(cls, value: str | None) -> str | None:
        if value is not None and "{examples}" not in value:
            raise ValueError("the meta-prompt must contain {examples} (where the labelled examples go)")
        return value


class AutoLabelWords(_Strict):
    """``prompt.label_words: {auto: {top_k: N}}``: label words ranked by an mlm or causal model (LM-BFF)."""

    top_k: int = Field(gt=0, le=20, description="Words kept per class.")
    maps: int | None = Field(
        None, gt=0, le=50, description="Maps offered as choices (default top_k), best zero-shot train accuracy first."
    )
    model: str | None = Field(
        None, description="Model id (of a model list) that ranks the words; default: the first mlm or causal model."
    )
    template: str | int | None = Field(
        None, description="Template key (name, or index in a list) whose {label} slot is scored; default: the first."
    )


def _auto(value: Any, cls: type[_Strict]) -> _Strict:
    if isinstance(value, cls):
        return value
    try:
        return cls.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(its options)"
        found = f", but found {first['input']!r}" if "input" in first and first["type"] != "missing" else ""
        text = str(first["msg"]).removeprefix("Value error, ")
        raise ValueError(f"auto.{where}: {text}{found}") from None


def _is_auto_item(value: Any) -> bool:
    return isinstance(value, dict) and list(value) == [AUTO]


def _text_choices(value: Any) -> Any:
    """One text, a list of texts, or a mapping name -> text (names are how trials refer to them).

    The key ``auto`` (or a list item ``{auto: {...}}``) asks for generated candidates besides these.
    """
    if isinstance(value, list):
        return [
            {AUTO: _auto(v[AUTO], AutoInstructions)} if _is_auto_item(v) else _text(v, f"item {i}")
            for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        return {str(k): _auto(v, AutoInstructions) if k == AUTO else _text(v, f"'{k}'") for k, v in value.items()}
    if isinstance(value, str):
        return value
    raise ValueError(
        f"expected a text, a list of texts or a mapping name -> text, but found {type(value).__name__} {value!r}"
    )


def _word_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must map each label to a word, but found {type(value).__name__} {value!r}")
    return {str(k): _text(v, f"the word of label '{k}'") for k, v in value.items()}


def _label_word_choices(value: Any) -> Any:
    """One map label -> word, a list of maps, or a mapping name -> map."""
    if value is None:
        return None
    if isinstance(value, dict) and value and not any(isinstance(v, (dict, AutoLabelWords)) for v in value.values()):
        return [_word_map(value, "the label-word map")]  # a single map is a one-point space
    if isinstance(value, dict):
        return {str(k): _auto(v, AutoLabelWords) if k == AUTO else _word_map(v, f"map '{k}'") for k, v in value.items()}
    if isinstance(value, list):
        return [
            {AUTO: _auto(v[AUTO], AutoLabelWords)} if _is_auto_item(v) else _word_map(v, f"map {i}")
            for i, v in enumerate(value)
        ]
    raise ValueError(
        "expected a map label -> word, a list of such maps or a mapping name -> map, "
        f"but found {type(value).__name__} {value!r}"
    )


TextChoices = Annotated[
    list[str | dict[str, AutoInstructions]] | dict[str, str | AutoInstructions] | str, BeforeValidator(_text_choices)
]
LabelWordChoices = Annotated[
    list[dict[str, str] | dict[str, AutoLabelWords]] | dict[str, dict[str, str] | AutoLabelWords] | None,
    BeforeValidator(_label_word_choices),
]


class PromptSpec(_TrialValues):
    trial_model = PromptConfig

    instruction: TextChoices = Field(
        default="",
        description="Task description candidates ('' = none). The key auto (or a list item {auto: {...}}) adds "
        "generated ones.",
    )
    template: TextChoices = Field(
        description="Template candidates; placeholders {text} (or {text_a} and {text_b}), {label} (exactly once), "
        "{instruction} and {demos}."
    )
    label_words: LabelWordChoices = Field(
        None,
        description="Candidate maps label -> word; the key auto (or a list item {auto: {...}}) adds generated maps. "
        "Default: the label names.",
    )
    demonstrations: DemoSpec = Field(
        default_factory=DemoSpec, description="Labelled train rows shown before the query, and how they are chosen."
    )
    chat: Annotated[Dimension, _dim("bool")] = Field(
        default=Fixed(False),
        description="Causal head only: wrap the prompt in the tokenizer's chat template (true, false or both).",
    )
    calibration: Annotated[Dimension, _dim("str", CALIBRATIONS)] = Field(
        default=Fixed("none"),
        description="mlm and causal heads, in-context trials (train.method none): none | contextual (divide by the "
        "label probabilities of a content-free input, 'N/A') | mean (subtract each label's mean log-probability "
        "over the train prompts).",
    )


class LoraSpec(_TrialValues):
    """LoRA adapters (through peft); sampled only in trials whose train.method is 'lora'."""

    trial_model = LoraConfig

    r: IntDim = Field(default=Fixed(8), description="Rank of the update matrices.")
    alpha: IntDim = Field(default=Fixed(16), description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: FloatDim = Field(default=Fixed(0.05), description="Dropout on the adapter input.")
    target_modules: list[str] | None = Field(
        None,
        description="Module names to adapt; default: peft's choice for the architecture (query/value for BERT, "
        "q_proj/v_proj for Llama).",
    )


class TrainSpec(_TrialValues):
    trial_model = TrainConfig

    method: Annotated[Dimension, _dim("str", METHODS)] = Field(
        default=Fixed("full"),
        description="full (all weights) | lora (adapters, body frozen) | head (only the head trains: a "
        "classification head, or a masked-LM head's own weights; not for causal) | "
        "bitfit (only biases, and a classification head) | none (no training: the prompt in context only; mlm and "
        "causal heads) | "
        "embedding (head: embedding; the body frozen, a logistic regression on its pooled embeddings) | "
        "contrastive (head: embedding; SetFit-style: the body trained on pairs of rows, then the logistic "
        "regression). Training values are not sampled for none or embedding, LoRA's only for lora, "
        "pairs_per_row only for contrastive.",
    )
    learning_rate: FloatDim = Field(default=Fixed(2e-5), description="Peak learning rate of AdamW.")
    epochs: IntDim = Field(default=Fixed(10), description="Training epochs; a trial is scored after each.")
    batch_size: IntDim = Field(default=Fixed(8), description="Rows per optimizer step.")
    weight_decay: FloatDim = Field(default=Fixed(0.01), description="AdamW's weight decay.")
    warmup_ratio: FloatDim = Field(
        default=Fixed(0.1), description="Share of the steps with a linear warm-up, then a linear decay."
    )
    max_grad_norm: FloatDim = Field(default=Fixed(1.0), description="Gradients are clipped to this norm.")
    pairs_per_row: IntDim = Field(
        default=Fixed(5),
        description="method contrastive: pairs per row and epoch, half same-label and half different-label "
        "(SetFit's num_iterations, whose default is 20).",
    )
    logistic_c: FloatDim = Field(
        default=Fixed(1.0),
        description="methods embedding and contrastive: the inverse regularisation C of the logistic regression.",
    )
    lora: LoraSpec = Field(
        default_factory=LoraSpec, description="LoRA adapters (through peft); sampled only in trials of method lora."
    )


class PrunerSpec(_Strict):
    type: str = Field(
        "successive_halving", description="median | successive_halving | hyperband | none, or a registered pruner."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the Optuna pruner, e.g. n_startup_trials."
    )

    @field_validator("type")
    @classmethod
    def _known_pruner(cls, value: str) -> str:
        return PRUNERS.check(value)

    def arguments(self) -> dict[str, Any]:
        """The pruner's keyword arguments: promptsearch's defaults for this type, overridden by ``options``."""
        return {**PRUNER_DEFAULTS.get(self.type, {}), **self.options}


class ObjectiveSpec(_Strict):
    metric: Literal["dev", "prompt_tokens", "latency_ms"] = Field(
        description="dev (the task metric on dev) | prompt_tokens (mean prompt length) | latency_ms (per dev example)."
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Default: search.direction for dev, minimize for the costs."
    )


class EvaluationSpec(_Strict):
    """How a trial's score is estimated from the labelled rows (``search.evaluation``).

    ``mode: cv`` (default) pools train and dev, splits them into ``folds`` stratified folds, trains on all
    but one and scores the held one, so every labelled row is scored once and the trial's value estimates
    test better than 32 dev rows do; in-context trials (``train.method: none``) score every labelled row
    with demonstrations from the other rows (leave-one-out). ``mode: dev`` (or ``folds: 1``) is the
    original single train/dev split. The defaults (4 folds, 1 seed, final training on all rows) are
    provisional until the benchmarks measure them.
    """

    mode: Literal["cv", "dev"] = Field(
        "cv",
        description="cv (stratified K-fold over train and dev, the same folds for every trial; one epoch for all "
        "folds, the best of the mean curve; leave-one-out for in-context trials) | dev (train on train, score dev: "
        "the original behaviour).",
    )
    folds: int = Field(
        MEDIUM.folds, description="Folds of mode cv, 2 or more (folds: 1 is mode dev); default: search.budget's."
    )
    seeds: int = Field(
        1,
        le=MAX_EVALUATION_SEEDS,
        description="Training seeds per fold (or per trial in mode dev); the value is the mean.",
    )
    final_train: Literal["all", "train"] | None = Field(
        None,
        description="What the final model trains on, for the epoch the trial chose: all (train and dev) or train "
        "(the train split alone). Default: all in mode cv, train in mode dev.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_fold_is_mode_dev(cls, data: Any) -> Any:
        """``mode: dev`` alone means one fold, and ``folds: 1`` means mode dev, so a dump says what runs."""
        if isinstance(data, dict):
            if data.get("mode") == "dev" and "folds" not in data:
                data = {**data, "folds": 1}
            elif data.get("folds") == 1 and "mode" not in data:
                data = {**data, "mode": "dev"}
        return data

    @field_validator("folds", "seeds", mode="after")
    @classmethod
    def _at_least_one(cls, value: int, info: Any) -> int:
        if value < 1:
            fix = "; use 1 for the single train/dev split, or 2 or more folds" if info.field_name == "folds" else ""
            raise ValueError(f"the value must be at least 1, but found {value}{fix}")
        return value

    @model_validator(mode="after")
    def _dev_has_no_folds(self) -> EvaluationSpec:
        if self.mode == "dev" and self.folds > 1:
            raise ValueError(
                f"mode 'dev' uses the one train/dev split, but folds is {self.folds}; remove 'folds' or set 'mode: cv'"
            )
        if self.mode == "cv" and self.folds == 1:
            raise ValueError("mode 'cv' needs 2 or more folds, but folds is 1; raise 'folds' or set 'mode: dev'")
        return self

    @property
    def cross_validated(self) -> bool:
        """Whether trials pool train and dev into folds (and in-context trials use leave-one-out)."""
        return self.mode == "cv"

    @property
    def final_rows(self) -> Literal["all", "train"]:
        """``final_train`` with its default resolved."""
        if self.final_train is not None:
            return self.final_train
        return "all" if self.cross_validated else "train"


def _budget_description() -> str:
    presets = "; ".join(f"{p.describe()} ({p.why})" for p in BUDGETS.values())
    return (
        "How much the search spends: sets search.n_trials, search.evaluation.folds (mode cv), search.finalists "
        f"and search.final_seeds where the space does not write them (a written key wins). {presets}. "
        "Not set: the medium values."
    )


class SearchSpec(_Strict):
    budget: str | None = Field(None, description=_budget_description())
    sampler: str = Field(
        "tpe",
        description="tpe (seeded, multivariate) | random | gp | cmaes (numeric parameters only; needs pip install "
        "cmaes, which validate checks), or a registered sampler.",
    )
    seed: Seed = Field(0, description="Seeds the sampler and the demonstration choice (0 to 2**32 - 1).")
    pruner: PrunerSpec = Field(
        default_factory=PrunerSpec,
        description="{type, options}; successive_halving and hyperband default to min_resource: 1, "
        "reduction_factor: 2 (rungs at epochs 1, 2, 4, ...; each keeps the better half).",
    )
    n_trials: int | None = Field(
        MEDIUM.n_trials, gt=0, description="Sampled trials, not counting the baseline; default: search.budget's."
    )
    timeout: float | None = Field(None, gt=0, description="Seconds; the search stops after the running trial.")
    direction: Literal["maximize", "minimize"] = Field("maximize", description="Of the dev score.")
    final_seeds: int = Field(
        MEDIUM.final_seeds, ge=1, description="Seeds of the final test evaluation; default: search.budget's."
    )
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec,
        description="How a trial is scored: {mode: cv|dev, folds, seeds, final_train}; default 4-fold "
        "cross-validation over train and dev.",
    )
    finalists: int = Field(
        MEDIUM.finalists,
        description="The best trials re-evaluated with fresh seeds or folds, with the baseline, before one is "
        "chosen for test (0: the search's best trial, without a race); default: search.budget's.",
    )
    objectives: list[ObjectiveSpec] | None = Field(
        None,
        min_length=1,
        description="Several objectives, dev first, then costs: [{metric: dev}, {metric: prompt_tokens, direction: "
        "minimize}, ...]; a Pareto front instead of one best trial, and no pruner.",
    )
    recommend_within: float = Field(
        0.005,
        ge=0,
        description="Multi-objective: the recommended config is the cheapest Pareto trial within this much of the "
        "best dev score (0.005 = 0.5 points).",
    )

    @model_validator(mode="before")
    @classmethod
    def _budget_fills_unwritten_keys(cls, data: Any) -> Any:
        """The preset's values for the budget keys the section does not write, so a dump says what runs."""
        return apply_budget(data) if isinstance(data, dict) else data

    @field_validator("budget", mode="before")
    @classmethod
    def _known_budget(cls, value: Any) -> str | None:
        return None if value is None else budget_preset(value).name

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        return SAMPLERS.check(value)

    @field_validator("finalists", mode="after")
    @classmethod
    def _finalists_not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"the value must be 0 (no race) or more, but found {value}")
        return value


class ModelChoice(ModelSpec):
    """One model of a ``model:`` list: the sampler picks among them (parameter ``model``, by id)."""

    id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="How trials and the report name it; default: name."
    )
    train: TrainSpec | None = Field(
        None, description="This model's own training values (keys of 'train'); the others come from 'train'."
    )

    @property
    def key(self) -> str:
        return self.id or self.name

    def spec(self) -> ModelSpec:
        """The model alone, as a single-model space (and an export) writes it."""
        return ModelSpec.model_validate(self.model_dump(exclude={"id", "train"}, exclude_unset=True))


def _model_form(value: Any) -> str:
    return "many" if isinstance(value, list) else "one"


ModelSection = Annotated[
    Annotated[ModelSpec, Tag("one")] | Annotated[list[ModelChoice], Tag("many")], Discriminator(_model_form)
]


class SpaceSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Study and output folder name.")
    description: str = Field("", description="Free text.")
    task: TaskSpec = Field(description="The data: where it is, its fields, classes and metric.")
    model: ModelSection = Field(
        default_factory=ModelSpec, description="One model, or a list of models the sampler chooses among."
    )
    prompt: PromptSpec = Field(description="The prompt candidates: instruction, template, label words, ...")
    train: TrainSpec = Field(default_factory=TrainSpec, description="What trains and how (shared by all models).")
    search: SearchSpec = Field(default_factory=SearchSpec, description="The study: sampler, pruner, budget, scoring.")
    baseline: dict[str, Any] = Field(
        default_factory=dict,
        description="Training values of the baseline trial (keys of 'train'; default: learning rate 2e-5, batch 8, "
        "10 epochs); with a model list, model: <id> names its model (default: the first classification model, "
        "else the first).",
    )
