"""Load a search-space YAML file into a validated :class:`SearchSpace`.

Every problem becomes one line ``FILE:LINE: key.path: message`` and all of them are raised together
as a :class:`~promptsearch.errors.SpaceError`.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from promptsearch.config import TrainConfig
from promptsearch.dimensions import Categorical, Dimension, Fixed, IntRange, describe
from promptsearch.errors import SpaceError, TemplateError, did_you_mean
from promptsearch.spec import PRUNER_DEFAULTS, SpaceSpec, TrainSpec, pruner_class
from promptsearch.template import Template

__all__ = ["SearchSpace", "is_active", "load_space", "parse_space", "possible_values"]

RESERVED = ("instruction", "demos", "label")
LORA_PARAMS = ("r", "alpha", "dropout")


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

    @property
    def name(self) -> str:
        return self.spec.name

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
        parts = [f"{k.split('.', 1)[1]}: {describe(d)}" for k, d in searched.items()]
        objectives = self.spec.search.objectives or []
        return (
            f"space '{self.name}': {len(searched)} searched parameter(s)"
            + (f" ({'; '.join(parts)})" if parts else "")
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
        raise SpaceError(f"{path}: no such search-space file{hint}; pass the path of a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpaceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    return parse_space(text, path=path)


def parse_space(text: str, *, path: Path | None = None) -> SearchSpace:
    """Validate the YAML ``text`` of a search space (``path`` is used for messages and relative paths)."""
    where = str(path) if path is not None else "<string>"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpaceError(f"{where}{line}: not valid YAML: {problem}") from None
    lines = _line_map(node)
    if raw is None:
        raise SpaceError(f"{where}: the file is empty; see search_spaces/sst2.yaml for a commented example")
    if not isinstance(raw, dict):
        raise SpaceError(f"{where}: expected a mapping at the top level, but found {type(raw).__name__}")

    def msg(loc: tuple[Any, ...], text: str) -> str:
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _nearest_line(lines, loc)
        return f"{where}{f':{line}' if line else ''}: {key}: {text}"

    try:
        spec = SpaceSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpaceError([msg(_pydantic_loc(e), _pydantic_text(e)) for e in exc.errors()]) from None

    problems: list[str] = []
    instructions = _text_choices(spec.prompt.instruction, ("prompt", "instruction"), problems, msg)
    raw_templates = _text_choices(spec.prompt.template, ("prompt", "template"), problems, msg)
    templates = _check_templates(raw_templates, spec, problems, msg)
    label_words = _check_label_words(spec, problems, msg)
    params = _parameters(spec, instructions, templates, label_words)
    _check_conditions(params, problems, msg)
    _check_heads(spec, params, templates, problems, msg)
    _check_baseline(spec, problems, msg)
    _check_pruner(spec, problems, msg)
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
    )


def _pydantic_loc(error: Any) -> tuple[Any, ...]:
    loc = tuple(error["loc"])
    if error["type"] == "unknown_key":
        return (*loc, error["ctx"]["key"])
    return loc


def _pydantic_text(error: Any) -> str:
    text = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return "required key is missing"
    if error["type"] in ("literal_error", "enum"):
        found = error.get("input")
        return f"{text}, but found {found!r}"
    if error["type"].endswith(("_type", "_parsing", "greater_than", "less_than", "too_short", "too_long")):
        return f"{text}, but found {error.get('input')!r}"
    return text


def _line_map(node: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    out: dict[tuple[Any, ...], int] = {}

    def walk(n: yaml.Node, loc: tuple[Any, ...]) -> None:
        out.setdefault(loc, n.start_mark.line + 1)  # a key's own line wins over its block value's first line
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                out[(*loc, key)] = k.start_mark.line + 1
                walk(v, (*loc, key))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, (*loc, i))

    if node is not None:
        walk(node, ())
    return out


def _nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    loc = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _text_choices(value: Any, loc: tuple[str, ...], problems: list[str], msg: Any) -> dict[Any, str]:
    if isinstance(value, str):
        return {0: value}
    items = dict(enumerate(value)) if isinstance(value, list) else dict(value)
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


def _check_label_words(spec: SpaceSpec, problems: list[str], msg: Any) -> dict[Any, dict[str, str]]:
    labels = spec.task.labels
    raw = spec.prompt.label_words
    if raw is None:
        return {0: {label: label for label in labels}}
    items: dict[Any, dict[str, str]] = dict(enumerate(raw)) if isinstance(raw, list) else dict(raw)
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
    params: dict[str, Dimension] = {
        "prompt.instruction": _keys_dim(instructions) if instructions else Fixed(""),
        "prompt.template": _keys_dim(templates) if templates else Fixed(None),
        "prompt.label_words": _keys_dim(label_words) if label_words else Fixed(None),
        "prompt.demonstrations.count": demos.count,
        "prompt.demonstrations.selection": demos.selection,
        "prompt.demonstrations.separator": demos.separator,
    }
    if spec.model.head == "causal":  # the other heads are refused a chat template (see _check_heads)
        params["prompt.chat"] = spec.prompt.chat
    for name in TrainSpec.model_fields:
        if name != "lora":
            params[f"train.{name}"] = getattr(spec.train, name)
    if "lora" in (possible_values(spec.train.method) or ()):  # LoRA's parameters only where LoRA can run
        for name in LORA_PARAMS:
            params[f"train.lora.{name}"] = getattr(spec.train.lora, name)
    return params


def _check_heads(
    spec: SpaceSpec,
    params: Mapping[str, Dimension],
    templates: Mapping[Any, Template],
    problems: list[str],
    msg: Any,
) -> None:
    """What each head can do: no untrained classification heads, no chat outside causal, no 'head' for causal,
    and a causal query that ends at {label} must have read the input by then."""
    head = spec.model.head
    methods = possible_values(params["train.method"]) or ()
    if head == "classification" and "none" in methods:
        problems.append(
            msg(
                ("train", "method"),
                "method 'none' (no training) needs model.head 'mlm' or 'causal': a new classification head "
                "starts random, so an untrained one only guesses; drop 'none' or change model.head",
            )
        )
    epochs = possible_values(params["train.epochs"]) or ()
    if head == "classification" and 0 in epochs:
        problems.append(
            msg(
                ("train", "epochs"),
                "0 epochs would score a new, untrained classification head (a random guess); use at least 1, "
                "or model.head 'mlm'/'causal' for in-context-only trials",
            )
        )
    if head == "causal":
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
                        f"with model.head 'causal' the query ends where {{label}} starts, so {{{after[0]}}} after it "
                        "would never be read; put every text field before {label}",
                    )
                )
    if head == "causal" and "head" in methods:
        problems.append(
            msg(
                ("train", "method"),
                "method 'head' trains a head of its own, but a causal LM answers through its output layer, "
                "which is usually tied to the input embeddings; use 'lora', 'bitfit' or 'full' instead",
            )
        )
    if head != "causal" and True in (possible_values(spec.prompt.chat) or ()):
        problems.append(
            msg(
                ("prompt", "chat"),
                f"chat templates apply to model.head 'causal' only, but the head is '{head}'; remove prompt.chat",
            )
        )


def possible_values(dim: Dimension) -> tuple[Any, ...] | None:
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
                    problems.append(msg(loc, f"{bad} can never be a value of '{parent}' (its values: {list(options)})"))


def _check_baseline(spec: SpaceSpec, problems: list[str], msg: Any) -> None:
    allowed = [name for name in TrainSpec.model_fields if name != "lora"]
    usable: dict[str, Any] = {}
    for key, value in spec.baseline.items():
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
    pruner = spec.search.pruner
    if pruner.type == "none" or not pruner.options:
        return
    cls = pruner_class(pruner.type)
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = [key for key in pruner.options if key not in allowed]
    for key in unknown:
        hint = did_you_mean(key, allowed)
        text = f"unknown option of the {pruner.type} pruner.{hint} Allowed: {', '.join(allowed)}"
        problems.append(msg(("search", "pruner", "options", key), text))
    if not unknown:
        try:
            cls(**{**PRUNER_DEFAULTS.get(pruner.type, {}), **pruner.options})
        except (TypeError, ValueError) as exc:
            problems.append(msg(("search", "pruner", "options"), f"Optuna refused these options: {exc}"))


def _check_objectives(spec: SpaceSpec, problems: list[str], msg: Any) -> None:
    search = spec.search
    if not search.objectives:
        return
    metrics = [o.metric for o in search.objectives]
    if len(metrics) > 1 and search.sampler == "cmaes":
        problems.append(
            msg(
                ("search", "sampler"),
                "the cmaes sampler optimises one objective only, and this space has several; "
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
