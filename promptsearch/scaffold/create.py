"""``init_space``: a user's data in, a commented search space that validates as written out.

The steps, one module each: :func:`~promptsearch.scaffold.profile.profile_data` (read the data, find the fields
and classes) -> :func:`~promptsearch.scaffold.plan.plan_data` (few-shot sampling or a carved dev, the folds) ->
:mod:`~promptsearch.scaffold.words` (label words and text lengths, with the installed models' tokenizers) ->
:func:`~promptsearch.scaffold.write.space_text` (the YAML). The text is parsed and its data loaded before it
is written, so a space that ``init`` writes is one that ``validate`` accepts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from promptsearch.errors import ConfigError, SpaceError
from promptsearch.files import creatable_folder, describe, writable_file
from promptsearch.io.data import load_task_data
from promptsearch.scaffold.models import ModelEntry, installed_models, tokenizer
from promptsearch.scaffold.plan import DataPlan, plan_data
from promptsearch.scaffold.profile import DataProfile, profile_data
from promptsearch.scaffold.words import (
    LONG_TOKENS,
    LabelWords,
    ModelTokens,
    TextLengths,
    choose_label_words,
    text_lengths,
)
from promptsearch.scaffold.write import SpaceOptions, space_text
from promptsearch.space.budget import budget_preset
from promptsearch.space.search_space import parse_space
from promptsearch.study.checks import check_space_data

__all__ = ["InitResult", "data_warnings", "default_name", "init_space"]

FEW_ROWS = 8  # a class with fewer labelled rows than this is reported: its score is noise
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_GENERIC = {"train", "dev", "test", "validation", "valid", "data", "dataset", "datasets", "k-shot", "kshot", "split"}


@dataclass(frozen=True)
class InitResult:
    """What :func:`init_space` found and wrote."""

    text: str  # the space, as YAML
    path: Path | None  # where it was written (None: not written)
    name: str
    profile: DataProfile
    plan: DataPlan
    label_words: LabelWords
    lengths: TextLengths | None  # in MiniLM's tokens (words when no tokenizer loaded)
    models: tuple[ModelEntry, ...]
    warnings: tuple[str, ...]

    @property
    def balance(self) -> list[tuple[str, dict[str, int]]]:
        """Rows per class of each split, as read (before any sampling)."""
        return [
            (split.role, {c: split.counts.get(c, 0) for c in self.profile.labels})
            for split in self.profile.splits.values()
        ]

    def next_commands(self) -> list[str]:
        """The commands to run next: the search (saving the chosen model, which the final test evaluation
        trains; without a test split, ``train`` trains it from the exported best prompt), then ``predict``."""
        space = str(self.path) if self.path is not None else f"{self.name}.yaml"
        model = f"runs/{self.name}/model"
        suffix = Path(self.profile.train.source).suffix if self.profile.hub is None else ".jsonl"
        predict = f"promptsearch predict {model} --input NEW_ROWS{suffix} --output predictions.jsonl"
        if self.profile.test is not None:
            return [f"promptsearch run {space} --save-model {model}", predict]
        return [
            f"promptsearch run {space}",
            f"promptsearch train runs/{self.name}/best_prompt.yaml --save-model {model}",
            predict,
        ]


def default_name(data: str | Path) -> str:
    """A study name from the data's file or folder name: ``data/sst2/16-13/train.jsonl`` -> ``sst2`` (split and
    seed folder names are skipped), ``owner/dataset:config`` -> ``dataset-config``."""
    text = str(data)
    path = Path(text).expanduser()
    if not path.exists() and ":" in text and "/" not in text.split(":", 1)[1]:
        text = text.replace(":", "-")
        path = Path(text)
    names = [path.stem if path.suffix else path.name, *(p.name for p in path.absolute().parents)]
    for candidate in names:
        if not candidate or candidate.lower() in _GENERIC or re.fullmatch(r"\d+([-_]\d+)*", candidate):
            continue
        clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", candidate).strip("-_.")
        if clean and _NAME.match(clean):
            return clean
    return "space"


def _check_budget(budget: str | None) -> None:
    """A preset name of :data:`promptsearch.space.budget.BUDGETS` (the one table of presets), or None."""
    if budget is None:
        return
    try:
        budget_preset(budget)
    except ValueError as exc:
        raise ConfigError(f"--budget: {exc}") from None


def _check_out(out: Path, force: bool) -> None:
    kind = describe(out)
    if kind != "missing" and not force:
        raise ConfigError(
            f"--out {out}: the file exists ({kind}); promptsearch init never writes over a file unasked: give "
            "another path with -o, or pass --force to replace it"
        )
    writable_file(out, "--out")
    creatable_folder(out.parent, "--out: the folder")


def _tokenizers(models: Sequence[ModelEntry]) -> tuple[dict[str, ModelTokens], str | None]:
    """How each model reads words (one per distinct model name), and why a tokenizer could not load."""
    out: dict[str, ModelTokens] = {}
    seen: set[str] = set()
    for entry in models:
        if entry.name in seen:
            continue
        seen.add(entry.name)
        try:
            tok = tokenizer(entry.name, entry.head)
        except ConfigError as exc:
            return out, str(exc)
        out[entry.id] = ModelTokens(tok.tokenize, after_space=entry.causal, unknown=tok.unk_token)
    return out, None


def data_warnings(profile: DataProfile, plan: DataPlan, lengths: TextLengths | None, words: LabelWords) -> list[str]:
    """What ``init`` warns about: rare classes, texts in two splits, long texts, classes that are numbers, no test
    split, label words no tokenizer checked (and the plan's own warnings first)."""
    found = list(plan.warnings)
    for label in profile.labels:
        n = plan.labelled[label]
        if n < FEW_ROWS:
            found.append(
                f"class {label!r} has {n} labelled row(s), fewer than {FEW_ROWS}: its share of the score rests on very "
                "few rows; add rows of it if you can"
            )
    keys = {role: {ex.key for ex in split.examples} for role, split in profile.splits.items()}
    roles = list(keys)
    for i, a in enumerate(roles):
        for b in roles[i + 1 :]:
            both = keys[a] & keys[b]
            if both:
                what = "the test score overstates what new rows get" if "test" in (a, b) else "dev scores are lenient"
                found.append(
                    f"{len(both)} text(s) appear in both {a} and {b}: {what}; remove them from one of the two files"
                )
    if lengths is not None and lengths.long_rows:
        found.append(
            f"{lengths.long_rows} of {lengths.measured} rows are longer than {LONG_TOKENS} {lengths.unit} (the longest "
            f"has {lengths.longest}): a prompt over model.max_length drops its demonstrations, then cuts the text"
        )
    if all(re.fullmatch(r"-?\d+(\.\d+)?", label) for label in profile.labels):
        found.append(
            f"the classes are numbers ({', '.join(profile.labels)}): the instruction and label words are made from "
            "them; write words that say what each class means in prompt.label_words and prompt.instruction"
        )
    if profile.test is None:
        found.append(
            "no test split: the report has no test score and no verdict against plain fine-tuning; keep labelled "
            "rows apart in a file and pass it with --test"
        )
    if words.not_checked:
        found.append(f"label words not checked against a tokenizer: {words.not_checked}")
    return found


def init_space(
    data: str | Path,
    *,
    out: str | Path | None = None,
    text: Sequence[str] | None = None,
    label: str | None = None,
    labels: Sequence[str] | None = None,
    test: str | Path | None = None,
    name: str | None = None,
    budget: str | None = None,
    force: bool = False,
) -> InitResult:
    """Read ``data`` and write a commented search space for it to ``out`` (nothing is written when ``out`` is
    None; the text is in the result, its paths relative to the current folder).

    ``data``: a JSONL/JSON/CSV/TSV/Parquet file, a folder of split files (``train.jsonl``, ``dev.jsonl``, ...)
    or a Hub dataset ``owner/name[:config]``. ``text`` (one or two fields), ``label`` and ``labels`` override
    what is guessed; ``test`` is a file kept apart as the test split; ``name`` the study name (default: from the
    data's name); ``budget`` writes ``search.budget``. ``out`` is never replaced unless ``force``.

    >>> result = init_space("reviews.csv", out="reviews.yaml")  # doctest: +SKIP
    >>> result.profile.labels, result.warnings  # doctest: +SKIP
    """
    _check_budget(budget)
    name = name if name is not None else default_name(data)
    if not _NAME.match(name):
        raise ConfigError(f"--name {name!r}: a study name is letters, digits and _.- (starting with a letter or digit)")
    path = Path(out).expanduser() if out is not None else None
    if path is not None:
        _check_out(path, force)
    base = path.parent if path is not None else Path.cwd()
    profile = profile_data(data, text=text, label=label, labels=labels, test=test)
    plan = plan_data(profile)
    models = tuple(installed_models())
    tokenizers, not_checked = _tokenizers(models)
    words = choose_label_words(profile.labels, tokenizers, not_checked=not_checked)
    rows = profile.labelled()
    units = {entry.id: f"{entry.family} tokens" for entry in models}
    lengths = {model: text_lengths(rows, reader.tokenize, units[model]) for model, reader in tokenizers.items()}
    if "minilm" not in lengths:
        lengths["minilm"] = text_lengths(rows, None, "words")
    options = SpaceOptions(name=name, base_dir=base, budget=budget)
    written = space_text(profile, plan, words, models, lengths, options)
    if path is not None:  # before the check: the data's relative paths pass through this folder
        path.parent.mkdir(parents=True, exist_ok=True)
    _self_check(written, path or base / f"{name}.yaml", hub=profile.hub is not None)
    if path is not None:
        with path.open("w" if force else "x", encoding="utf-8") as fh:
            fh.write(written)
    return InitResult(
        text=written,
        path=path,
        name=name,
        profile=profile,
        plan=plan,
        label_words=words,
        lengths=lengths["minilm"],
        models=models,
        warnings=tuple(data_warnings(profile, plan, lengths["minilm"], words)),
    )


def _self_check(text: str, path: Path, *, hub: bool) -> None:
    """Parse the written text and load its data as ``validate`` would; a failure here is a bug of init."""
    try:
        space = parse_space(text, path=path)
    except SpaceError as exc:
        raise RuntimeError(f"promptsearch init wrote a space that does not validate (a bug): {exc}") from None
    if not hub:
        check_space_data(space, load_task_data(space.spec.task, space.base_dir))
