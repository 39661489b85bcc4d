"""Search-space files: the shipped ones validate, and every kind of mistake gets one precise message."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny import MINIMAL_SPACE

from promptsearch.errors import SpaceError
from promptsearch.io.data import load_task_data
from promptsearch.space.dimensions import Categorical, Fixed, FloatRange, IntRange
from promptsearch.space.search_space import load_space, parse_space

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_SPACES = sorted((REPO_ROOT / "search_spaces").rglob("*.yaml"))

BASE = MINIMAL_SPACE  # the cases below append to it, so their first extra line is line 7
TRAIN_KEYS = (
    "method, learning_rate, epochs, batch_size, weight_decay, warmup_ratio, max_grad_norm, "
    "pairs_per_row, logistic_c, lora"
)
WriteSpace = Callable[..., Path]


def assert_one_problem(path: Path, message: str) -> None:
    """``load_space(path)`` fails with exactly ``message`` (and nothing else)."""
    with pytest.raises(SpaceError, match=re.escape(message)) as info:
        load_space(path)
    assert info.value.messages == [message]


# --- the shipped spaces ---------------------------------------------------------------------------


def test_the_shipped_spaces_are_found() -> None:
    assert REPO_ROOT / "search_spaces" / "sst2.yaml" in SHIPPED_SPACES


@pytest.mark.parametrize("path", SHIPPED_SPACES, ids=[p.name for p in SHIPPED_SPACES])
def test_shipped_space_validates_and_its_data_loads(path: Path) -> None:
    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)

    labels = set(space.spec.task.labels)
    assert data.train and data.dev
    assert {ex.label for ex in data.train} == labels
    assert {ex.label for ex in data.dev} <= labels
    if space.spec.task.splits.test is not None:
        assert data.has_test
        assert {ex.label for ex in data.test} <= labels


def test_sst2_space_parameters(repo_root: Path) -> None:
    space = load_space(repo_root / "search_spaces" / "sst2.yaml")
    assert space.name == "sst2"
    assert space.base_dir == repo_root / "search_spaces"
    # Text choices are sampled by key, and the keys resolve to the texts.
    assert space.params["prompt.template"] == Categorical(("cloze", "review", "instructed"))
    assert space.templates["cloze"].source == "{text} It was {label}."
    assert space.label_words["good_bad"] == {"negative": "bad", "positive": "good"}
    assert space.params["prompt.demonstrations.count"] == IntRange(0, 2)
    # a model list: MiniLM fine-tuned (the shared train section) or SetFit's recipe (its own train section)
    assert space.params["model"] == Categorical(("minilm", "minilm-setfit"))
    minilm, setfit = {"model": ("minilm",)}, {"model": ("minilm-setfit",)}
    assert space.params["train.learning_rate"] == FloatRange(1e-5, 2e-4, log=True, when=minilm)
    assert space.params["train.epochs"] == Fixed(5, when=minilm)
    assert space.params["model.minilm-setfit.train.method"] == Categorical(("embedding", "contrastive"), when=setfit)


# --- values: fixed, choice, range -----------------------------------------------------------------


def test_scalar_instead_of_a_range_is_a_fixed_parameter(write_space: WriteSpace) -> None:
    path = write_space(
        BASE
        + "train:\n"
        + "  learning_rate: 3.0e-5\n"
        + "  weight_decay: 1e-5\n"  # YAML 1.1 reads this as the string '1e-5'
        + "  batch_size: [16]\n"  # a list of one is one point, too
    )
    space = load_space(path)
    assert space.params["train.learning_rate"] == Fixed(3e-5)
    assert space.params["train.weight_decay"] == Fixed(1e-5)
    assert space.params["train.batch_size"] == Fixed(16)
    assert "learning_rate" not in space.summary()


def test_summary_lists_searched_parameters_and_counts_fixed_ones(write_space: WriteSpace) -> None:
    path = write_space(
        BASE.replace('"{text} It was {label}."', '["{text} It was {label}.", "Review: {text} Sentiment: {label}"]')
        + "train:\n"
        + "  learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}\n"
        + "  batch_size: [4, 8]\n"
        + "  epochs: 3\n"
    )
    assert load_space(path).summary() == (
        "space 'tiny': 3 searched parameter(s) (template: 2 choices; learning_rate: float [1e-05, 0.001, "
        "log]; "
        "batch_size: 2 choices), 10 fixed"
    )


def test_summary_of_a_space_with_nothing_searched() -> None:
    assert parse_space(BASE).summary() == "space 'tiny': 0 searched parameter(s), 13 fixed"


# --- one test per kind of mistake -----------------------------------------------------------------


def test_unknown_key_suggests_the_closest_and_points_at_its_own_line(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  epochs: 3\n  lerning_rate: 1.0e-5\n")
    assert_one_problem(
        path,
        f"{path}:9: train.lerning_rate: unknown key 'lerning_rate'. did you mean 'learning_rate'? "
        f"Allowed keys here: {TRAIN_KEYS}",
    )


def test_unknown_top_level_key(write_space: WriteSpace) -> None:
    path = write_space(BASE + "serach: {n_trials: 3}\n")
    assert_one_problem(
        path,
        f"{path}:7: serach: unknown key 'serach'. did you mean 'search'? Allowed keys here: name, "
        "description, "
        "task, model, prompt, train, search, baseline",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("train:\n  epochs: many\n", "8: train.epochs: the value must be an integer, but found str 'many'"),
        (
            "search: {n_trials: lots}\n",
            "7: search.n_trials: Input should be a valid integer, unable to parse string as an integer, "
            "but found 'lots'",
        ),
        (
            "train:\n  method: [full, true]\n",
            "8: train.method: choice 1 must be a string, but found bool True",
        ),
    ],
    ids=["dimension", "plain-field", "choice"],
)
def test_wrong_type(write_space: WriteSpace, extra: str, message: str) -> None:
    path = write_space(BASE + extra)
    assert_one_problem(path, f"{path}:{message}")


def test_empty_choice_list(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  batch_size: []\n")
    assert_one_problem(path, f"{path}:8: train.batch_size: the list of choices is empty; give at least one value")


def test_range_with_low_above_high(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  learning_rate: {low: 1.0e-3, high: 1.0e-5}\n")
    assert_one_problem(
        path,
        f"{path}:8: train.learning_rate: low must be <= high, but found low=0.001 > high=1e-05; swap them",
    )


def test_log_range_with_low_not_positive(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  learning_rate: {low: 0, high: 1.0e-3, log: true}\n")
    assert_one_problem(
        path,
        f"{path}:8: train.learning_rate: a log range needs low > 0, but found low=0.0; raise low or set log: false",
    )


def test_template_placeholder_that_is_not_a_data_field(write_space: WriteSpace) -> None:
    path = write_space(BASE.replace("{text} It was", "{txt} It was"))
    assert_one_problem(
        path,
        f"{path}:6: prompt.template: placeholder '{{txt}}' is neither a text field of the task "
        "(task.text_fields: ['text']) nor one of {instruction}, {demos}, {label}. did you mean 'text'?",
    )


def test_template_attribute_access_is_refused(write_space: WriteSpace) -> None:
    path = write_space(BASE.replace("{text} It was", "{text.__class__} It was"))
    assert_one_problem(
        path,
        f"{path}:6: prompt.template: placeholder '{{text.__class__}}' is not allowed in template "
        "'{text.__class__} It was {label}.': attribute access, indexing, conversions and format specs are "
        "refused. "
        "Placeholders are plain names such as {text}; write '{{' and '}}' for literal braces.",
    )


def test_template_without_label_slot(write_space: WriteSpace) -> None:
    path = write_space(BASE.replace(" It was {label}.", " It was fine."))
    assert_one_problem(
        path,
        f"{path}:6: prompt.template: a template needs exactly one {{label}} slot (the answer), but found 0",
    )


def test_named_template_candidate_is_located_by_its_key(write_space: WriteSpace) -> None:
    path = write_space(
        BASE.replace(
            '  template: "{text} It was {label}."\n',
            "  template:\n    a: '{text} {label}'\n    b: '{text}'\n",
        )
    )
    assert_one_problem(
        path,
        f"{path}:8: prompt.template.b: a template needs exactly one {{label}} slot (the answer), but found 0",
    )


def test_template_with_demos_after_the_example(write_space: WriteSpace) -> None:
    path = write_space(BASE.replace("{text} It was", "{text} {demos} It was"))
    assert_one_problem(
        path,
        f"{path}:6: prompt.template: {{instruction}} and {{demos}} must come before the example's fields and "
        "{label}; move them",
    )


def test_label_word_map_missing_a_label(write_space: WriteSpace) -> None:
    path = write_space(BASE + "  label_words: {negative: bad}\n")
    assert_one_problem(
        path,
        f"{path}:7: prompt.label_words.0: no label word for label(s) ['positive']; every label in "
        "task.labels "
        "['negative', 'positive'] needs one",
    )


def test_two_labels_mapped_to_the_same_word(write_space: WriteSpace) -> None:
    path = write_space(BASE + "  label_words:\n    same: {negative: ok, positive: ok}\n")
    assert_one_problem(
        path,
        f"{path}:8: prompt.label_words.same: labels ['negative', 'positive'] share the word 'ok'; "
        "each label needs its own word",
    )


def test_condition_on_an_unknown_parameter(write_space: WriteSpace) -> None:
    path = write_space(
        BASE + "train:\n  method: [full, head]\n  learning_rate: {low: 1.0e-5, high: 1.0e-3, when: "
        "{train.metod: head}}\n"
    )
    assert_one_problem(
        path,
        f"{path}:9: train.learning_rate.when.train.metod: unknown parameter 'train.metod'. "
        "did you mean 'train.method'?",
    )


def test_condition_on_a_value_the_parent_never_takes(write_space: WriteSpace) -> None:
    path = write_space(
        BASE + "train:\n  method: [full, head]\n  weight_decay: {low: 0.0, high: 0.1, when: {train.method: lora}}\n"
    )
    assert_one_problem(
        path,
        f"{path}:9: train.weight_decay.when.train.method: ['lora'] can never be a value of 'train.method' "
        "(its values: ['full', 'head'])",
    )


def test_condition_on_a_later_parameter(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  method: {choices: [full, head], when: {train.epochs: 3}}\n  epochs: [3, 5]\n")
    assert_one_problem(
        path,
        f"{path}:8: train.method.when.train.epochs: 'train.epochs' is sampled after 'train.method'; "
        "a condition can only use earlier parameters",
    )


def test_unknown_pruner_option(write_space: WriteSpace) -> None:
    path = write_space(
        BASE + "search:\n  pruner:\n    type: median\n    options:\n      n_warmup_steps: 2\n      "
        "n_startup_trails: 3\n"
    )
    assert_one_problem(
        path,
        f"{path}:12: search.pruner.options.n_startup_trails: unknown option of the median pruner. "
        "did you mean 'n_startup_trials'? Allowed: n_startup_trials, n_warmup_steps, interval_steps, "
        "n_min_trials",
    )


def test_pruner_option_value_refused_by_optuna(write_space: WriteSpace) -> None:
    path = write_space(BASE + "search:\n  pruner: {type: median, options: {n_warmup_steps: -1}}\n")
    with pytest.raises(SpaceError, match=re.escape(f"{path}:8: search.pruner.options: Optuna refused these options: ")):
        load_space(path)


def test_baseline_values_are_checked_when_the_space_is_loaded(write_space: WriteSpace) -> None:
    path = write_space(BASE + "baseline:\n  epochs: 3\n  learning_rate: fast\n")
    assert_one_problem(
        path,
        f"{path}:9: baseline.learning_rate: Input should be a valid number, unable to parse string as a "
        "number, "
        "but found 'fast'",
    )


def test_baseline_unknown_key(write_space: WriteSpace) -> None:
    path = write_space(BASE + "baseline: {lerning_rate: 1.0e-5}\n")
    assert_one_problem(
        path,
        f"{path}:7: baseline.lerning_rate: unknown training key. did you mean 'learning_rate'? "
        f"Allowed: {TRAIN_KEYS.removesuffix(', lora')}",
    )


def test_invalid_yaml_names_the_line(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  epochs: 3\n    batch_size: 8\n")
    assert_one_problem(path, f"{path}:9: not valid YAML: mapping values are not allowed here")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank", "comment"])
def test_empty_file(write_space: WriteSpace, text: str) -> None:
    path = write_space(text)
    with pytest.raises(SpaceError, match=re.escape(f"{path}: the file is empty; ")):
        load_space(path)


def test_missing_required_key_points_at_its_section(write_space: WriteSpace) -> None:
    path = write_space(BASE.replace("  data: {dir: sst2}\n", ""))
    assert_one_problem(path, f"{path}:2: task.data: required key is missing")


def test_top_level_must_be_a_mapping(write_space: WriteSpace) -> None:
    path = write_space("- name: tiny\n")
    assert_one_problem(path, f"{path}: expected a mapping at the top level, but found list")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(
        SpaceError, match=re.escape(f"{missing}: no such search-space file; pass the path of a YAML file")
    ):
        load_space(missing)
    with pytest.raises(SpaceError, match=re.escape(f"{tmp_path}: no such search-space file (it is a folder)")):
        load_space(tmp_path)


def test_every_problem_is_reported_at_once_with_file_and_line(write_space: WriteSpace) -> None:
    path = write_space(
        BASE
        + "  label_words: {negative: ok, positive: ok}\n"  # line 7
        + "search:\n"
        + "  seed: 1\n"
        + "  pruner:\n"
        + "    type: median\n"
        + "    options: {n_startup_trails: 3}\n"  # line 12
    )
    with pytest.raises(SpaceError) as info:
        load_space(path)
    located = [re.match(r"(.+?):(\d+): ([\w.]+): ", m).groups() for m in info.value.messages]  # type: ignore[union-attr]
    assert located == [
        (str(path), "7", "prompt.label_words.0"),
        (str(path), "12", "search.pruner.options.n_startup_trails"),
    ]
    assert str(info.value) == "\n".join(info.value.messages)


def test_parse_space_without_a_file_says_string() -> None:
    with pytest.raises(SpaceError, match=re.escape("<string>:3: train.epochs: the value must be an integer")):
        parse_space("name: tiny\ntrain:\n  epochs: many\n")


# --- light modules --------------------------------------------------------------------------------


def test_light_modules_do_not_import_torch() -> None:
    """``promptsearch validate`` (load, sample, render) must start instantly: no torch or transformers."""
    modules = [
        "space.config",
        "io.data",
        "io.export",
        "prompts.demos",
        "space.dimensions",
        "errors",
        "prompts.render",
        "space.registry",
        "space.sampling",
        "space.search_space",
        "space.spec",
        "space.template",
    ]
    code = (
        "import sys\n"
        + "".join(f"import promptsearch.{m}\n" for m in modules)
        + "from promptsearch.space.search_space import parse_space\n"
        + "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        + "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr


# --- text choices, allowed values, methods --------------------------------------------------------


def test_bare_yes_in_label_words_gets_the_yaml_boolean_hint(write_space: WriteSpace) -> None:
    text = BASE + "  label_words: {negative: no, positive: yes}\n"
    path = write_space(text)
    assert_one_problem(
        path,
        f"{path}:7: prompt.label_words: the word of label 'negative' must be a text, but found bool False "
        '(YAML reads bare yes/no/true/false/on/off as booleans: quote the word, e.g. "yes")',
    )


def test_template_of_the_wrong_type_is_one_message(write_space: WriteSpace) -> None:
    path = write_space(BASE.replace('template: "{text} It was {label}."', "template: 5"))
    assert_one_problem(
        path, f"{path}:6: prompt.template: expected a text, a list of texts or a mapping name -> text, but found int 5"
    )


def test_unknown_selection_suggests_the_closest(write_space: WriteSpace) -> None:
    path = write_space(BASE + "  demonstrations: {count: 1, selection: [random, similr]}\n")
    assert_one_problem(
        path,
        f"{path}:7: prompt.demonstrations.selection: 'similr' is not one of the supported values "
        "['random', 'balanced', 'similar', 'fixed']. did you mean 'similar'?",
    )


def test_unknown_method_lists_the_available_ones(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  method: [full, qlora]\n")
    assert_one_problem(
        path,
        f"{path}:8: train.method: 'qlora' is not one of the supported values "
        "['full', 'lora', 'head', 'bitfit', 'none', 'embedding', 'contrastive']. did you mean 'lora'?",
    )


def test_untrained_classification_head_and_chat_outside_causal_are_refused(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  method: [full, none]\n")
    with pytest.raises(SpaceError, match=r"method 'none' \(no training\) needs model\.head 'mlm' or 'causal'"):
        load_space(path)
    path = write_space(BASE.replace("prompt:\n", "prompt:\n  chat: [true, false]\n"))
    with pytest.raises(SpaceError, match=r"chat templates apply to model\.head 'causal' only"):
        load_space(path)
    path = write_space(BASE + "model:\n  head: causal\ntrain:\n  method: [lora, head]\n")
    with pytest.raises(SpaceError, match="method 'head' trains a head of its own"):
        load_space(path)


def test_lora_parameters_exist_only_where_lora_can_run(write_space: WriteSpace) -> None:
    plain = load_space(write_space(BASE))
    assert not any(k.startswith("train.lora.") for k in plain.params)
    lora = load_space(write_space(BASE + "train:\n  method: [full, lora]\n  lora:\n    r: [4, 8]\n"))
    assert lora.params["train.lora.r"].values() == (4, 8)
    assert lora.params["train.lora.alpha"].values() == (16,)


def test_causal_templates_read_every_field_before_the_label(write_space: WriteSpace) -> None:
    text = BASE.replace('"{text} It was {label}."', '"Sentiment {label}. Review: {text}"') + "model:\n  head: causal\n"
    path = write_space(text)
    assert_one_problem(
        path,
        f"{path}:6: prompt.template: with model.head 'causal' the query ends where {{label}} starts, so {{text}} "
        "after it would never be read; put every text field before {label}",
    )
    ok = BASE.replace('"{text} It was {label}."', '"Sentiment {label}. Review: {text}"')  # fine for a mask slot
    load_space(write_space(ok + "model:\n  head: mlm\n"))


def test_zero_epochs_need_a_prompt_head(write_space: WriteSpace) -> None:
    path = write_space(BASE + "train:\n  epochs: {low: 0, high: 3}\n")
    with pytest.raises(SpaceError, match=r"0 epochs would score a new, untrained classification head"):
        load_space(path)
    load_space(write_space(BASE + "model:\n  head: mlm\ntrain:\n  epochs: {low: 0, high: 3}\n"))
