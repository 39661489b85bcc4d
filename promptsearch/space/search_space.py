"""Load a search-space YAML file into a validated :class:`SearchSpace`.

Every problem becomes one line ``FILE:LINE: key.path: message`` and all of them are raised together
as a :class:`~promptsearch.errors.SpaceError`.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from promptsearch.errors import ConfigError, SpaceError, TemplateError, did_you_mean
from promptsearch.files import describe as describe_path
from promptsearch.space.budget import budget_preset
from promptsearch.space.config import TrainConfig
from promptsearch.space.dimensions import Categorical, Dimension, Fixed, IntRange, describe
from promptsearch.space.registry import (
    SAMPLERS,
    SINGLE_OBJECTIVE_SAMPLERS,
    head_names,
    head_traits,
    quoted,
)
from promptsearch.space.spec import (
    AUTO,
    EMBEDDING_METHODS,
    AutoInstructions,
    AutoLabelWords,
    ModelChoice,
    ModelSpec,
    SpaceSpec,
    TrainSpec,
    keyword_options,
    pruner_class,
)
from promptsearch.space.template import Template
from promptsearch.space.yamlsafe import SPACE_LIMITS, load_yaml, read_text

__all__ = ["SearchSpace", "is_active", "load_space", "parse_space", "possible_values"]

RESERVED = ("instruction", "demos", "label")
LORA_PARAMS = ("r", "alpha", "dropout")
TRAIN_KEYS = tuple(name for name in TrainSpec.model_fields if name != "lora")
EMBEDDING_KEYS = ("pairs_per_row", "logistic_c")  # the training values of methods embedding and contrastive
GENERATED_PREFIX = "auto-"  # keys of generated candidates: auto-1, auto-2, ...


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: the spec, where it came from, and its parameters in sampling order."""

    spec: SpaceSpec
    path: Path | None
    text: str
    instructions: Mapping[Any, str]
    templates: Mapping[Any, Template]
    label_words: Mapping[Any, Mapping[str, str]]
    params: Mapping[str, Dimension] = field(default_factory=dict)
    auto_instructions: AutoInstructions | None = None
    auto_label_words: AutoLabelWords | None = None
    generated: Mapping[str, Any] | None = None  # the stored candidates merged in (see promptsearch.study.candidates)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Read and validate a search-space file (same as :func:`load_space`)."""
        return load_space(path)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, path: str | Path | None = None) -> SearchSpace:
        """Validate a search space given as a dict with the keys of the YAML file.

        ``path`` says where the space would live: relative data paths start at its folder and messages
        name it (default: ``<dict>``, and the current folder). ``task.data`` may be left out when the
        data is passed in code. The dict is kept as YAML text, so a study stores it like a file.

        >>> SearchSpace.from_dict({"name": "sst2", "task": {"labels": ["negative", "positive"]}, ...})  # doctest: +SKIP
        """
        if not isinstance(raw, Mapping):
            raise SpaceError(f"<dict>: expected a mapping at the top level, but found {type(raw).__name__}")
        try:
            text = yaml.safe_dump(_plain(raw), sort_keys=False, allow_unicode=True)
        except yaml.YAMLError as exc:
            raise SpaceError(
                f"<dict>: cannot be written as YAML ({exc}); use str, int, float, bool, list and dict values"
            ) from None
        return parse_space(text, path=Path(path) if path is not None else None, where="<dict>", data_in_code=True)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def models(self) -> dict[str, ModelChoice]:
        """The models of a ``model:`` list by id (empty for a single model)."""
        model = self.spec.model
        return {m.key: m for m in model} if isinstance(model, list) else {}

    @property
    def model(self) -> ModelSpec:
        """The single model, or the first of a list."""
        model = self.spec.model
        return model[0].spec() if isinstance(model, list) else model

    def model_spec(self, model_id: str | None) -> ModelSpec:
        """The model a trial ran (``TrialConfig.model``; ``None``: the single or first model)."""
        if model_id is None:
            return self.model
        choice = self.models.get(model_id)
        if choice is None:
            raise KeyError(f"no model '{model_id}' in this space; models: {', '.join(self.models)}")
        return choice.spec()

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads of the space's models, in order, each once."""
        found = [m.head for m in self.models.values()] if self.models else [self.model.head]
        return tuple(dict.fromkeys(found))

    @property
    def needs_generation(self) -> bool:
        """Whether candidates are to be generated and are not merged in yet."""
        return (self.auto_instructions is not None or self.auto_label_words is not None) and self.generated is None

    def with_candidates(self, generated: Mapping[str, Any]) -> SearchSpace:
        """This space with the generated instructions and label-word maps added as choices.

        ``generated`` is what :func:`promptsearch.study.candidates.generate_candidates` returns (and the study stores):
        ``{"instructions": {key: text}, "label_words": {key: {label: word}}, ...}``.
        """
        instructions = {**self.instructions, **dict(generated.get("instructions") or {})}
        label_words = {**self.label_words, **{k: dict(v) for k, v in (generated.get("label_words") or {}).items()}}
        if not label_words:
            raise ValueError("no label-word map: the generation found none and the space writes none")
        params = _parameters(self.spec, instructions, self.templates, label_words)
        return replace(self, instructions=instructions, label_words=label_words, params=params, generated=generated)

    def with_budget(self, budget: str) -> SearchSpace:
        """This space with ``search.budget`` set to ``budget`` (what ``--budget`` does), in place of the file's.

        The preset fills the budget keys the space does not write (:mod:`promptsearch.space.budget`); the keys it
        writes still win. The text becomes the space's YAML with the budget in it (without the file's comments),
        so a study stores what runs and its workers and reports read the same.

        >>> SearchSpace.from_yaml("search_spaces/sst2.yaml").with_budget("light")   # doctest: +SKIP
        """
        try:
            budget_preset(budget)  # a bad name is one message with the three names, before anything is parsed
        except ValueError as exc:
            raise ConfigError(f"budget: {exc}") from None
        if self.spec.search.budget == budget:
            return self
        where = f"{self.path or '<space>'} with budget {budget}"
        raw = load_yaml(self.text, where=where, limits=SPACE_LIMITS, lines=False).data
        search = raw.get("search")
        raw["search"] = {**(search if isinstance(search, dict) else {}), "budget": budget}
        text = yaml.safe_dump(_plain(raw), sort_keys=False, allow_unicode=True)
        space = parse_space(text, path=self.path, where=where, data_in_code=True)
        return space.with_candidates(self.generated) if self.generated is not None else space

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the space text: workers of one study must share it."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def summary(self) -> str:
        """One line: the searched parameters and their sizes."""
        searched = {k: d for k, d in self.params.items() if not isinstance(d, Fixed)}
        parts = [f"{k.split('.', 1)[-1]}: {describe(d)}" for k, d in searched.items()]
        objectives = self.spec.search.objectives or []
        auto = []
        if self.auto_instructions is not None:
            auto.append(f"up to {self.auto_instructions.n} generated instruction(s)")
        if self.auto_label_words is not None:
            auto.append(
                f"up to {self.auto_label_words.maps or self.auto_label_words.top_k} generated label-word map(s)"
            )
        return (
            f"space '{self.name}': {len(searched)} searched parameter(s)"
            + (f" ({'; '.join(parts)})" if parts else "")
            + (f" plus {' and '.join(auto)}" if auto and self.generated is None else "")
            + f", {len(self.params) - len(searched)} fixed"
            + (
                f"; {len(objectives)} objectives ({', '.join(o.metric for o in objectives)}), so no pruning"
                if len(objectives) > 1
                else ""
            )
        )


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space file. Raises :class:`SpaceError` listing every problem."""
    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder)" if path.is_dir() else ""
        kind = describe_path(path)
        if kind not in ("missing", "a folder"):
            raise SpaceError(f"{path}: expected a search-space YAML file, but it is {kind}; pass the path of a file")
        raise SpaceError(f"{path}: no such search-space file{hint}; pass the path of a YAML file")
    try:
        text = read_text(path, limits=SPACE_LIMITS)
    except PermissionError:
        raise SpaceError(f"{path}: this file is not readable by this user; check its permissions") from None
    except UnicodeDecodeError as exc:
        raise SpaceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    return parse_space(text, path=path)


def _plain(value: Any) -> Any:
    """Mappings and sequences (tuples, pydantic-free) as the dicts and lists ``yaml.safe_dump`` writes."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def parse_space(
    text: str, *, path: Path | None = None, where: str | None = None, data_in_code: bool = False
) -> SearchSpace:
    """Validate the YAML ``text`` of a search space (``path`` is used for messages and relative paths).

    ``where`` names a space that is no file in messages, which then carry no line numbers. A space file
    must say where its data is (``task.data``); with ``data_in_code`` it may leave that out.
    """
    line_numbers = where is None
    where = str(path) if path is not None else (where or "<string>")
    try:
        document = load_yaml(text, where=where, limits=SPACE_LIMITS, lines=line_numbers)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpaceError(f"{where}{line}: not valid YAML: {problem}") from None
    raw = document.data
    lines = document.lines if line_numbers else {}
    if raw is None:
        raise SpaceError(f"{where}: the file is empty; see search_spaces/sst2.yaml for a commented example")
    if not isinstance(raw, dict):
        raise SpaceError(f"{where}: expected a mapping at the top level, but found {type(raw).__name__}")

    def msg(loc: tuple[Any, ...], text: str) -> str:
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _nearest_line(lines, loc)
        return f"{where}{f':{line}' if line else ''}: {key}: {text}"

    task = raw.get("task")
    no_data = (
        []
        if data_in_code or not isinstance(task, dict) or "data" in task
        else [msg(("task", "data"), "required key is missing")]
    )
    try:
        spec = SpaceSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpaceError(no_data + [msg(_pydantic_loc(e), _pydantic_text(e)) for e in exc.errors()]) from None
    if no_data:
        raise SpaceError(no_data)

    problems: list[str] = []
    raw_instruction, auto_instructions = _split_auto(spec.prompt.instruction)
    instructions = _text_choices(raw_instruction, ("prompt", "instruction"), problems, msg, auto=auto_instructions)
    raw_templates = _text_choices(spec.prompt.template, ("prompt", "template"), problems, msg)
    templates = _check_templates(raw_templates, spec, problems, msg)
    raw_words, auto_words = _split_auto(spec.prompt.label_words)
    label_words = _check_label_words(spec, raw_words, auto_words, problems, msg)
    _check_models(spec, problems, msg)
    params = _parameters(spec, instructions, templates, label_words)
    _check_conditions(params, problems, msg)
    _check_heads(spec, params, templates, problems, msg)
    _check_auto(spec, auto_instructions, auto_words, templates, problems, msg)
    _check_baseline(spec, problems, msg)
    _check_pruner(spec, problems, msg)
    _check_sampler(spec, problems, msg)
    _check_objectives(spec, problems, msg)
    if problems:
        raise SpaceError(problems)
    return SearchSpace(
        spec=spec,
        path=path,
        text=text,
        instructions=instructions,
        templates=templates,
        label_words=label_words,
        params=params,
        auto_instructions=auto_instructions,
        auto_label_words=auto_words,
    )


