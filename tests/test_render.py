"""Prompt rendering on real SST-2 / RTE rows: the layout rules, gold label words in demos, and truncation."""

from __future__ import annotations

import pytest

from promptsearch.io.data import Example, TaskData
from promptsearch.prompts.demos import get_selector
from promptsearch.prompts.render import PromptRenderer
from promptsearch.space.config import DemoConfig, PromptConfig

INSTRUCTION = "Is the sentiment of this movie review positive or negative?"
WORDS = {"negative": "terrible", "positive": "great"}
MASK = "[MASK]"


def config(
    template: str | None,
    *,
    instruction: str = INSTRUCTION,
    count: int = 2,
    selection: str = "balanced",
    separator: str = "\n",
    seed: int = 0,
) -> PromptConfig:
    return PromptConfig(
        instruction=instruction,
        template=template,
        label_words=WORDS,
        demonstrations=DemoConfig(count=count, selection=selection, separator=separator),
        seed=seed,
    )


def words(text: str) -> int:
    """Token counter for truncation tests: one token per whitespace-separated word."""
    return len(text.split())


def cloze(ex: Example, label: str) -> str:
    return f"{ex.fields['text']} It was {label}."


def test_instruction_goes_first_when_the_template_has_no_placeholder(sst2_data: TaskData) -> None:
    cfg = config("{text} It was {label}.")
    query = sst2_data.dev[0]
    rendered = PromptRenderer(cfg, sst2_data.train, slot=MASK).render(query)

    expected_demos = get_selector("balanced", sst2_data.train, seed=0).select(query, 2)
    assert rendered.demos == tuple(expected_demos)
    assert rendered.text == (
        f"{INSTRUCTION}\n" + "".join(cloze(d, WORDS[d.label]) + "\n" for d in expected_demos) + cloze(query, MASK)
    )
    assert rendered.label == query.label
    assert rendered.demos_dropped == 0


def test_demos_show_their_gold_label_words(sst2_data: TaskData) -> None:
    renderer = PromptRenderer(config("Review: {text}\nSentiment: {label}", count=4), sst2_data.train, slot=MASK)
    for query in sst2_data.dev:
        rendered = renderer.render(query)
        for demo in rendered.demos:
            assert f"Review: {demo.fields['text']}\nSentiment: {WORDS[demo.label]}\n" in rendered.text
        assert rendered.text.endswith(f"Review: {query.fields['text']}\nSentiment: {MASK}")


def test_placeholders_put_instruction_and_demos_where_written(sst2_data: TaskData) -> None:
    cfg = config("{instruction}\nExamples:\n{demos}Now: {text} All in all, it was {label}.", separator=" | ")
    query = sst2_data.dev[3]
    rendered = PromptRenderer(cfg, sst2_data.train, slot=MASK).render(query)
    demo_text = "".join(f"Now: {d.fields['text']} All in all, it was {WORDS[d.label]}. | " for d in rendered.demos)
    assert len(rendered.demos) == 2
    assert rendered.text == (
        f"{INSTRUCTION}\nExamples:\n{demo_text}Now: {query.fields['text']} All in all, it was {MASK}."
    )


def test_demos_placeholder_without_instruction_placeholder(sst2_data: TaskData) -> None:
    cfg = config("Examples:\n{demos}{text} It was {label}.")
    query = sst2_data.dev[1]
    rendered = PromptRenderer(cfg, sst2_data.train, slot=MASK).render(query)
    demo_text = "".join(cloze(d, WORDS[d.label]) + "\n" for d in rendered.demos)
    assert rendered.text == f"{INSTRUCTION}\nExamples:\n{demo_text}{cloze(query, MASK)}"


def test_empty_instruction_leaves_no_blank_line(sst2_data: TaskData) -> None:
    query = sst2_data.dev[0]
    plain_slot = PromptRenderer(config("{text} It was {label}.", instruction="", count=0), sst2_data.train, slot=MASK)
    assert plain_slot.render(query).text == cloze(query, MASK)
    with_placeholder = PromptRenderer(config("{instruction}\n{text} It was {label}.", instruction="", count=0), [])
    assert with_placeholder.render(query).text == cloze(query, "")


def test_no_demonstrations_when_count_is_zero(sst2_data: TaskData) -> None:
    rendered = PromptRenderer(config("{text} It was {label}.", count=0), sst2_data.train).render(sst2_data.dev[0])
    assert rendered.demos == ()
    assert rendered.text == f"{INSTRUCTION}\n{cloze(sst2_data.dev[0], '')}"


def test_rendering_is_deterministic(sst2_data: TaskData) -> None:
    cfg = config("{text} It was {label}.", count=3, selection="random", seed=5)
    first = PromptRenderer(cfg, sst2_data.train, slot=MASK).render_all(sst2_data.dev)
    second = PromptRenderer(cfg, sst2_data.train, slot=MASK).render_all(sst2_data.dev)
    assert first == second
    reseeded = PromptRenderer(cfg.model_copy(update={"seed": 6}), sst2_data.train, slot=MASK).render_all(sst2_data.dev)
    assert [r.text for r in reseeded] != [r.text for r in first]


def test_training_rows_never_see_themselves(sst2_data: TaskData) -> None:
    renderer = PromptRenderer(config("{text} It was {label}.", count=4, selection="similar"), sst2_data.train)
    for row in sst2_data.train:
        rendered = renderer.render(row)
        assert row not in rendered.demos
        assert rendered.text.count(row.fields["text"]) == 1


# --- truncation -----------------------------------------------------------------------------------


