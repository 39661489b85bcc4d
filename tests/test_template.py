"""The template engine substitutes plain names only; anything else is refused when the template is parsed."""

from __future__ import annotations

import re

import pytest

from promptsearch.errors import TemplateError
from promptsearch.space.template import Placeholder, Template

FIX = "Placeholders are plain names such as {text}; write '{{' and '}}' for literal braces."
REVIEW = "nothing happens , and it happens to flat characters ."


def test_parse_and_render() -> None:
    tpl = Template.parse("Review: {text}\nSentiment: {label}")
    assert tpl.segments == ("Review: ", Placeholder("text"), "\nSentiment: ", Placeholder("label"))
    assert tpl.names == ("text", "label")
    assert tpl.render({"text": REVIEW, "label": "bad"}) == f"Review: {REVIEW}\nSentiment: bad"


def test_names_keep_order_and_repeats() -> None:
    assert Template.parse("{text_a} ? {label} , {text_b} {label}").names == (
        "text_a",
        "label",
        "text_b",
        "label",
    )


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{{text}}", "{text}"),
        ("{{{text}}}", "{" + REVIEW + "}"),
        ('json: {{"label": {label}}}', 'json: {"label": bad}'),
        ("}} {{", "} {"),
    ],
)
def test_doubled_braces_are_literal(source: str, rendered: str) -> None:
    assert Template.parse(source).render({"text": REVIEW, "label": "bad"}) == rendered


def test_values_are_not_parsed_again() -> None:
    """Data that looks like a placeholder stays text (no second substitution, no injection)."""
    tpl = Template.parse("{text} It was {label}.")
    assert tpl.render({"text": "{label} {{x}} {text.__class__}", "label": "great"}) == (
        "{label} {{x}} {text.__class__} It was great."
    )


@pytest.mark.parametrize(
    "placeholder",
    ["{text.__class__}", "{text[0]}", "{text!r}", "{text:>10}", "{0}", "{}", "{ text }"],
    ids=["attribute", "index", "conversion", "format-spec", "positional", "empty", "spaces"],
)
def test_only_plain_names_are_allowed(placeholder: str) -> None:
    source = f"{placeholder} It was {{label}}."
    with pytest.raises(
        TemplateError,
        match=re.escape(
            f"placeholder '{placeholder}' is not allowed in template {source!r}: attribute access, indexing, "
            f"conversions and format specs are refused. {FIX}"
        ),
    ):
        Template.parse(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{text It was {label}.", "unclosed '{' at character 0 of template '{text It was {label}.'."),
        ("It was {label", "unclosed '{' at character 7 of template 'It was {label'."),
        ("{text} It was label}.", "single '}' at character 19 of template '{text} It was label}.'."),
    ],
)
def test_unbalanced_braces(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(f"{message} {FIX}")):
        Template.parse(source)


def test_a_template_must_be_text() -> None:
    with pytest.raises(TemplateError, match=re.escape("a template must be a string, but found int 5")):
        Template.parse(5)  # type: ignore[arg-type]


def test_missing_value() -> None:
    tpl = Template.parse("{text} It was {label}.")
    with pytest.raises(
        TemplateError,
        match=re.escape(
            "template '{text} It was {label}.' needs a value for '{label}', but only ['text'] are available"
        ),
    ):
        tpl.render({"text": REVIEW})


def test_slice_keeps_escapes() -> None:
    tpl = Template.parse("{instruction}{{note}}\n{demos}{text} It was {label}.")
    head, example = tpl.slice(0, 3), tpl.slice(3)
    assert head.source == "{instruction}{{note}}\n{demos}"
    assert example.source == "{text} It was {label}."
    assert Template.parse(head.source) == head
    assert head.render({"instruction": "Classify.", "demos": ""}) + example.render(
        {"text": REVIEW, "label": "bad"}
    ) == tpl.render({"instruction": "Classify.", "demos": "", "text": REVIEW, "label": "bad"})