def _split_auto(value: Any) -> tuple[Any, Any]:
    """Hand-written candidates and the ``auto`` options (None when absent), from a mapping or a list."""
    if isinstance(value, dict) and AUTO in value:
        return {k: v for k, v in value.items() if k != AUTO}, value[AUTO]
    if isinstance(value, list):
        autos = [v[AUTO] for v in value if isinstance(v, dict) and list(v) == [AUTO]]
        if autos:
            kept = {i: v for i, v in enumerate(value) if not (isinstance(v, dict) and list(v) == [AUTO])}
            return kept, autos[0]
    return value, None


def _pydantic_loc(error: Any) -> tuple[Any, ...]:
    loc = tuple(error["loc"])
    if loc[:1] == ("model",) and len(loc) > 1 and loc[1] in ("one", "many"):
        loc = (loc[0], *loc[2:])  # the tag of the single-model / model-list union is no YAML key
    if "key" in (error.get("ctx") or {}):  # an unknown key, or a range's low/high: point at its own line
        return (*loc, error["ctx"]["key"])
    return loc


def _pydantic_text(error: Any) -> str:
    text = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return "required key is missing"
    if error["type"] in ("literal_error", "enum"):
        found = error.get("input")
        return f"{text}, but found {found!r}"
    if error["type"].endswith(("_type", "_parsing", "_than", "_than_equal", "too_short", "too_long")):
        return f"{text}, but found {error.get('input')!r}"
    return text


