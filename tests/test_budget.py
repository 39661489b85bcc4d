"""Budget presets (space/budget.py): what each sets, that written keys and command-line values win, one message for a
bad name, and that a study stores (and resumes with) the resolved values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from tiny import MINIMAL_SPACE

from promptsearch.cli import BudgetOpt, main
from promptsearch.errors import ConfigError, SpaceError
from promptsearch.space.budget import BUDGETS, MEDIUM, apply_budget, budget_preset, budget_table
from promptsearch.space.search_space import SearchSpace, load_space, parse_space
from promptsearch.space.spec import EvaluationSpec, SearchSpec
from promptsearch.study.storage import space_fingerprint
from promptsearch.study.workers import WorkerLauncher

REPO = Path(__file__).resolve().parents[1]
SPACE = MINIMAL_SPACE


def _search(extra: str = "") -> SearchSpec:
    return parse_space(SPACE + extra).spec.search


def _budget_values(search: SearchSpec) -> tuple[int | None, int, int, int]:
    return search.n_trials, search.evaluation.folds, search.finalists, search.final_seeds


@pytest.mark.parametrize("name", list(BUDGETS))
def test_each_preset_sets_its_four_keys(name: str) -> None:
    preset = BUDGETS[name]
    search = _search(f"search:\n  budget: {name}\n")
    assert search.budget == name
    assert _budget_values(search) == (preset.n_trials, preset.folds, preset.finalists, preset.final_seeds)
    assert search.evaluation.mode == "cv"


def test_medium_is_the_defaults_so_a_space_without_a_budget_runs_as_before() -> None:
    assert _budget_values(_search()) == (20, 4, 3, 3) == _budget_values(_search("search:\n  budget: medium\n"))
    assert (MEDIUM.n_trials, MEDIUM.folds, MEDIUM.finalists, MEDIUM.final_seeds) == (20, 4, 3, 3)
    assert _search().budget is None


def test_light_is_cheaper_and_heavy_dearer_than_medium_on_every_key() -> None:
    light, medium, heavy = (BUDGETS[n] for n in ("light", "medium", "heavy"))
    for key in ("n_trials", "folds", "finalists", "final_seeds"):
        assert getattr(light, key) < getattr(medium, key) < getattr(heavy, key), key
    assert light.fold_trainings < medium.fold_trainings < heavy.fold_trainings


def test_a_written_key_wins_over_the_preset() -> None:
    search = _search(
        "search:\n  budget: heavy\n  n_trials: 7\n  finalists: 0\n  final_seeds: 1\n  evaluation: {folds: 3}\n"
    )
    assert _budget_values(search) == (7, 3, 0, 1)
    # the keys not written still come from the preset
    assert _budget_values(_search("search:\n  budget: light\n  n_trials: 30\n")) == (30, 2, 1, 2)
    # n_trials: null is no value written: the preset's
    assert _search("search:\n  budget: light\n  n_trials: null\n").n_trials == 8


def test_mode_dev_keeps_its_one_split() -> None:
    search = _search("search:\n  budget: heavy\n  evaluation: {mode: dev}\n")
    assert search.evaluation == EvaluationSpec(mode="dev", folds=1)
    assert (search.n_trials, search.finalists, search.final_seeds) == (50, 5, 5)
    assert _search("search:\n  budget: light\n  evaluation: {folds: 1}\n").evaluation.mode == "dev"
    # other evaluation keys stay as written, the folds come from the preset
    assert _search("search:\n  budget: light\n  evaluation: {seeds: 2}\n").evaluation == EvaluationSpec(
        mode="cv", folds=2, seeds=2
    )


@pytest.mark.parametrize(
    ("value", "found"),
    [("lite", "'lite'; did you mean 'light'?"), ("huge", "'huge'"), ("3", "3"), ("[light]", "['light']")],
)
def test_a_bad_name_is_one_message_with_the_three_names(value: str, found: str) -> None:
    with pytest.raises(SpaceError) as info:
        parse_space(SPACE + f"search:\n  budget: {value}\n")
    assert info.value.messages == [
        f"<string>:8: search.budget: expected one of light, medium, heavy, but found {found}"
    ]


def test_the_dump_says_what_runs_and_round_trips() -> None:
    search = _search("search:\n  budget: light\n  evaluation: {seeds: 2}\n")
    dumped = search.model_dump(mode="json")
    assert dumped["budget"] == "light" and dumped["n_trials"] == 8 and dumped["evaluation"]["folds"] == 2
    assert SearchSpec.model_validate(dumped) == search
    # apply_budget is the one place the preset is read: a section without a budget comes back as it was
    assert apply_budget({"n_trials": 3}) == {"n_trials": 3}
    assert apply_budget({"budget": "nonsense"}) == {"budget": "nonsense"}  # the schema's check reports it


def test_the_table_is_one_place_read_by_the_schema_the_cli_and_the_docs() -> None:
    description = SearchSpec.model_fields["budget"].description or ""
    cli_help = BudgetOpt.__metadata__[0].help
    table = budget_table()
    for preset in BUDGETS.values():
        assert preset.describe() in description and preset.describe() in cli_help
        assert (
            f"| {preset.name} | {preset.n_trials} | {preset.folds} | {preset.finalists} | {preset.final_seeds} |"
            in table
        )
    assert budget_preset("heavy") is BUDGETS["heavy"]


def test_with_budget_replaces_the_files_budget_and_keeps_its_written_keys() -> None:
    shipped = load_space(REPO / "search_spaces" / "sst2.yaml")  # writes n_trials 8 and final_seeds 2
    light = shipped.with_budget("light")
    assert light.spec.search.budget == "light"
    assert _budget_values(light.spec.search) == (8, 2, 1, 2)
    heavy = light.with_budget("heavy")
    assert _budget_values(heavy.spec.search) == (8, 5, 5, 2)
    assert heavy.path == shipped.path and heavy.params.keys() == shipped.params.keys()
    # the text is what runs: parsing it again gives the same space (a study stores it; workers and reports read it)
    assert "budget: heavy" in heavy.text
    assert parse_space(heavy.text, data_in_code=True).spec == heavy.spec
    assert shipped.with_budget("medium").spec.search.finalists == 3
    assert light.with_budget("light") is light
    with pytest.raises(ConfigError, match=re.escape("budget: expected one of light, medium, heavy, but found 'x'")):
        shipped.with_budget("x")


def test_the_fingerprint_follows_the_resolved_keys_not_the_name() -> None:
    plain = SearchSpace.from_dict(yaml.safe_load(SPACE))
    assert space_fingerprint(plain.with_budget("medium")) == space_fingerprint(plain)  # medium: the same study
    assert space_fingerprint(plain.with_budget("light")) != space_fingerprint(plain)  # 2 folds, 1 finalist
    # a preset that only changes n_trials and final_seeds (which may change on resume) keeps the fingerprint
    written = {**yaml.safe_load(SPACE), "search": {"evaluation": {"folds": 4}, "finalists": 3}}
    base = SearchSpace.from_dict(written)
    assert space_fingerprint(base.with_budget("light")) == space_fingerprint(base)


def test_workers_started_by_run_get_its_budget() -> None:
    launcher = WorkerLauncher(
        space_file=Path("s.yaml"), storage="sqlite:///x.db", study_name="s", workers=2, n_trials=4, device="cpu",
        out_dir=Path("."), heartbeat=10.0, budget="light",
    )  # fmt: skip
    command = launcher.command(1)
    assert command[command.index("--budget") + 1] == "light"
    assert command[command.index("--n-trials") + 1] == "4"  # the run's trial count, which wins over the preset
    assert "--budget" not in WorkerLauncher(**{**launcher.__dict__, "budget": None}).command(1)


def _unboxed(text: str) -> str:
    """Typer's usage error without its box and line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_the_cli_refuses_a_bad_budget_with_the_three_names(capsys: pytest.CaptureFixture[str]) -> None:
    space = str(REPO / "search_spaces" / "sst2.yaml")
    assert main(["run", space, "--budget", "lite"]) == 2
    err = capsys.readouterr().err
    assert "expected one of light, medium, heavy, but found 'lite'; did you mean 'light'?" in _unboxed(err)
    assert "Traceback" not in err
    assert main(["worker", space, "--storage", "sqlite:///x.db", "--study-name", "s", "--budget", "big"]) == 2
    assert "expected one of light, medium, heavy, but found 'big'" in _unboxed(capsys.readouterr().err)
