"""Write a new search space as commented YAML: a profile of the data, its set-up, label words and models -> text.

Every key carries a comment (as the shipped ``search_spaces/*.yaml`` do), so the file documents itself; every
text value is written double-quoted, so that a class named ``yes`` or ``null`` stays a string. Paths are
relative to the space file's folder, where ``validate`` and ``run`` resolve them.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptsearch.scaffold.models import ModelEntry
from promptsearch.scaffold.plan import DataPlan
from promptsearch.scaffold.profile import DataProfile
from promptsearch.scaffold.words import LabelWords, TextLengths

__all__ = ["SpaceOptions", "max_lengths", "space_text"]

COMMENT_COLUMN = 34
N_TRIALS = 12
DEMOS = (0, 2)  # demonstrations per prompt: none, or two labelled rows before the query
_LINE_BREAKS = {"\u0085": "\\N", "\u2028": "\\L", "\u2029": "\\P", "\ufeff": "\\uFEFF"}


@dataclass(frozen=True)
class SpaceOptions:
    """What the user chose: the space's name, the folder its paths start at, and a search budget preset."""

    name: str
    base_dir: Path
    budget: str | None = None


def q(text: str) -> str:
    """``text`` as a double-quoted YAML scalar (JSON's escapes, and YAML's own for its line breaks)."""
    out = json.dumps(text, ensure_ascii=False)
    for char, escape in _LINE_BREAKS.items():
        out = out.replace(char, escape)
    return out


def _inline(mapping: Mapping[str, Any], *, quote_keys: bool = False) -> str:
    """A flow mapping; ``quote_keys`` for keys from the data (a class named ``no`` stays a string)."""
    return "{" + ", ".join(f"{q(k) if quote_keys else k}: {_value(v)}" for k, v in mapping.items()) + "}"


def _value(v: Any) -> str:
    if isinstance(v, str):
        return q(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, Mapping):
        return _inline(v, quote_keys=True)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


