"""Multi-objective search: validation, the Pareto front, the recommendation rule, and an end-to-end study."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from tiny import tiny_data, tiny_space_text

from promptsearch.api import search
from promptsearch.errors import SpaceError
from promptsearch.io.export import load_prompt_config
from promptsearch.space.search_space import parse_space
from promptsearch.study.pareto import pareto_front, recommend, recommendation_rule
from promptsearch.study.records import (
    BASELINE_ATTR,
    OBJECTIVES_ATTR,
    TrialRecord,
    best_trial,
    objectives_info,
    trial_records,
)

BASE = """
name: multi
task: {data: {dir: sst2}, labels: [negative, positive]}
prompt: {template: "{text} It was {label}."}
search:
"""


def _problems(search_section: str) -> str:
    with pytest.raises(SpaceError) as info:
        parse_space(BASE + search_section, path=Path("space.yaml"))
    return "\n".join(info.value.messages)


def test_a_pruner_with_several_objectives_is_refused_with_the_reason() -> None:
    text = _problems("  objectives: [{metric: dev}, {metric: prompt_tokens}]\n  pruner: {type: median}\n")
    assert text == (
        "space.yaml:7: search.pruner: a median pruner is set, but Optuna cannot prune multi-objective studies "
        "(Trial.report and Trial.should_prune are not supported for them: with several objectives there is no "
        "single intermediate score to compare trials on), so every trial runs all its epochs; remove "
        "search.pruner or set it to {type: none}"
    )


def test_objectives_must_start_with_dev_and_not_repeat() -> None:
    text = _problems("  objectives: [{metric: prompt_tokens}, {metric: prompt_tokens}]\n")
    assert "search.objectives.0.metric: the first objective must be dev" in text
    assert "search.objectives.1.metric: 'prompt_tokens' is listed twice; list it once" in text
    text = _problems("  objectives: [{metric: dev, direction: minimize}, {metric: latency_ms}]\n")
    assert "search.objectives.0.direction: 'minimize' differs from search.direction 'maximize'" in text
    text = _problems("  objectives: [{metric: dev}, {metric: cost}]\n")
    assert "search.objectives.1.metric" in text and "'cost'" in text


def test_one_objective_or_none_keeps_the_single_objective_space_valid() -> None:
    space = parse_space(BASE + "  objectives: [{metric: dev}, {metric: latency_ms}]\n  pruner: {type: none}\n")
    assert [o.metric for o in space.spec.search.objectives or []] == ["dev", "latency_ms"]
    parse_space(BASE + "  pruner: {type: median}\n")  # a pruner is fine with one objective


def test_validate_names_the_objectives_of_the_shipped_pareto_space(capsys: pytest.CaptureFixture[str]) -> None:
    from promptsearch.cli import main

    assert main(["validate", str(Path(__file__).parents[1] / "search_spaces" / "sst2_pareto.yaml")]) == 0
    assert "; 2 objectives (dev, prompt_tokens), so no pruning; data: train 32" in capsys.readouterr().out


def _study(
    points: list[tuple[float, float]], within: float, baseline: tuple[float, float] | None = None
) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(OBJECTIVES_ATTR, {"names": ["dev", "prompt_tokens"], "recommend_within": within})
    if baseline is not None:
        study.add_trial(optuna.trial.create_trial(values=list(baseline), user_attrs={BASELINE_ATTR: True}))
    for dev, tokens in points:
        study.add_trial(optuna.trial.create_trial(values=[dev, tokens]))
    return study


def _front(study: optuna.Study) -> list[TrialRecord]:
    return pareto_front([r for r in trial_records(study) if r.is_complete], study.directions)


def _recommend(study: optuna.Study, within: float | None = None) -> TrialRecord | None:
    within = objectives_info(study).within if within is None else within
    return recommend([r for r in trial_records(study) if r.is_complete], study.directions, within=within)


def _rule(study: optuna.Study) -> str:
    info = objectives_info(study)
    return recommendation_rule(info.names, study.directions, info.within)


def test_the_recommendation_is_the_cheapest_pareto_trial_near_the_best_score() -> None:
    # trial: 0 dominated, 1 best score, 2 0.4 points lower and far cheaper, 3 cheapest but 2 points lower
    study = _study([(0.80, 90.0), (0.90, 120.0), (0.896, 60.0), (0.88, 30.0)], within=0.005)
    assert [t.number for t in _front(study)] == [1, 2, 3]
    assert _recommend(study).number == 2  # type: ignore[union-attr]
    assert best_trial(study).number == 2  # type: ignore[union-attr]
    assert _recommend(study, within=0.0).number == 1  # type: ignore[union-attr]
    assert _recommend(study, within=0.05).number == 3  # type: ignore[union-attr]
    assert _rule(study).startswith(
        "the cheapest Pareto-optimal sampled trial (lowest prompt_tokens) whose dev score is within 0.50 points "
        "of the best dev score on that front (search.recommend_within)"
    )


def test_the_baseline_is_a_reference_point_not_a_recommendation() -> None:
    # the baseline (trial 0) is as good as the best and far shorter: it is on the front, but never recommended;
    # it dominates both sampled trials, which still form the front the recommendation comes from
    study = _study([(0.90, 120.0), (0.85, 60.0)], within=0.01, baseline=(0.90, 20.0))
    assert [t.number for t in _front(study)] == [0, 1, 2]  # the sampled front, and the baseline beside it
    assert _recommend(study).number == 1  # type: ignore[union-attr]
    assert _recommend(study, within=0.1).number == 2  # type: ignore[union-attr]
    only = _study([], within=0.01, baseline=(0.9, 20.0))
    assert _recommend(only).number == 0  # type: ignore[union-attr]  # nothing else has finished


def test_cmaes_is_refused_with_several_objectives() -> None:
    with pytest.raises(SpaceError, match="the cmaes sampler optimises one objective only"):
        parse_space(
            BASE.replace("search:\n", "search:\n  sampler: cmaes\n")
            + "  objectives: [{metric: dev}, {metric: latency_ms}]\n  pruner: {type: none}\n"
        )


def test_a_multi_objective_search_end_to_end(tiny_model: Path, tmp_path: Path) -> None:
    text = tiny_space_text(tiny_model, tiny_data(tmp_path / "data"), pruner="{type: none}", epochs="3")
    text = text.replace(
        "search:\n", "search:\n  objectives: [{metric: dev}, {metric: prompt_tokens}]\n  recommend_within: 0.01\n"
    )
    space = tmp_path / "multi.yaml"
    space.write_text(text, encoding="utf-8")
    result = search(space, out=tmp_path / "run", n_trials=4, final_seeds=1, device="cpu")
    study = result.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 5 and all(len(t.values) == 2 for t in done)  # nothing pruned
    for t in done:
        assert t.values[1] == pytest.approx(t.user_attrs["prompt_tokens_mean"], abs=0.051)
        assert t.user_attrs["latency_ms"] > 0 and t.intermediate_values == {}
    chosen = _recommend(study)
    assert chosen is not None and result.report.best is not None and result.report.best.trial == chosen.number
    assert result.best_test is not None  # the recommended config had its final test evaluation

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["objectives"]["multi"] is True and report["objectives"]["names"] == ["dev", "prompt_tokens"]
    assert "within 1.00 points" in report["objectives"]["rule"]
    page = (tmp_path / "run" / "report.html").read_text()
    assert 'id="plot-pareto"' in page and "Pareto front and recommended config" in page
    assert f"{chosen.number} ★ recommended" in page or f"{chosen.number} (baseline) ★ recommended" in page
    assert "Optuna cannot prune them" in page
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Objectives" in md and re.search(r"!\[Pareto front\]\(plots/pareto\.png\)", md)
    exported = load_prompt_config(tmp_path / "run" / "best_prompt.yaml")
    assert exported.trial == chosen.number and exported.scores.dev == pytest.approx(chosen.dev)
