"""Trial scores that estimate test: folds, one epoch on the mean curve, pruning steps, leave-one-out pools."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny import MINIMAL_SPACE

from promptsearch.errors import SpaceError
from promptsearch.io.data import Example, TaskData
from promptsearch.prompts.demos import get_selector, selector_names
from promptsearch.space.search_space import load_space, parse_space
from promptsearch.space.spec import EvaluationSpec
from promptsearch.study.evaluation import (
    EpochChoice,
    Intermediate,
    Run,
    choose_epoch,
    final_training_rows,
    intermediate_value,
    labelled_rows,
    loo_pools,
    mean_curve,
    plan_runs,
    stratified_folds,
)


def rows(labels: str) -> list[Example]:
    """One row per character of ``labels`` (its class), with distinct texts."""
    return [Example({"text": f"row {i}"}, label) for i, label in enumerate(labels)]


# --- folds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_folds_are_disjoint_cover_every_row_once_and_keep_the_class_balance(sst2_data: TaskData, k: int) -> None:
    labelled = labelled_rows(sst2_data.train, sst2_data.dev)
    folds = stratified_folds(labelled, k, seed=13)

    assert [f.index for f in folds] == list(range(k))
    held = [i for f in folds for i in f.held]
    assert sorted(held) == list(range(len(labelled)))  # every row held out exactly once
    for fold in folds:
        assert set(fold.train) == set(range(len(labelled))) - set(fold.held)  # trains on all the others
        train_rows, held_rows = fold.split(labelled)
        assert {ex.key for ex in train_rows}.isdisjoint(ex.key for ex in held_rows)
    for label in ("negative", "positive"):  # 32 of each: every fold holds the floor or ceiling of 32 / k
        per_fold = [sum(labelled[i].label == label for i in f.held) for f in folds]
        assert sum(per_fold) == 32
        assert max(per_fold) - min(per_fold) <= 1


def test_folds_depend_on_the_seed_only(sst2_data: TaskData) -> None:
    labelled = labelled_rows(sst2_data.train, sst2_data.dev)
    assert stratified_folds(labelled, 4, seed=1) == stratified_folds(labelled, 4, seed=1)
    assert stratified_folds(labelled, 4, seed=1) != stratified_folds(labelled, 4, seed=2)


def test_rows_with_the_same_texts_share_a_fold() -> None:
    data = rows("ab" * 6)
    twin = Example(dict(data[0].fields), "b")  # same text as row 0, even with another label
    data = [*data, twin, Example(dict(data[3].fields), "b")]
    for seed in range(5):
        for fold in stratified_folds(data, 3, seed=seed):
            assert (0 in fold.held) == (12 in fold.held)
            assert (3 in fold.held) == (13 in fold.held)
            assert sorted(i for f in stratified_folds(data, 3, seed=seed) for i in f.held) == list(range(14))


def test_a_class_with_fewer_rows_than_folds_goes_one_row_per_fold(caplog: pytest.LogCaptureFixture) -> None:
    data = rows("a" * 12 + "b" * 12 + "cc")
    with caplog.at_level(logging.WARNING, logger="promptsearch.study.evaluation"):
        folds = stratified_folds(data, 4, seed=0)
    c_per_fold = [sum(data[i].label == "c" for i in f.held) for f in folds]
    assert sorted(c_per_fold) == [0, 0, 1, 1]  # two folds, one 'c' row each
    assert [sum(data[i].label == "a" for i in f.held) for f in folds] == [3, 3, 3, 3]
    assert (
        "search.evaluation.folds is 4, but some classes have fewer labelled rows: 'c' (2); each of their rows "
        "goes to a different fold, and the other folds score none of them"
    ) in caplog.messages


def test_folds_refuse_data_too_small_to_split() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "search.evaluation.folds is 4, but no class has 4 labelled rows (the largest has 3); "
            "lower folds to 3 or fewer, or use mode 'dev'"
        ),
    ):
        stratified_folds(rows("aaabbb"), 4)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "search.evaluation.folds is 5, but the labelled rows (train and dev) hold only 4 distinct texts; "
            "lower folds to 4 or fewer, or use mode 'dev'"
        ),
    ):
        stratified_folds(rows("aabb"), 5)
    with pytest.raises(ValueError, match=re.escape("stratified folds need k >= 2, but found k=1")):
        stratified_folds(rows("aabb"), 1)


def test_runs_cover_every_fold_before_repeating_one() -> None:
    assert plan_runs(3, 2) == (Run(0, 0), Run(1, 0), Run(2, 0), Run(0, 1), Run(1, 1), Run(2, 1))
    assert plan_runs(1, 1) == (Run(0, 0),)  # mode dev
    with pytest.raises(ValueError, match=re.escape("but found folds=0, seeds=1")):
        plan_runs(0, 1)


# --- one epoch for all runs -----------------------------------------------------------------------


def test_the_epoch_is_chosen_on_the_mean_curve_not_per_fold() -> None:
    curves = [[0.50, 0.90, 0.60], [0.70, 0.50, 0.80], [0.60, 0.70, 0.70]]
    assert mean_curve(curves) == pytest.approx([0.60, 0.70, 0.70])
    choice = choose_epoch(curves)
    # epochs 2 and 3 tie on the mean (0.7): the earlier wins; the per-fold maxima would claim 0.8
    assert choice.epoch == 2 and choice.value == pytest.approx(0.70)
    assert sum(max(c) for c in curves) / 3 == pytest.approx(0.80)


def test_ties_within_rounding_go_to_the_earliest_epoch() -> None:
    # (0.3 + 0.0) / 2 and (0.1 + 0.2) / 2 are the same mean, but the second float is larger by one ulp
    curves = [[0.3, 0.1], [0.0, 0.2]]
    assert mean_curve(curves)[1] > mean_curve(curves)[0]
    assert choose_epoch(curves, first_epoch=0) == EpochChoice(epoch=0, value=0.15)
    assert choose_epoch([[0.4, 0.2, 0.2]], direction="minimize") == EpochChoice(2, 0.2)


def test_curves_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("all of the same length, but found lengths [2, 3]")):
        mean_curve([[0.5, 0.6], [0.5, 0.6, 0.7]])
    with pytest.raises(ValueError, match=re.escape("no curves to average")):
        choose_epoch([])
    with pytest.raises(ValueError, match=re.escape("expected finite scores, but found [nan]")):
        mean_curve([[0.5, float("nan")]])


def test_intermediate_values_are_the_running_estimate_and_end_at_the_trial_value() -> None:
    curves = [[0.5, 0.8], [0.7, 0.4], [0.6, 0.6], [0.6, 0.7]]
    reports = [intermediate_value(curves[: r + 1]) for r in range(len(curves))]
    assert [r.step for r in reports] == [1, 2, 3, 4]
    assert reports[0] == Intermediate(step=1, epoch=2, value=0.8)
    assert reports[1][:2] == (2, 1) and reports[1].value == pytest.approx(0.6)
    assert reports[-1].value == choose_epoch(curves).value  # the last report is the trial's value


# --- in-context trials: leave one out ---------------------------------------------------------------


def test_leave_one_out_pools_never_hold_the_query_nor_its_texts(sst2_data: TaskData) -> None:
    labelled = labelled_rows(sst2_data.train, sst2_data.dev)
    labelled.append(Example(dict(labelled[5].fields), labelled[5].label, source="copy"))  # a duplicate text
    pools = list(loo_pools(labelled))
    assert [q for q, _ in pools] == labelled  # every labelled row is scored once
    for query, pool in pools:
        assert all(ex.key != query.key for ex in pool)
    assert len(pools[0][1]) == len(labelled) - 1
    assert len(pools[5][1]) == len(labelled) - 2  # neither row 5 nor its copy


@pytest.mark.parametrize("name", selector_names())
def test_one_selector_over_all_labelled_rows_draws_from_the_leave_one_out_pool(sst2_data: TaskData, name: str) -> None:
    labelled = labelled_rows(sst2_data.train, sst2_data.dev)
    selector = get_selector(name, labelled, seed=0)
    for query, pool in loo_pools(labelled):
        demos = selector.select(query, 8)
        assert len(demos) == 8
        assert all(d in pool for d in demos)


# --- the final model --------------------------------------------------------------------------------


def test_final_training_rows_follow_final_train(sst2_data: TaskData) -> None:
    train, dev = sst2_data.train, sst2_data.dev
    assert final_training_rows(EvaluationSpec(), train, dev) == [*train, *dev]  # cv: all by default
    assert final_training_rows(EvaluationSpec(final_train="train"), train, dev) == train
    assert final_training_rows(EvaluationSpec(mode="dev"), train, dev) == train  # dev: train by default
    assert final_training_rows(EvaluationSpec(mode="dev", final_train="all"), train, dev) == [*train, *dev]


# --- the search-space keys: search.evaluation and search.finalists -----------------------------------

SPACE = MINIMAL_SPACE


def test_the_defaults_are_four_folds_one_seed_all_rows_and_three_finalists() -> None:
    search = parse_space(SPACE).spec.search
    assert search.evaluation == EvaluationSpec(mode="cv", folds=4, seeds=1, final_train=None)
    assert search.evaluation.cross_validated and search.evaluation.final_rows == "all"
    assert search.finalists == 3


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        ("{folds: 5, seeds: 2, final_train: train}", EvaluationSpec(mode="cv", folds=5, seeds=2, final_train="train")),
        ("{mode: dev}", EvaluationSpec(mode="dev", folds=1)),  # the single train/dev split
        ("{folds: 1}", EvaluationSpec(mode="dev", folds=1)),  # the same, said with folds
        ("{mode: dev, seeds: 3, final_train: all}", EvaluationSpec(mode="dev", folds=1, seeds=3, final_train="all")),
    ],
)
def test_evaluation_keys_validate_and_round_trip(yaml: str, expected: EvaluationSpec) -> None:
    evaluation = parse_space(SPACE + f"search:\n  evaluation: {yaml}\n  finalists: 0\n").spec.search.evaluation
    assert evaluation == expected
    assert EvaluationSpec.model_validate(evaluation.model_dump()) == evaluation
    assert evaluation.cross_validated == (evaluation.mode == "cv")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "search:\n  evaluation: {folds: 0}\n",
            "8: search.evaluation.folds: the value must be at least 1, but found 0; use 1 for the single train/dev "
            "split, or 2 or more folds",
        ),
        (
            "search:\n  evaluation: {seeds: 0}\n",
            "8: search.evaluation.seeds: the value must be at least 1, but found 0",
        ),
        ("search:\n  finalists: -1\n", "8: search.finalists: the value must be 0 (no race) or more, but found -1"),
        (
            "search:\n  evaluation:\n    fold: 3\n",
            "9: search.evaluation.fold: unknown key 'fold'. did you mean 'folds'? Allowed keys here: mode, folds, "
            "seeds, final_train",
        ),
        (
            "search:\n  evaluation: {final_train: everything}\n",
            "8: search.evaluation.final_train: Input should be 'all' or 'train', but found 'everything'",
        ),
        (
            "search:\n  evaluation: {mode: dev, folds: 4}\n",
            "8: search.evaluation: mode 'dev' uses the one train/dev split, but folds is 4; remove 'folds' or set "
            "'mode: cv'",
        ),
        (
            "search:\n  evaluation: {mode: cv, folds: 1}\n",
            "8: search.evaluation: mode 'cv' needs 2 or more folds, but folds is 1; raise 'folds' or set 'mode: dev'",
        ),
    ],
    ids=["folds-0", "seeds-0", "finalists-negative", "unknown-key", "final-train", "dev-with-folds", "cv-one-fold"],
)
def test_bad_evaluation_values_are_refused_with_the_key_named(
    write_space: Callable[..., Path], extra: str, message: str
) -> None:
    path = write_space(SPACE + extra)
    with pytest.raises(SpaceError, match=re.escape(f"{path}:{message}")) as info:
        load_space(path)
    assert info.value.messages == [f"{path}:{message}"]