def _nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    loc = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _text_choices(
    value: Any, loc: tuple[str, ...], problems: list[str], msg: Any, *, auto: Any = None
) -> dict[Any, str]:
    if isinstance(value, str):
        return {0: value} if auto is None or value else {"none": ""}
    items = dict(enumerate(value)) if isinstance(value, list) else dict(value)
    if auto is not None and "" not in items.values():
        items["none"] = ""  # generated instructions join the empty one (and the hand-written ones)
    if not items:
        problems.append(msg(loc, "the list of candidates is empty; give at least one"))
    texts = list(items.values())
    for key, text in items.items():
        if texts.count(text) > 1:
            problems.append(msg((*loc, key), f"candidate {text!r} appears more than once; list each once"))
            break
    return items


def _check_templates(raw: Mapping[Any, str], spec: SpaceSpec, problems: list[str], msg: Any) -> dict[Any, Template]:
    fields = spec.task.text_fields
    allowed = [*fields, *RESERVED]
    out: dict[Any, Template] = {}
    for key, source in raw.items():
        loc = ("prompt", "template", key) if len(raw) > 1 or not isinstance(key, int) else ("prompt", "template")
        try:
            tpl = Template.parse(source)
        except TemplateError as exc:
            problems.append(msg(loc, str(exc)))
            continue
        names = tpl.names
        bad = False
        for name in names:
            if name not in allowed:
                bad = True
                problems.append(
                    msg(
                        loc,
                        f"placeholder '{{{name}}}' is neither a text field of the task (task.text_fields: "
                        f"{fields}) nor one of {{instruction}}, {{demos}}, {{label}}.{did_you_mean(name, allowed)}",
                    )
                )
        if bad:
            continue
        if names.count("label") != 1:
            problems.append(
                msg(
                    loc,
                    f"a template needs exactly one {{label}} slot (the answer), but found {names.count('label')}",
                )
            )
        for f in fields:
            if f not in names:
                problems.append(msg(loc, f"the template never uses the text field {{{f}}}; add it"))
        for reserved in ("instruction", "demos"):
            if names.count(reserved) > 1:
                problems.append(msg(loc, f"{{{reserved}}} may appear at most once"))
        positions = [i for i, n in enumerate(names) if n in ("instruction", "demos")]
        firsts = [i for i, n in enumerate(names) if n not in ("instruction", "demos")]
        if positions and firsts and min(firsts) < max(positions):
            problems.append(
                msg(
                    loc,
                    "{instruction} and {demos} must come before the example's fields and {label}; move them",
                )
            )
        out[key] = tpl
    return out