def test_truncation_drops_demonstrations_from_the_end_first(sst2_data: TaskData) -> None:
    cfg = config("{text} It was {label}.", count=4, selection="random")
    query = sst2_data.dev[2]
    full = PromptRenderer(cfg, sst2_data.train, slot=MASK).render(query)
    assert len(full.demos) == 4
    two_demos = (
        f"{INSTRUCTION}\n" + "".join(cloze(d, WORDS[d.label]) + "\n" for d in full.demos[:2]) + cloze(query, MASK)
    )

    fitted = PromptRenderer(cfg, sst2_data.train, slot=MASK, count_tokens=words, max_length=words(two_demos)).render(
        query
    )
    assert fitted.text == two_demos
    assert fitted.demos == full.demos[:2]
    assert fitted.demos_requested == 4
    assert fitted.demos_dropped == 2
    assert not fitted.query_truncated


def test_truncation_then_cuts_the_query_by_words(sst2_data: TaskData) -> None:
    cfg = config("{text} It was {label}.", count=4)
    query = max(sst2_data.dev, key=lambda ex: words(ex.fields["text"]))
    overhead = words(f"{INSTRUCTION}\nIt was {MASK}.")
    renderer = PromptRenderer(cfg, sst2_data.train, slot=MASK, count_tokens=words, max_length=overhead + 5)
    rendered = renderer.render(query)
    kept = " ".join(query.fields["text"].split()[:5])
    assert rendered.demos == ()
    assert rendered.demos_dropped == 4
    assert rendered.query_truncated
    assert rendered.text == f"{INSTRUCTION}\n{kept} It was {MASK}."
    assert words(rendered.text) == overhead + 5


def test_a_prompt_that_fits_is_left_alone(sst2_data: TaskData) -> None:
    cfg = config("{text} It was {label}.", count=4)
    query = sst2_data.dev[0]
    free = PromptRenderer(cfg, sst2_data.train, slot=MASK).render(query)
    limited = PromptRenderer(cfg, sst2_data.train, slot=MASK, count_tokens=words, max_length=words(free.text)).render(
        query
    )
    assert limited == free


def test_pair_truncation_cuts_the_longest_text(rte_train: list[Example]) -> None:
    cfg = PromptConfig(
        template="{text_a} Question: {text_b} True or False? {label}",
        label_words={"entailment": "True", "not_entailment": "False"},
    )
    query = rte_train[0]
    a, b = query.fields["text_a"], query.fields["text_b"]
    assert words(a) > words(b) + 3
    limit = words(b) + 3 + 4 + 1  # 3 words of text_a, the template's 4 words, the slot
    rendered = PromptRenderer(cfg, [], slot=MASK, count_tokens=words, max_length=limit).render(query)
    assert rendered.query_truncated
    assert rendered.text == f"{' '.join(a.split()[:3])} Question: {b} True or False? {MASK}"


# --- plain fine-tuning ----------------------------------------------------------------------------


def test_plain_config_yields_the_text_alone(sst2_data: TaskData) -> None:
    query = sst2_data.dev[0]
    cfg = PromptConfig(demonstrations=DemoConfig(count=4), label_words=WORDS)
    rendered = PromptRenderer(cfg, sst2_data.train, slot=MASK).render(query)
    assert cfg.is_plain
    assert (rendered.text, rendered.text_pair, rendered.label, rendered.demos) == (
        query.fields["text"],
        None,
        query.label,
        (),
    )
    # without a template (the embedding head) an instruction goes before the text, and the config is not plain
    instructed = cfg.model_copy(update={"instruction": INSTRUCTION})
    rendered = PromptRenderer(instructed, sst2_data.train, slot=MASK).render(query)
    assert not instructed.is_plain
    assert (rendered.text, rendered.demos) == (f"{INSTRUCTION} {query.fields['text']}", ())


def test_plain_config_for_pairs_yields_text_and_text_pair(rte_train: list[Example]) -> None:
    rendered = PromptRenderer(PromptConfig(), rte_train).render_all(rte_train)
    assert [(r.text, r.text_pair, r.label) for r in rendered] == [
        (ex.fields["text_a"], ex.fields["text_b"], ex.label) for ex in rte_train
    ]


def test_an_instruction_longer_than_max_length_is_an_error_not_a_silent_cut() -> None:
    from promptsearch.errors import TemplateError
    from promptsearch.io.data import Example
    from promptsearch.prompts.render import PromptRenderer
    from promptsearch.space.config import PromptConfig

    config = PromptConfig(instruction="word " * 50, template="{text} It was {label}.", label_words={"a": "x"})
    renderer = PromptRenderer(config, [], count_tokens=lambda t: len(t.split()), max_length=20)
    with pytest.raises(TemplateError, match=r"the instruction and template alone take \d+ tokens, more than"):
        renderer.render(Example(fields={"text": "a short review"}, label="a"))


def test_rendered_parts_join_to_the_prompt_and_drive_the_highlighting(sst2_data: TaskData) -> None:
    from promptsearch.reporting.highlight import split_prompt

    config = PromptConfig(
        instruction="Classify the review.",
        template="Review: {text}\nSentiment: {label}",
        label_words={"negative": "bad", "positive": "good"},
        demonstrations=DemoConfig(count=2, separator="\n"),  # the separator also occurs inside the template
    )
    rendered = PromptRenderer(config, sst2_data.train, slot="[MASK]").render(sst2_data.train[0])
    assert "".join(text for _, text in rendered.parts) == rendered.text
    assert [kind for kind, _ in rendered.parts] == ["instruction", "demonstration", "demonstration", "query"]
    parts = split_prompt(rendered.text, config.model_dump(), [list(p) for p in rendered.parts])
    assert [p.kind for p in parts] == ["instruction", "demonstration", "demonstration", "query"]
    assert parts[-1].text.startswith("Review: ") and parts[-1].text.endswith("Sentiment: [MASK]")
