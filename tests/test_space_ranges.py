"""One source of truth for value ranges: a space that validates never fails later in sampling, rendering or config.

The trial models (promptsearch/space/config.py) judge every value a space can hand a trial: a fixed value, each
choice and both ends of a range. The shipped spaces and random mutations of them (out-of-range values included) are
parsed; a refused one is refused with a SpaceError whose every line names the file and a key, and an accepted one is
sampled in a real in-memory Optuna study with its own sampler and pruner, rendered, and built into trial configs.
No model is loaded: rendering needs only the rows, and the trial configs are pydantic models.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import fuzz

from promptsearch.errors import SpaceError
from promptsearch.io.data import Example
from promptsearch.prompts.render import PromptRenderer
from promptsearch.space.config import (
    MAX_BATCH_SIZE,
    MAX_DEMONSTRATIONS,
    MAX_EPOCHS,
    MAX_LORA_ALPHA,
    MAX_LORA_RANK,
    SEED_MAX,
    DemoConfig,
    LoraConfig,
    PromptConfig,
    TrainConfig,
    refusal,
)
from promptsearch.space.dimensions import Fixed, parse_dimension
from promptsearch.space.registry import PRUNERS, SAMPLERS, head_traits
from promptsearch.space.sampling import baseline_config, sample_config
from promptsearch.space.search_space import SearchSpace, parse_space
from promptsearch.space.spec import METHODS, DemoSpec, LoraSpec, PromptSpec, TrainSpec
from promptsearch.study.pareto import objective_directions
from promptsearch.study.storage import make_pruner, make_sampler
from promptsearch.study.workers import worker_seed

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "search_spaces").rglob("*.yaml"))
SECTIONS = ("name", "description", "task", "model", "prompt", "train", "search", "baseline")
TRAIN_NUMBERS = ("learning_rate", "epochs", "batch_size", "weight_decay", "warmup_ratio", "max_grad_norm")
EMBEDDING_NUMBERS = ("pairs_per_row", "logistic_c")
LORA_NUMBERS = ("r", "alpha", "dropout")
PRUNER_OPTIONS = (
    "n_startup_trials",
    "n_warmup_steps",
    "interval_steps",
    "n_min_trials",
    "min_resource",
    "max_resource",
    "reduction_factor",
    "min_early_stopping_rate",
    "bootstrap_count",
    "n_startup",
)


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


# --- what an accepted space must survive ----------------------------------------------------------


def _rows(space: SearchSpace) -> list[Example]:
    """Three rows per label with the task's text fields: a demonstration pool and queries, no data files."""
    labels, fields = space.spec.task.labels, space.spec.task.text_fields
    return [
        Example(fields={f: f"{f} {i} of {label}" for f in fields}, label=label) for label in labels for i in range(3)
    ]


def _with_candidates(space: SearchSpace) -> SearchSpace:
    """What generation would add (instructions, label-word maps), so that an ``auto`` space samples as in a run."""
    if not space.needs_generation:
        return space
    labels = space.spec.task.labels
    return space.with_candidates(
        {
            "instructions": {"auto-1": "Classify the text."},
            "label_words": {"auto-1": {label: f"word{i}" for i, label in enumerate(labels)}},
        }
    )


def _exercise(space: SearchSpace, trials: int) -> None:
    """Sample ``trials`` points with the space's own sampler and pruner, render them, and replay each one."""
    space = _with_candidates(space)
    directions = objective_directions(space.spec.search)
    study = optuna.create_study(
        sampler=make_sampler(space, space.spec.search.seed), pruner=make_pruner(space), directions=directions
    )
    rows = _rows(space)
    for number in range(trials):
        trial = study.ask()
        config = sample_config(trial, space)  # builds the pydantic trial config: PromptConfig, TrainConfig, ...
        renderer = PromptRenderer(config.prompt, rows, stop_at_slot=head_traits(config.head).continuation)
        assert all(r.text for r in renderer.render_all(rows))
        assert sample_config(optuna.trial.FixedTrial(trial.params), space) == config  # an exported config re-runs
        if len(directions) == 1:
            for step in range(1, 4):  # the pruner sees what a trial reports after each epoch
                trial.report(0.5 + 0.1 * ((number * step) % 4), step)
                if trial.should_prune():
                    break
            study.tell(trial, 0.5 + 0.01 * number)
        else:
            study.tell(trial, [0.5 + 0.01 * number, *[10.0 + number] * (len(directions) - 1)])
    baseline_config(space)