def _check_label_words(
    spec: SpaceSpec, raw: Any, auto: AutoLabelWords | None, problems: list[str], msg: Any
) -> dict[Any, dict[str, str]]:
    labels = spec.task.labels
    if raw is None:
        return {0: {label: label for label in labels}}
    items: dict[Any, dict[str, str]] = dict(raw) if isinstance(raw, dict) else dict(enumerate(raw))
    if not items and auto is not None:
        return {}  # only generated maps: they are added once generated
    if not items:
        problems.append(msg(("prompt", "label_words"), "the list of label-word maps is empty"))
    for key, mapping in items.items():
        loc = ("prompt", "label_words", key)
        missing = [label for label in labels if label not in mapping]
        extra = [str(k) for k in mapping if k not in labels]
        if missing:
            problems.append(
                msg(
                    loc,
                    f"no label word for label(s) {missing}; every label in task.labels {labels} needs one",
                )
            )
        if extra:
            hints = "".join(did_you_mean(e, labels) for e in extra)
            problems.append(
                msg(
                    loc,
                    f"label(s) {extra} are not in task.labels {labels}.{hint}"
                    if (hint := hints)
                    else f"label(s) {extra} are not in task.labels {labels}",
                )
            )
        words = [str(w) for w in mapping.values()]
        for word in set(words):
            if words.count(word) > 1:
                same = [lab for lab, w in mapping.items() if str(w) == word]
                problems.append(msg(loc, f"labels {same} share the word {word!r}; each label needs its own word"))
        if any(not w.strip() for w in words):
            problems.append(msg(loc, "label words must not be empty"))
        items[key] = {str(k): str(v) for k, v in mapping.items()}
    return items


def _keys_dim(choices: Mapping[Any, Any]) -> Dimension:
    keys = tuple(choices)
    return Fixed(keys[0]) if len(keys) == 1 else Categorical(keys)