class _Lines:
    """YAML lines with their comments aligned at :data:`COMMENT_COLUMN`."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, indent: int, code: str, comment: str = "") -> None:
        text = "  " * indent + code
        if comment:
            text = (
                f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}"
                if len(text) < COMMENT_COLUMN - 1
                else f"{text}  # {comment}"
            )
        self.lines.append(text)

    def comment(self, indent: int, text: str) -> None:
        self.lines.append("  " * indent + f"# {text}" if text else "#")

    def blank(self) -> None:
        self.lines.append("")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive (Windows): absolute
        return path.resolve().as_posix()


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def max_lengths(lengths: Mapping[str, TextLengths], models: Sequence[ModelEntry]) -> dict[str, int]:
    """``model.max_length`` of each model from its tokens per row (95th percentile): the query and the
    instruction for MiniLM (demonstrations that do not fit are dropped first), room for two demonstrations
    for a causal model (which reads them)."""
    out = {}
    for entry in models:
        row = lengths.get(entry.id, lengths.get("minilm"))
        p95 = row.p95 if row is not None else 64
        if entry.causal:
            out[entry.id] = min(2048, max(128, _round_up((p95 + 12) * (1 + DEMOS[-1]) + 40, 64)))
        else:
            out[entry.id] = min(512, max(64, _round_up(p95 + 40, 32)))
    return out


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())


def _metric(profile: DataProfile, plan: DataPlan) -> tuple[str, str]:
    counts = profile.train.counts
    balanced = max(counts.values()) <= 1.5 * min(counts.values())
    if len(profile.labels) == 2 and (balanced or plan.few_shot is not None):
        return "accuracy", "accuracy | macro_f1 | mcc; two balanced classes: accuracy"
    return "macro_f1", "accuracy | macro_f1 | mcc; macro-F1 weighs every class equally"


def _instruction(profile: DataProfile) -> str:
    names = [label.replace("_", " ") for label in profile.labels]
    listed = f"{', '.join(names[:-1])} or {names[-1]}"
    if profile.pair:
        return f"Classify the relation between the two texts as {listed}."
    return f"Classify the text as {listed}."


def _templates(profile: DataProfile) -> list[tuple[str, str, str]]:
    """(key, template, comment): two or three formats of one example, for single texts or pairs."""
    if profile.pair:
        a, b = profile.text_fields
        return [
            ("pair", f"Text 1: {{{a}}}\nText 2: {{{b}}}\nAnswer: {{label}}", "both texts labelled, then the answer"),
            ("question", f"{{{a}}}\nQuestion: {{{b}}}\nAnswer: {{label}}", "the second text as a question"),
        ]
    (t,) = profile.text_fields
    return [
        ("labelled", f"Text: {{{t}}}\nClass: {{label}}", "the text, then its class"),
        ("answer", f"{{{t}}}\nAnswer: {{label}}", "the text as it is, then the answer"),
        ("cloze", f"{{{t}}} It is {{label}}.", "the answer as the end of a sentence (LM-BFF's cloze style)"),
    ]


def _data_section(out: _Lines, profile: DataProfile, plan: DataPlan, base: Path) -> None:
    out.add(1, "data:", "where the splits are (paths start at this file's folder)")
    if profile.hub is not None:
        out.add(2, "hub:", "a Hugging Face Hub dataset (needs internet)")
        out.add(3, f"path: {q(profile.hub.path)}", "the dataset id")
        if profile.hub.name:
            out.add(3, f"name: {q(profile.hub.name)}", "its configuration")
        return
    if profile.kind == "folder" and profile.folder is not None:
        listed = " and ".join(
            p.path.name for p in profile.splits.values() if p.path and p.path.parent == profile.folder
        )
        out.add(2, f"dir: {q(_relative(profile.folder, base))}", f"a folder of split files: {listed}")
    files = {
        role: split.path
        for role, split in profile.splits.items()
        if split.path is not None and (profile.kind != "folder" or split.path.parent != profile.folder)
    }
    if files:
        out.add(2, "files:", "split -> file")
        why = {
            "train": "the labelled rows the search learns from",
            "dev": "the labelled rows trials are scored on (pooled with train by cross-validation)",
            "test": "read only by the final report, never by the search",
        }
        for role, path in files.items():
            out.add(3, f"{role}: {q(_relative(path, base))}", why[role])


def _task_section(out: _Lines, profile: DataProfile, plan: DataPlan, base: Path) -> None:
    out.add(0, "task:")
    _data_section(out, profile, plan, base)
    kind = "two fields: a sentence pair" if profile.pair else "one field; two for sentence pairs"
    out.add(1, f"text_fields: {_value(list(profile.text_fields))}", kind)
    out.add(1, f"label_field: {q(profile.label_field)}", "the column holding the class")
    out.add(1, f"labels: {_value(list(profile.labels))}", "every class, as written in the data")
    metric, why = _metric(profile, plan)
    out.add(1, f"metric: {metric}", why)
    test = "test" if profile.test is not None else "null"
    dev = profile.hub.splits.get("dev", "dev") if profile.hub is not None else "dev"
    if profile.hub is None and profile.dev is not None and profile.dev.path is not None:
        dev = profile.dev.path.stem if profile.kind == "folder" else "dev"
    train = profile.hub.splits["train"] if profile.hub is not None else "train"
    test_name = profile.hub.splits.get("test", "test") if profile.hub is not None else "test"
    splits = {"train": train, "dev": dev, "test": test_name if test != "null" else None}
    note = "test null: no test split (give one with --test)" if test == "null" else "which split plays which role"
    out.add(1, f"splits: {_inline(splits)}", note)
    if plan.few_shot is not None:
        few = plan.few_shot
        fields = {"k": few.k, **({"dev_k": few.dev_k} if few.dev_k is not None else {}), "seed": few.seed}
        out.add(1, f"few_shot: {_inline(fields)}", "K rows per class sampled from train (dev_k: for dev)")
    if plan.dev_from_train is not None:
        carve = plan.dev_from_train
        out.add(
            1,
            f"dev_from_train: {_inline({'fraction': carve.fraction, 'seed': carve.seed})}",
            "no dev file: this share of each class becomes dev",
        )


def _model_section(out: _Lines, models: Sequence[ModelEntry], lengths: Mapping[str, int]) -> None:
    out.add(0, "model:", "the models a trial chooses among (parameter `model`)")
    for entry in models:
        out.add(1, f"- id: {entry.id}", "how trials and the report name it")
        out.add(2, f"name: {entry.name}", entry.describe)
        if entry.head == "classification":
            out.add(2, "head: classification", "a new linear head on the body; the prompt is extra input text")
            out.add(
                2,
                f"max_length: {lengths[entry.id]}",
                "tokens: the query and instruction; demonstrations that do not fit are dropped",
            )
            out.add(2, "train:", "this model's own training values")
            out.add(3, "method: full", "fine-tune every weight")
            out.add(3, "learning_rate: {low: 2.0e-5, high: 2.0e-4, log: true}", "searched on a log scale")
            out.add(3, "epochs: 8", "at most; every trial takes its best epoch, and pruning stops bad ones early")
            out.add(3, "batch_size: 8", "rows per step")
        elif entry.head == "embedding":
            out.add(2, "head: embedding", "a logistic regression on the sentence embedding: no template or demos")
            out.add(2, f"max_length: {lengths[entry.id]}", "tokens of the instruction and the text")
            out.add(2, "train:", "SetFit's recipe")
            out.add(3, "method: [embedding, contrastive]", "frozen body, or first trained on pairs of rows")
            out.add(3, "learning_rate: 2.0e-5", "of the contrastive training")
            out.add(3, "epochs: 1", "contrastive epochs (SetFit: 1)")
            out.add(3, "batch_size: 16", "pairs per step")
            out.add(3, "pairs_per_row: [5, 20]", "pairs per row and epoch, half of the same class")
            out.add(3, "logistic_c: {low: 0.1, high: 10.0, log: true}", "inverse regularisation of the regression")
        else:
            out.add(2, f"head: {entry.head}", "each class scores its label word as the prompt's continuation")
            out.add(2, f"max_length: {lengths[entry.id]}", f"tokens: room for {DEMOS[-1]} demonstrations")
            out.add(2, "train:", "nothing trains: the prompt is searched alone")
            out.add(3, "method: none", "in context")


def _label_words_section(out: _Lines, words: LabelWords) -> None:
    checked = f"checked: {', '.join(words.checked)}" if words.checked else "not checked"
    out.add(1, "label_words:", f"candidate maps class -> the word the model reads ({checked})")
    if words.not_checked:
        out.comment(2, f"no tokenizer checked them: {words.not_checked}")
    out.add(2, f"names: {_inline(dict(words.names), quote_keys=True)}", "the class names")
    if words.single is not None:
        for label, pieces in words.several.items():
            out.comment(2, f"{label!r} is several tokens ({pieces}): {words.single[label]!r} below")
        out.add(2, f"single: {_inline(dict(words.single), quote_keys=True)}", "one token per class")
    elif words.several:
        out.comment(2, f"several tokens: {'; '.join(f'{k} ({v})' for k, v in words.several.items())}")


def _prompt_section(out: _Lines, profile: DataProfile, words: LabelWords, models: Sequence[ModelEntry]) -> None:
    out.add(0, "prompt:")
    out.add(1, "instruction:", 'candidate task descriptions, by name; "" is none')
    out.add(2, 'none: ""', "no instruction")
    out.add(2, f"task: {q(_instruction(profile))}", "a generic one, from the class names: edit it")
    out.add(1, "template:", "candidate formats of one example; {label} is the answer slot")
    for key, template, why in _templates(profile):
        out.add(2, f"{key}: {q(template)}", why)
    _label_words_section(out, words)
    out.add(1, "demonstrations:", "labelled train rows shown before the query")
    out.add(2, f"count: {_value(list(DEMOS))}", "demonstrations per prompt")
    out.add(2, "selection: [balanced, similar]", "balanced: one class after another; similar: TF-IDF neighbours")
    out.add(2, f"separator: {q(chr(10) * 2)}", "text after each demonstration")
    if any(m.causal for m in models):
        out.add(1, "chat: false", "SmolLM2-135M answers one class to everything with its chat template")
        out.add(1, "calibration: [none, mean]", "mean: subtract each class's mean score (in context only)")


def _search_section(out: _Lines, plan: DataPlan, options: SpaceOptions) -> None:
    out.add(0, "search:")
    if options.budget is not None:
        out.add(1, f"budget: {options.budget}", "light | medium | heavy: trials and time of the search")
    out.add(1, "sampler: tpe", "tpe | random | gp | cmaes")
    out.add(1, "seed: 0", "seeds the sampler and the demonstration choice")
    out.add(1, "pruner: {type: successive_halving}", "stop trials whose score after an epoch trails")
    if options.budget is None:
        out.add(1, f"n_trials: {N_TRIALS}", "sampled trials; the plain fine-tuning baseline runs first, on top")
    out.add(1, "timeout: null", "seconds, or null for no limit")
    out.add(1, "direction: maximize", "of the task metric")
    folds = plan.folds
    out.add(
        1,
        f"evaluation: {{mode: cv, folds: {folds}, seeds: 1}}",
        f"{folds}-fold cross-validation over train and dev; in context: leave-one-out",
    )
    out.add(1, "finalists: 3", "the best 3 trials and the baseline are scored again before one goes to test")
    out.add(1, "final_seeds: 3", "seeds of the final test runs of the winner and the baseline")


def _header(
    out: _Lines, profile: DataProfile, plan: DataPlan, lengths: TextLengths | None, options: SpaceOptions
) -> None:
    out.comment(0, f"promptsearch search space for {profile.data}, written by `promptsearch init`.")
    for split in profile.splits.values():
        out.comment(0, f"{split.role}: {split.source}: {split.rows} rows ({_counts(split.counts)})")
    if lengths is not None:
        out.comment(
            0,
            f"text length: median {lengths.median} {lengths.unit}, 95th percentile {lengths.p95}, "
            f"longest {lengths.longest} ({lengths.measured} rows measured)",
        )
    for note in plan.notes:
        for line in textwrap.wrap(note[0].upper() + note[1:] + ".", width=110):
            out.comment(0, line)
    out.comment(0, "")
    out.comment(0, "Every key is commented; docs/space-file.md has the full reference, key by key. Any value")
    out.comment(0, "may be a single value (fixed), a list (a choice) or a range {low: .., high: .., log: true}.")
    out.comment(0, "Check it with `promptsearch validate` on this file, search with `promptsearch run`.")
    out.blank()


def space_text(
    profile: DataProfile,
    plan: DataPlan,
    words: LabelWords,
    models: Sequence[ModelEntry],
    lengths: Mapping[str, TextLengths],
    options: SpaceOptions,
) -> str:
    """The commented YAML of a space for ``profile``: see the module's docstring.

    ``lengths`` maps a model id to its tokens per row (``minilm`` is the one the header reports).
    """
    out = _Lines()
    _header(out, profile, plan, lengths.get("minilm"), options)
    out.add(0, f"name: {q(options.name)}", f"study name and output folder (runs/{options.name}/)")
    kind = "sentence pairs" if profile.pair else "texts"
    out.add(0, f"description: {q(f'{len(profile.labels)}-class {kind}, from {profile.data}')}", "free text")
    out.blank()
    _task_section(out, profile, plan, options.base_dir)
    out.blank()
    _model_section(out, models, max_lengths(lengths, models))
    out.blank()
    _prompt_section(out, profile, words, models)
    out.blank()
    _search_section(out, plan, options)
    out.blank()
    baseline = next(m for m in models if m.head == "classification")
    out.add(0, "baseline:", "plain fine-tuning as a typical user runs it (the text alone, no prompt)")
    out.add(1, f"model: {baseline.id}", "the model it fine-tunes")
    out.add(1, "learning_rate: 2.0e-5", "fixed values, not searched")
    out.add(1, "batch_size: 8", "rows per step")
    out.add(1, "epochs: 8", "at most; the best epoch is kept")
    return out.text()