def _refused_by_key(exc: SpaceError, path: Path) -> None:
    """Every line names the file, then (after an optional line number) a key of the space."""
    pattern = re.compile(rf"^{re.escape(str(path))}(:\d+)?: ([^:\s]+): \S")
    assert exc.messages
    for line in exc.messages:
        found = pattern.match(line)
        assert found is not None, line
        assert found.group(2).split(".")[0] in (*SECTIONS, "(top level)"), line


@pytest.mark.parametrize("space_file", SPACES, ids=[str(p.relative_to(REPO / "search_spaces")) for p in SPACES])
def test_every_shipped_space_samples_renders_and_builds_trial_configs(space_file: Path) -> None:
    space = parse_space(space_file.read_text(encoding="utf-8"), path=space_file)
    _exercise(space, trials=12)


# --- fuzzed spaces: shipped spaces with numbers, ranges and choices mutated -------------------------

numbers = st.one_of(
    st.integers(1, 40),
    st.floats(0.001, 0.999),
    st.integers(-3, 0),
    st.sampled_from([-1, 0, 1, 2, 2**31, SEED_MAX, SEED_MAX + 1, 10**12, -(10**12), 10**400]),
    st.sampled_from([0.0, -0.0, 1e-320, 1e-5, 0.05, 0.5, 0.999, 1.0, 1.5, 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
)
choices = st.lists(numbers, min_size=1, max_size=4)
dimensions = st.one_of(
    numbers,
    choices,
    st.fixed_dictionaries({"low": numbers, "high": numbers}, optional={"log": st.booleans(), "step": numbers}),
    st.fixed_dictionaries({"choices": choices}),
    st.fixed_dictionaries({"value": numbers}),
)
methods = st.one_of(st.sampled_from(METHODS), st.lists(st.sampled_from(METHODS), min_size=1, max_size=3, unique=True))
pruners = st.fixed_dictionaries(
    {"type": st.sampled_from(list(PRUNERS))},
    optional={
        "options": st.dictionaries(st.sampled_from(PRUNER_OPTIONS), st.one_of(numbers, st.just("auto")), max_size=3)
    },
)


def _targets(doc: dict[str, Any]) -> list[tuple[tuple[Any, ...], st.SearchStrategy[Any]]]:
    """The keys a mutation may set (present or not), each with what to draw for it."""
    train = [*TRAIN_NUMBERS, *EMBEDDING_NUMBERS]
    out: list[tuple[tuple[Any, ...], st.SearchStrategy[Any]]] = [
        *((("train", k), dimensions) for k in train),
        *((("train", "lora", k), dimensions) for k in LORA_NUMBERS),
        (("train", "method"), methods),
        (("prompt", "demonstrations", "count"), dimensions),
        *((("baseline", k), numbers) for k in train),
        (("search", "seed"), numbers),
        (("search", "n_trials"), numbers),
        (("search", "sampler"), st.sampled_from([*SAMPLERS, "cmaes"])),
        (("search", "pruner"), pruners),
    ]
    models = doc.get("model")
    for i in range(len(models) if isinstance(models, list) else 0):
        out += [(("model", i, "train", k), dimensions) for k in train]
        out += [(("model", i, "train", "method"), methods), (("model", i, "train", "lora", "r"), dimensions)]
    return out


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    parent: Any = doc
    for key in path[:-1]:
        if isinstance(parent, dict) and not isinstance(parent.get(key), (dict, list)):
            parent[key] = {}
        parent = parent[key]
    parent[path[-1]] = value
    return doc


@fuzz(60, 3000)
@given(data=st.data())
def test_a_fuzzed_space_is_refused_by_key_or_survives_sampling(data: st.DataObject) -> None:
    space_file = data.draw(st.sampled_from(SPACES))
    doc = yaml.safe_load(space_file.read_text(encoding="utf-8"))
    targets = _targets(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        path, values = data.draw(st.sampled_from(targets))
        doc = _set(doc, path, data.draw(values))
    try:
        space = parse_space(yaml.safe_dump(doc, allow_unicode=True), path=space_file)
    except SpaceError as exc:
        _refused_by_key(exc, space_file)
        return
    _exercise(space, trials=4)


# --- the largest values validate takes are ones every sampler can sample ----------------------------

WIDEST = f"""\
name: widest
task: {{data: {{dir: sst2}}, labels: [negative, positive]}}
model: {{head: mlm}}
prompt:
  template: "{{demos}}{{text}} It was {{label}}."
  label_words: {{negative: bad, positive: good}}
  demonstrations: {{count: {{low: 0, high: {MAX_DEMONSTRATIONS}}}}}
train:
  method: [full, lora, none]
  epochs: {{low: 0, high: {MAX_EPOCHS}}}
  batch_size: {{low: 1, high: {MAX_BATCH_SIZE}, log: true}}
  learning_rate: {{low: 1.0e-300, high: 1.0e+300, log: true}}
  weight_decay: {{low: 0, high: 1.0e+300}}
  warmup_ratio: {{low: 0, high: 1}}
  lora: {{r: {{low: 1, high: {MAX_LORA_RANK}}}, alpha: {{low: 1, high: {MAX_LORA_ALPHA}}}, dropout: [0, 0.999]}}
search: {{sampler: SAMPLER, seed: {SEED_MAX}, pruner: {{type: none}}}}
"""


@pytest.mark.parametrize("sampler", ["tpe", "random", "gp"])
def test_the_widest_ranges_validate_takes_are_sampled_by_every_sampler(sampler: str, tmp_path: Path) -> None:
    # Optuna's GP sampler lists every value of an int range, so the upper bounds keep that list small
    space = parse_space(WIDEST.replace("SAMPLER", sampler), path=tmp_path / "widest.yaml")
    _exercise(space, trials=12)  # past every sampler's random start-up trials (gp: 10)


# --- the checks, one by one, with their messages ----------------------------------------------------

BASE = """\
name: ranges
task:
  data: {dir: sst2}
  labels: [negative, positive]
prompt:
  template: "{text} It was {label}."
train:
  method: [full, lora]
"""


def _error(text: str, path: Path) -> str:
    with pytest.raises(SpaceError) as caught:
        parse_space(text, path=path)
    _refused_by_key(caught.value, path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "  warmup_ratio: 2\n",
            ":9: train.warmup_ratio: found 2.0, but a trial's warmup_ratio should be less than or equal to 1; "
            "change the value",
        ),
        (
            "  batch_size: [0, 8]\n",
            ":9: train.batch_size: choice 0 is 0, but a trial's batch_size should be greater than or equal to 1; "
            "change or remove that choice",
        ),
        (
            "  learning_rate:\n    low: 0\n    high: 0.001\n",
            ":10: train.learning_rate.low: the range's low is 0.0, but a trial's learning_rate should be greater "
            "than 0; change low so that every value of the range is valid",
        ),
        (
            "  epochs: {low: 1, high: 20000}\n",
            ":9: train.epochs.high: the range's high is 20000, but a trial's epochs should be less than or "
            "equal to 10000; change high so that every value of the range is valid",
        ),
        (
            "  lora: {dropout: {choices: [0.1, 1]}}\n",
            ":9: train.lora.dropout: choice 1 is 1.0, but a trial's dropout should be less than 1; change or remove "
            "that choice",
        ),
        (
            "prompt:\n  template: '{text} It was {label}.'\n  demonstrations: {count: {low: -3, high: 1}}\n",
            ":9: prompt.demonstrations.count.low: the range's low is -3, but a trial's count should be greater "
            "than or equal to 0; change low so that every value of the range is valid",
        ),
        ("search: {seed: -1}\n", ":9: search.seed: Input should be greater than or equal to 0, but found -1"),
        (
            "search: {seed: 4294967296}\n",
            ":9: search.seed: Input should be less than or equal to 4294967295, but found 4294967296",
        ),
        ("baseline: {learning_rate: .inf}\n", ":9: baseline.learning_rate: Input should be a finite number"),
        (
            "model:\n  - {name: default, id: a, train: {pairs_per_row: 0}}\n",
            ":10: model.0.train.pairs_per_row: found 0, but a trial's pairs_per_row should be greater than or equal "
            "to 1; change the value",
        ),
    ],
)
def test_a_value_no_trial_takes_is_refused_with_its_key_and_line(
    extra: str, expected: str, write_space: Any, tmp_path: Path
) -> None:
    text = BASE + extra
    if extra.startswith("prompt:"):
        text = text.replace('prompt:\n  template: "{text} It was {label}."\n', "")
    path = write_space(text)
    assert expected in _error(path.read_text(), path)


@fuzz(40)
@given(value=st.one_of(st.integers(max_value=-1), st.integers(min_value=SEED_MAX + 1)))
def test_seeds_outside_numpys_range_are_refused(value: int, tmp_path: Path) -> None:
    for section in (
        "search: {seed: %d}\n",
        "task:\n  data: {dir: sst2}\n  labels: [a, b]\n  few_shot: {k: 2, seed: %d}\n",
    ):
        text = BASE + section % value
        if section.startswith("task"):
            text = text.replace("task:\n  data: {dir: sst2}\n  labels: [negative, positive]\n", "")
        message = _error(text, tmp_path / "s.yaml")
        assert "seed: Input should be" in message and f"but found {value}" in message


@fuzz(40)
@given(seed=st.integers(0, SEED_MAX), index=st.integers(0, 64))
def test_every_worker_seed_is_one_the_sampler_takes(seed: int, index: int) -> None:
    space = parse_space(BASE + f"search: {{seed: {seed}}}\n", path=Path("s.yaml"))
    make_sampler(space, worker_seed(seed, index))  # numpy's RandomState refuses a seed outside [0, 2**32 - 1]
    assert worker_seed(seed, 0) == seed


def test_a_range_is_listed_lazily_and_one_too_long_to_list_is_refused(tmp_path: Path) -> None:
    space = parse_space(BASE + "  epochs: {low: 1, high: 10000}\n", path=tmp_path / "s.yaml")
    assert space.params["train.epochs"].values() == range(1, 10001)  # lazily: membership costs nothing
    too_many = "this range holds more than the 100000 values a range in steps may hold (Optuna's GP sampler lists"
    for dim in ("epochs: {low: 1, high: 1000000000000000000000}", "learning_rate: {low: 1, high: 2, step: 1.0e-31}"):
        message = _error(BASE + f"  {dim}\n", tmp_path / "s.yaml")
        assert f":9: train.{dim.split(':')[0]}: {too_many}" in message
    with pytest.raises(ValueError, match="must be a finite number"):  # no OverflowError from float(10**400)
        parse_dimension(10**400, "float")


# --- pruner and sampler options, by the constructor's own signature ---------------------------------


@pytest.mark.parametrize(
    ("pruner", "expected"),
    [
        (
            "{type: none, options: {n_startup_trials: 3}}",
            "search.pruner.options.n_startup_trials: the none pruner takes no options; remove search.pruner.options",
        ),
        (
            "{type: median, options: {n_startup_trials: 1.5}}",
            "search.pruner.options.n_startup_trials: Input should be a valid integer, but found 1.5",
        ),
        (
            "{type: median, options: {n_warmup_step: 1}}",
            "search.pruner.options.n_warmup_step: unknown option of the median pruner. did you mean "
            "'n_warmup_steps'? Allowed: n_startup_trials, n_warmup_steps, interval_steps, n_min_trials",
        ),
        (
            "{type: hyperband, options: {reduction_factor: 1}}",
            "search.pruner.options: Optuna refused these options:",
        ),
    ],
)
def test_pruner_options_are_checked_against_the_pruner(pruner: str, expected: str, tmp_path: Path) -> None:
    message = _error(BASE + f"search: {{pruner: {pruner}}}\n", tmp_path / "s.yaml")
    assert f"s.yaml:9: {expected}" in message


def test_a_sampler_that_cannot_be_made_is_refused_by_validate(tmp_path: Path) -> None:
    def needs_a_package(seed: int, n_trials: int) -> Any:
        raise ImportError("No module named 'cmaes'")

    with SAMPLERS.temporary():
        SAMPLERS.register("needs-cmaes", needs_a_package)
        message = _error(BASE + "search: {sampler: needs-cmaes}\n", tmp_path / "s.yaml")
    assert (
        ":9: search.sampler: the needs-cmaes sampler cannot be used (No module named 'cmaes'); install what it "
        "needs, or use another sampler (tpe, random, gp, cmaes)" in message
    )


# --- the spec's parameters are the trial models' fields ---------------------------------------------


@pytest.mark.parametrize(
    ("spec", "trial"),
    [(TrainSpec, TrainConfig), (LoraSpec, LoraConfig), (DemoSpec, DemoConfig), (PromptSpec, PromptConfig)],
)
def test_every_searched_parameter_is_the_trial_field_of_its_name(spec: Any, trial: Any) -> None:
    """A parameter's values are judged by the trial field of the same name, whose default is the spec's own."""
    assert spec.trial_model is trial
    dims = {name: f.default for name, f in spec.model_fields.items() if isinstance(f.default, Fixed)}
    assert dims and set(dims) <= set(trial.model_fields)
    for name, default in dims.items():
        assert default.value == trial.model_fields[name].default, name
        assert refusal(trial, name, default.value) is None, name


# --- what trials derive from the seed, and what needs the data ---------------------------------------


def test_a_trial_seed_beyond_numpys_range_fits_the_logistic_head(tiny_model: Path) -> None:
    import numpy as np

    from promptsearch.models.device import resolve_device
    from promptsearch.models.embedding import fit_logistic_head
    from promptsearch.models.runtime import ModelRuntime
    from promptsearch.space.spec import ModelSpec

    runtime = ModelRuntime(
        ModelSpec(name=str(tiny_model), head="embedding"), ["a", "b"], resolve_device("cpu"), head="embedding"
    )
    model = runtime.restore(seed=0, train=TrainConfig(method="embedding"))
    vectors = np.random.default_rng(0).normal(size=(8, 32))
    trial_seed = SEED_MAX * 100_003 + 7  # Objective.seed_for with the largest search.seed
    fit_logistic_head(model, vectors, [0, 1] * 4, c=1.0, seed=trial_seed)


def test_more_folds_than_the_data_holds_is_refused_by_validate(write_space: Any) -> None:
    from promptsearch.io.data import load_task_data
    from promptsearch.study.checks import check_space_data

    path = write_space(BASE + "search: {evaluation: {folds: 40}}\n")
    space = parse_space(path.read_text(), path=path)
    with pytest.raises(SpaceError, match=re.escape(f"{path}: search.evaluation.folds: search.evaluation.folds is 40")):
        check_space_data(space, load_task_data(space.spec.task, space.base_dir))