def _parameters(
    spec: SpaceSpec,
    instructions: Mapping[Any, str],
    templates: Mapping[Any, Template],
    label_words: Mapping[Any, Mapping[str, str]],
) -> dict[str, Dimension]:
    demos = spec.prompt.demonstrations
    models = spec.model if isinstance(spec.model, list) else []
    heads = {m.head for m in models} if models else {_single(spec).head}
    params: dict[str, Dimension] = {}
    if models:
        params["model"] = _keys_dim({m.key: m for m in models})
    params |= {
        "prompt.instruction": _keys_dim(instructions) if instructions else Fixed(""),
        "prompt.template": _keys_dim(templates) if templates else Fixed(None),
        "prompt.label_words": _keys_dim(label_words) if label_words else Fixed(None),
        "prompt.demonstrations.count": demos.count,
        "prompt.demonstrations.selection": demos.selection,
        "prompt.demonstrations.separator": demos.separator,
    }
    if demos.set_numbers != (0,):  # selection fixed: which of the study's demonstration sets
        params["prompt.demonstrations.set"] = _keys_dim(dict.fromkeys(demos.set_numbers))
    if any(head_traits(h).chat for h in heads):  # the other heads are refused a chat template (see _check_heads)
        params["prompt.chat"] = spec.prompt.chat
    if any(head_traits(h).label_words for h in heads):  # a classifier has no label words to calibrate
        params["prompt.calibration"] = spec.prompt.calibration
    own = {m.key: (m.train.model_fields_set if m.train is not None else set()) for m in models}
    embeds = {m.key for m in models if set(_method_values(spec, m)) & set(EMBEDDING_METHODS)}
    single_embeds = not models and bool(set(possible_values(spec.train.method) or ()) & set(EMBEDDING_METHODS))
    for name in TRAIN_KEYS:
        only_embedding = name in EMBEDDING_KEYS  # exists only where method embedding or contrastive can run
        others = tuple(k for k, keys in own.items() if name not in keys and (not only_embedding or k in embeds))
        if (not models and (single_embeds or not only_embedding)) or others:  # the shared value
            dim = getattr(spec.train, name)
            params[f"train.{name}"] = _only_for(dim, others) if len(others) < len(own) else dim
        for m in models:
            if name in own[m.key] and (not only_embedding or m.key in embeds):
                params[f"model.{m.key}.train.{name}"] = _only_for(getattr(m.train, name), (m.key,))
    lora_models = [m for m in models if "lora" in _method_values(spec, m)] if models else []
    shared_lora = [m.key for m in lora_models if "lora" not in own[m.key]]
    if (not models and "lora" in (possible_values(spec.train.method) or ())) or shared_lora:
        for name in LORA_PARAMS:  # LoRA's parameters only where LoRA can run
            dim = getattr(spec.train.lora, name)
            params[f"train.lora.{name}"] = _only_for(dim, tuple(shared_lora)) if models else dim
    for m in lora_models:
        if "lora" in own[m.key] and m.train is not None:
            for name in LORA_PARAMS:
                params[f"model.{m.key}.train.lora.{name}"] = _only_for(getattr(m.train.lora, name), (m.key,))
    return params


def _only_for(dim: Dimension, models: tuple[str, ...]) -> Dimension:
    """``dim`` sampled only when the chosen model is one of ``models`` (besides its own conditions)."""
    return replace(dim, when={**dim.when, "model": models})


def _single(spec: SpaceSpec) -> ModelSpec:
    assert not isinstance(spec.model, list)
    return spec.model


def _method_values(spec: SpaceSpec, model: ModelChoice | None) -> Sequence[Any]:
    """The train.method values ``model`` can take (its own, or the shared ones)."""
    if model is not None and model.train is not None and "method" in model.train.model_fields_set:
        return possible_values(model.train.method) or ()
    return possible_values(spec.train.method) or ()


def _check_models(spec: SpaceSpec, problems: list[str], msg: Any) -> None:
    """A model list: ids unique, and each model's own training values valid on their own."""
    if not isinstance(spec.model, list):
        return
    if not spec.model:
        problems.append(msg(("model",), "the list of models is empty; give at least one"))
        return
    seen: dict[str, int] = {}
    for i, m in enumerate(spec.model):
        if m.key in seen:
            problems.append(
                msg(
                    ("model", i),
                    f"model id '{m.key}' is already used by model {seen[m.key]}; give each an id: (e.g. id: {m.key}-2)",
                )
            )
        seen.setdefault(m.key, i)


