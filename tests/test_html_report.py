"""report.html (self-contained, checked in headless Chromium), the PNG plots of report.md, prompt highlighting."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from browser import find_chromium, load
from tiny import tiny_data, tiny_space_text

from promptsearch.api import SearchResult, search
from promptsearch.reporting.highlight import highlight_html, split_prompt
from promptsearch.reporting.html import render_html
from promptsearch.reporting.report import build_report
from promptsearch.space.config import PromptConfig, TrainConfig, TrialConfig

PLOTS = ("scores", "history", "intermediate", "importance", "parallel", "slice")


@pytest.fixture(scope="module")
def run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> SearchResult:
    """One real search over the tiny model: baseline + 5 sampled trials, 2 final seeds."""
    root = tmp_path_factory.mktemp("html-report")
    space = root / "tiny.yaml"
    space.write_text(tiny_space_text(tiny_model, tiny_data(root / "data"), n_trials=5), encoding="utf-8")
    return search(space, out=root / "run", device="cpu")


def test_report_html_is_one_offline_file_with_every_part(run: SearchResult) -> None:
    page = (run.out_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page), "the page must not load anything"
    for key in PLOTS:
        assert f'id="plot-{key}"' in page or f'id="note-{key}"' in page, key
    for key in ("scores", "history", "intermediate", "parallel", "slice"):
        assert f'id="plot-{key}"' in page, f"{key} should be drawn for a finished study"
    best = run.report.best
    assert best is not None and f"trial {best.trial}</h2>" in page
    assert '<mark class="label-word">' in page and '<mark class="slot">[MASK]</mark>' in page
    table = page.split('id="trials-table"', 1)[1]
    assert table.count("<tr><td class=num") == len(run.study.trials) == 6
    for trial in run.study.trials:
        assert f'data-value="{trial.state.name}"' in table
    test = best.test
    assert test is not None and f"{100 * test.mean:.2f} ± {100 * test.std:.2f} (n=2)" in page


def test_markdown_report_embeds_png_plots(run: SearchResult) -> None:
    md = (run.out_dir / "report.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]+\]\((plots/[a-z]+\.png)\)", md)
    assert {"plots/scores.png", "plots/history.png", "plots/intermediate.png"} <= set(images)
    for image in images:
        data = (run.out_dir / image).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 2000, image


def test_report_html_renders_in_headless_chromium(run: SearchResult) -> None:
    browser = find_chromium()
    if browser is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set PROMPTSEARCH_CHROMIUM); .ci/run installs it")
    page = load(browser, run.out_dir / "report.html")
    errors = [line for line in page.console if "Uncaught" in line or "Error" in line]
    assert not errors, errors
    root = re.search(r"<html[^>]*>", page.dom)
    assert root is not None and 'data-report-ready="1"' in root.group(0), "the page's own scripts did not finish"
    assert "data-script-errors" not in root.group(0), root.group(0)
    drawn = re.findall(r'id="plot-([a-z]+)"[^>]*class="[^"]*js-plotly-plot', page.dom)
    assert {"scores", "history", "intermediate", "parallel", "slice"} <= set(drawn), drawn
    assert page.dom.count('class="main-svg"') >= 2 * len(drawn), "plotly drew no SVG"
    # the sortable table was sorted on load by dev score, best first
    table = page.dom.split('id="trials-table"', 1)[1].split("</table>", 1)[0]
    assert 'aria-sort="descending"' in table
    order = [int(n) for n in re.findall(r'<tr><td class="num" data-value="(\d+)">', table)]
    values = {t.number: t.values[0] for t in run.study.trials if t.values}
    ranked = [values[n] for n in order if n in values]
    assert len(order) == 6 and ranked == sorted(ranked, reverse=True), (order, ranked)


def _hand_made_study(n: int) -> optuna.Study:
    """A real in-memory study with ``n`` completed trials carrying the attributes trials store."""
    study = optuna.create_study(direction="maximize")
    prompt = PromptConfig(template="{text} It was {label}.", label_words={"negative": "bad", "positive": "good"})
    for i in range(n):
        config = TrialConfig(prompt=prompt, train=TrainConfig(learning_rate=1e-3 * (i + 1)), params={})
        study.add_trial(
            optuna.trial.create_trial(
                params={"train.learning_rate": 1e-3 * (i + 1)},
                distributions={"train.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)},
                value=0.5 + 0.1 * i,
                intermediate_values={1: 0.5, 2: 0.5 + 0.1 * i},
                user_attrs={"config": config.model_dump(mode="json"), "prompt_example": "fine It was [MASK]."},
            )
        )
    return study


def test_too_few_trials_for_importances_is_a_note_not_an_error() -> None:
    study = _hand_made_study(2)
    report = build_report(study, space_name="hand", space_file=None, metric="accuracy", final=None)
    page = render_html(study, report)
    assert 'id="note-importance"' in page and "fANOVA needs at least 3 completed sampled trials" in page
    assert 'id="plot-history"' in page and 'id="plot-intermediate"' in page


def test_split_prompt_marks_instruction_demonstrations_and_query() -> None:
    prompt = {
        "instruction": "Classify the review.",
        "template": "{text} It was {label}.",
        "label_words": {"negative": "terrible", "positive": "great"},
        "demonstrations": {"count": 2, "separator": "\n\n"},
    }
    text = "Classify the review.\nawful It was terrible.\n\nlovely It was great.\n\ngreat fun It was [MASK]."
    parts = split_prompt(text, prompt)
    assert [p.kind for p in parts] == ["instruction", "demonstration", "demonstration", "query"]
    assert "".join(p.text for p in parts) == text
    marked = highlight_html(text, prompt)
    assert marked.count('<mark class="label-word">great</mark>') == 2  # a demonstration's label and the query's text
    assert '<mark class="slot">[MASK]</mark>' in marked
    assert highlight_html("<b>x</b> It was [MASK].", prompt).startswith('<span class="part part-query"')
    assert "&lt;b&gt;" in highlight_html("<b>x</b> It was [MASK].", prompt)


def test_the_instructed_template_of_sst2_splits_into_its_parts() -> None:
    prompt = {
        "instruction": "Is the sentiment positive or negative?",
        "template": "{instruction}\n{demos}{text} All in all, it was {label}.",
        "label_words": {"negative": "bad", "positive": "good"},
        "demonstrations": {"count": 1, "separator": "\n"},
    }
    text = "Is the sentiment positive or negative?\ndull All in all, it was bad.\nfun All in all, it was [MASK]."
    parts = split_prompt(text, prompt)
    assert [(p.kind, p.text) for p in parts] == [
        ("instruction", "Is the sentiment positive or negative?\n"),
        ("demonstration", "dull All in all, it was bad.\n"),
        ("query", "fun All in all, it was [MASK]."),
    ]


def test_a_multi_objective_report_with_failed_and_running_trials_renders() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    prompt = PromptConfig(template="{text} It was {label}.", label_words={"negative": "bad", "positive": "good"})
    config = TrialConfig(prompt=prompt, train=TrainConfig(), params={}).model_dump(mode="json")
    for values in ([0.9, 40.0], [0.8, 20.0], [0.7, 30.0]):
        study.add_trial(optuna.trial.create_trial(values=values, user_attrs={"config": config}))
    study.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"error": "RuntimeError: boom"})
    )
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING))
    report = build_report(study, space_name="m", space_file=None, metric="accuracy", final=None)
    assert report.best is not None and report.best.trial == 0  # within 0 points of the best: the best score itself
    page = render_html(study, report)
    assert 'id="plot-pareto"' in page and "RuntimeError: boom" in page
    table = page.split('id="trials-table"', 1)[1]
    assert table.count("<tr><td class=num") == 5 and '<td class=num data-value="">–</td>' in table


def test_when_the_baseline_wins_the_best_sampled_prompt_is_shown_too() -> None:
    study = optuna.create_study(direction="maximize")
    plain = TrialConfig(
        prompt=PromptConfig(label_words={"negative": "negative", "positive": "positive"}),
        train=TrainConfig(),
        baseline=True,
    )
    study.add_trial(
        optuna.trial.create_trial(
            value=0.8, user_attrs={"baseline": True, "config": plain.model_dump(mode="json"), "prompt_example": "ok"}
        )
    )
    prompt = PromptConfig(template="{text} It was {label}.", label_words={"negative": "bad", "positive": "good"})
    for value in (0.6, 0.7):
        config = TrialConfig(prompt=prompt, train=TrainConfig(), params={"x": value})
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                params={"x": value},
                distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                user_attrs={"config": config.model_dump(mode="json"), "prompt_example": "fine It was [MASK]."},
            )
        )
    report = build_report(study, space_name="b", space_file=None, metric="accuracy", final=None)
    page = render_html(study, report)
    assert "Best prompt: the plain fine-tuning baseline · trial 0" in page
    assert "No sampled prompt beat the baseline on dev; the best of them scored 70.00 against 80.00." in page
    assert "Best sampled prompt · trial 2" in page
    assert "plain fine-tuning baseline (also the best)" in page and "Test difference" not in page