def _check_heads(
    spec: SpaceSpec,
    params: Mapping[str, Dimension],
    templates: Mapping[Any, Template],
    problems: list[str],
    msg: Any,
) -> None:
    """What each head can do: no untrained classification heads, no chat outside causal, no 'head' for causal,
    calibration only where label words are scored, and a causal query that ends at {label} must have read the
    input by then. With a model list, each model is checked with its own training values."""
    if isinstance(spec.model, list):
        where = {m.key: ("model", i, "train") for i, m in enumerate(spec.model)}
        checks = [
            (
                f"model '{m.key}' (head {m.head})",
                m.head,
                params.get(f"model.{m.key}.train.method", params.get("train.method", Fixed("full"))),
                params.get(f"model.{m.key}.train.epochs", params.get("train.epochs", Fixed(10))),
                where[m.key] if m.train is not None and "method" in m.train.model_fields_set else ("train",),
                where[m.key] if m.train is not None and "epochs" in m.train.model_fields_set else ("train",),
            )
            for m in spec.model
        ]
        heads = [m.head for m in spec.model]
    else:
        head = _single(spec).head
        checks = [
            (f"model.head '{head}'", head, params["train.method"], params["train.epochs"], ("train",), ("train",))
        ]
        heads = [head]
    calibrated = [v for v in possible_values(spec.prompt.calibration) or () if v != "none"]
    pretrained = head_names(lambda t: not t.starts_random)  # heads that can answer untrained
    scoring = head_names(lambda t: t.label_words)
    in_context = False
    for who, head, method_dim, epochs_dim, method_loc, epochs_loc in checks:
        traits = head_traits(head)
        methods = possible_values(method_dim) or ()
        in_context = in_context or (traits.label_words and "none" in methods)
        if traits.starts_random and "none" in methods:
            problems.append(
                msg(
                    (*method_loc, "method"),
                    f"{who}: method 'none' (no training) needs model.head {quoted(pretrained)}: a new {head} "
                    "head starts random, so an untrained one only guesses; drop 'none' or change model.head",
                )
            )
        if traits.starts_random and 0 in (possible_values(epochs_dim) or ()):
            problems.append(
                msg(
                    (*epochs_loc, "epochs"),
                    f"{who}: 0 epochs would score a new, untrained {head} head (a random guess); use at "
                    f"least 1, or model.head {'/'.join(repr(h) for h in pretrained)} for in-context-only trials",
                )
            )
        if not traits.own_weights and "head" in methods:
            problems.append(
                msg(
                    (*method_loc, "method"),
                    f"{who}: method 'head' trains a head of its own, but a {head} LM answers through its output "
                    "layer, which is usually tied to the input embeddings; use 'lora', 'bitfit' or 'full' instead",
                )
            )
        pooled = [m for m in methods if m in EMBEDDING_METHODS]
        if pooled and head != "embedding":
            problems.append(
                msg(
                    (*method_loc, "method"),
                    f"{who}: method {quoted(pooled, 'and')} fits a logistic regression on sentence embeddings, which "
                    "needs model.head 'embedding'; set it, or drop the method",
                )
            )
    continuing = [h for h in heads if head_traits(h).continuation]
    if continuing:
        for key, tpl in templates.items():
            names = list(tpl.names)
            if "label" not in names:
                continue
            after = [n for n in names[names.index("label") + 1 :] if n not in ("instruction", "demos")]
            if after:
                loc = (
                    ("prompt", "template", key)
                    if len(templates) > 1 or not isinstance(key, int)
                    else ("prompt", "template")
                )
                problems.append(
                    msg(
                        loc,
                        f"with model.head '{continuing[0]}' the query ends where {{label}} starts, so {{{after[0]}}} "
                        "after it "
                        "would never be read; put every text field before {label}",
                    )
                )
    chatting = quoted(head_names(lambda t: t.chat))
    if not any(head_traits(h).chat for h in heads) and True in (possible_values(spec.prompt.chat) or ()):
        problems.append(
            msg(
                ("prompt", "chat"),
                f"chat templates apply to model.head {chatting} only, but the head is '{heads[0]}'; remove prompt.chat"
                if len(heads) == 1
                else f"chat templates apply to model.head {chatting} only, and no model of the list has it; "
                "remove prompt.chat",
            )
        )
    if calibrated and not set(heads) & set(scoring):
        problems.append(
            msg(
                ("prompt", "calibration"),
                f"calibration {calibrated} adjusts label-word scores, which only the {' and '.join(scoring)} heads "
                f"have (head: {', '.join(heads)}); remove prompt.calibration or use model.head "
                f"{'/'.join(repr(h) for h in scoring)}",
            )
        )
    elif calibrated and not in_context:
        problems.append(
            msg(
                ("prompt", "calibration"),
                f"calibration {calibrated} applies to in-context trials (train.method 'none'): fine-tuning learns the "
                "label prior from the train data itself, so trained trials are scored uncalibrated; add 'none' to "
                "train.method or remove prompt.calibration",
            )
        )


def _check_auto(
    spec: SpaceSpec,
    instructions: AutoInstructions | None,
    words: AutoLabelWords | None,
    templates: Mapping[Any, Template],
    problems: list[str],
    msg: Any,
) -> None:
    """Generated candidates need a model that can make them."""
    models = spec.model if isinstance(spec.model, list) else []
    ids = [m.key for m in models]
    heads: list[tuple[str | None, str]] = [(m.key, m.head) for m in models] or [(None, _single(spec).head)]
    scoring_heads = head_names(lambda t: t.label_words)
    writing_heads = head_names(lambda t: t.generates)
    if words is not None:
        loc = ("prompt", "label_words", AUTO)
        if words.model is not None and words.model not in ids:
            problems.append(
                msg(
                    (*loc, "model"),
                    f"'{words.model}' is not a model id of this space"
                    + (
                        f".{did_you_mean(words.model, ids)} Model ids: {', '.join(ids)}"
                        if ids
                        else " (it has one model)"
                    )
                    + "; name one of the listed models, or remove the key",
                )
            )
        else:
            head = dict(heads).get(words.model) if words.model is not None else None
            scoring = [h for _, h in heads if h in scoring_heads]
            if (words.model is not None and head not in scoring_heads) or (words.model is None and not scoring):
                problems.append(
                    msg(
                        loc,
                        "generated label words are ranked by a language model at the {label} slot, which needs "
                        f"model.head {quoted(scoring_heads)}, but "
                        + (f"model '{words.model}' has head '{head}'" if words.model else "no model here has one")
                        + f"; write the label words by hand or add an {'/'.join(scoring_heads)} model",
                    )
                )
        if words.template is not None and words.template not in templates:
            keys = [str(k) for k in templates]
            problems.append(
                msg(
                    (*loc, "template"),
                    f"no template '{words.template}'.{did_you_mean(str(words.template), keys)} Templates: "
                    f"{', '.join(keys)}",
                )
            )
    if instructions is not None and instructions.model is None and not set(writing_heads) & {h for _, h in heads}:
        problems.append(
            msg(
                ("prompt", "instruction", AUTO),
                "generated instructions are written by an instruction-following causal LM, and no model here has "
                f"model.head {quoted(writing_heads)}; name one with prompt.instruction.auto.model (e.g. smollm2)",
            )
        )


def possible_values(dim: Dimension) -> Sequence[Any] | None:
    """Every value ``dim`` can take (lazily for an int range), or None for a float range."""
    if isinstance(dim, (Fixed, Categorical, IntRange)):
        return dim.values()
    return None


def _check_conditions(params: Mapping[str, Dimension], problems: list[str], msg: Any) -> None:
    order = list(params)
    for i, (name, dim) in enumerate(params.items()):
        for parent, values in dim.when.items():
            loc = (*name.split("."), "when", parent)
            if parent not in params:
                problems.append(msg(loc, f"unknown parameter '{parent}'.{did_you_mean(parent, order)}"))
                continue
            if order.index(parent) >= i:
                problems.append(
                    msg(
                        loc,
                        f"'{parent}' is sampled after '{name}'; a condition can only use earlier parameters",
                    )
                )
                continue
            options = possible_values(params[parent])
            if options is not None:
                bad = [v for v in values if v not in options]
                if bad:
                    shown = describe(params[parent]) if isinstance(params[parent], IntRange) else list(options)
                    problems.append(msg(loc, f"{bad} can never be a value of '{parent}' (its values: {shown})"))


def _check_baseline(spec: SpaceSpec, problems: list[str], msg: Any) -> None:
    allowed = [name for name in TrainSpec.model_fields if name != "lora"]
    usable: dict[str, Any] = {}
    ids = [m.key for m in spec.model] if isinstance(spec.model, list) else []
    for key, value in spec.baseline.items():
        if key == "model" and ids:
            if value not in ids:
                problems.append(
                    msg(
                        ("baseline", key),
                        f"'{value}' is not a model id of this space.{did_you_mean(str(value), ids)} "
                        f"Model ids: {', '.join(ids)}",
                    )
                )
            continue
        if key not in allowed:
            problems.append(
                msg(
                    ("baseline", key),
                    f"unknown training key.{did_you_mean(str(key), allowed)} Allowed: {', '.join(allowed)}",
                )
            )
        elif isinstance(value, (list, dict)):
            problems.append(
                msg(("baseline", key), f"the baseline takes one value, not a range or list; found {value!r}")
            )
        elif key == "method" and value == "none":
            problems.append(
                msg(("baseline", key), "the baseline fine-tunes a classification head, so its method cannot be 'none'")
            )
        else:
            usable[key] = value
    try:  # the baseline trial builds exactly this config, so its values are checked now, not mid-study
        TrainConfig(**usable)
    except ValidationError as exc:
        problems.extend(msg(("baseline", *e["loc"]), _pydantic_text(e)) for e in exc.errors())


def _check_pruner(spec: SpaceSpec, problems: list[str], msg: Any) -> None:
    """The pruner the study builds: its options by the pruner's own signature (names and types), then the pruner
    itself, so that what Optuna refuses is refused here with the key's line."""
    pruner = spec.search.pruner
    cls = pruner_class(pruner.type)
    loc = ("search", "pruner", "options")
    options = keyword_options(cls)
    allowed = list(options.model_fields)
    try:
        options.model_validate(pruner.options)
    except ValidationError as exc:
        for e in exc.errors():
            key = str(e["loc"][0]) if e["loc"] else ""
            if e["type"] != "extra_forbidden":
                problems.append(msg((*loc, key), _pydantic_text(e)))
            elif not allowed:
                problems.append(
                    msg((*loc, key), f"the {pruner.type} pruner takes no options; remove search.pruner.options")
                )
            else:
                hint = did_you_mean(key, allowed)
                problems.append(
                    msg((*loc, key), f"unknown option of the {pruner.type} pruner.{hint} Allowed: {', '.join(allowed)}")
                )
        return
    try:
        _try_pruner(cls(**pruner.arguments()), spec.search.direction)
    except Exception as exc:  # whatever the pruner raises here, it would raise in the study: refuse its options
        why = str(exc) or type(exc).__name__
        problems.append(msg(loc, f"Optuna refused these options: {why} (options {pruner.options}); change them"))


def _check_sampler(spec: SpaceSpec, problems: list[str], msg: Any) -> None:
    """The sampler the study builds, tried now: one that needs a package not installed (cmaes) is refused here."""
    search = spec.search
    try:
        _try_sampler(partial(SAMPLERS[search.sampler], search.seed, search.n_trials or 20), search.direction)
    except Exception as exc:  # whatever the sampler raises here, it would raise in the study
        others = ", ".join(name for name in SAMPLERS if name != search.sampler)
        problems.append(
            msg(
                ("search", "sampler"),
                f"the {search.sampler} sampler cannot be used ({str(exc).strip() or type(exc).__name__}); install "
                f"what it needs, or use another sampler ({others})",
            )
        )


def _try_pruner(pruner: Any, direction: Literal["maximize", "minimize"]) -> None:
    """Run ``pruner`` on a throwaway study: some options are refused only when it first prunes (a hyperband
    pruner builds its brackets then)."""

    def report(trial: Any, number: int) -> None:
        for step in range(1, 4):
            trial.report(float(number + step), step)
            if trial.should_prune():
                return

    _throwaway_study(report, direction, pruner=pruner)


def _try_sampler(make: Callable[[], Any], direction: Literal["maximize", "minimize"]) -> None:
    """Make the sampler and sample a few trials of a float and an int parameter: some samplers load what they need
    (cmaes) only when they first sample from their model."""

    def suggest(trial: Any, number: int) -> None:
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_int("n", 1, 4)

    with warnings.catch_warnings():  # Optuna's notes on experimental arguments are for the run, not for this
        warnings.simplefilter("ignore")
        _throwaway_study(suggest, direction, sampler=make())


def _throwaway_study(
    step: Callable[[Any, int], None],
    direction: Literal["maximize", "minimize"],
    *,
    sampler: Any = None,
    pruner: Any = None,
) -> None:
    """Three trials of an in-memory study, each run by ``step(trial, number)``, with Optuna's log lines muted."""
    import optuna

    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.ERROR)  # no "study created" or "trial finished" lines from a check
    try:
        study = optuna.create_study(sampler=sampler, pruner=pruner, direction=direction)
        for number in range(3):
            trial = study.ask()
            step(trial, number)
            study.tell(trial, float(number))
    finally:
        optuna_logger.setLevel(level)


def _check_objectives(spec: SpaceSpec, problems: list[str], msg: Any) -> None:
    search = spec.search
    if not search.objectives:
        return
    metrics = [o.metric for o in search.objectives]
    if len(metrics) > 1 and search.sampler in SINGLE_OBJECTIVE_SAMPLERS:
        problems.append(
            msg(
                ("search", "sampler"),
                f"the {search.sampler} sampler optimises one objective only, and this space has several; "
                "use tpe (the default), random or gp",
            )
        )
    if metrics[0] != "dev":
        problems.append(
            msg(
                ("search", "objectives", 0, "metric"),
                f"the first objective must be dev (the score the study optimises and reports), but found "
                f"'{metrics[0]}'; list dev first, then the costs (prompt_tokens, latency_ms)",
            )
        )
    for i, metric in enumerate(metrics):
        if metrics.index(metric) != i:
            problems.append(msg(("search", "objectives", i, "metric"), f"'{metric}' is listed twice; list it once"))
    dev = search.objectives[0]
    if metrics[0] == "dev" and dev.direction is not None and dev.direction != search.direction:
        problems.append(
            msg(
                ("search", "objectives", 0, "direction"),
                f"'{dev.direction}' differs from search.direction '{search.direction}'; the dev score has one "
                "direction: drop this one or change search.direction",
            )
        )
    if len(metrics) > 1 and "pruner" in search.model_fields_set and search.pruner.type != "none":
        problems.append(
            msg(
                ("search", "pruner"),
                f"a {search.pruner.type} pruner is set, but Optuna cannot prune multi-objective studies "
                "(Trial.report and Trial.should_prune are not supported for them: with several objectives there "
                "is no single intermediate score to compare trials on), so every trial runs all its epochs; "
                "remove search.pruner or set it to {type: none}",
            )
        )


def is_active(dim: Dimension, values: Mapping[str, Any]) -> bool:
    """Whether a conditional parameter exists given the values sampled so far."""
    return all(values.get(parent) in allowed for parent, allowed in dim.when.items())
