"""The end of a run (reporting/summary.py and ``promptsearch run``'s last lines): the finalists table, the verdict and
the next steps, from one real tiny run with ``--budget light``; the cases without a race from its report, edited."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shlex
from pathlib import Path

import optuna
import pytest

from promptsearch import api
from promptsearch.cli import _print_incomplete, _print_result, main
from promptsearch.errors import IncompleteStudy
from promptsearch.reporting.html import render_html
from promptsearch.reporting.report import render_markdown
from promptsearch.reporting.schema import Objectives, Race, Report
from promptsearch.reporting.summary import RunSummary, run_summary
from promptsearch.study.records import stored_space


@pytest.fixture(scope="module")
def light_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """``promptsearch run SPACE --budget light --n-trials 1`` on a space that writes no budget key: the space
    file, the run folder and what the run printed."""
    from tiny import tiny_data, tiny_space_text

    root = tmp_path_factory.mktemp("light")
    data = tiny_data(root / "data", test_rows=16)
    text = tiny_space_text(tiny_model, data, n_trials=1, epochs="1")
    for line in (
        "  evaluation: {mode: dev}  # dev repeats train (see tiny_data), so scores move with the hyperparameters\n",
        "  n_trials: 1\n",
        "  final_seeds: 2\n",
    ):
        assert line in text
        text = text.replace(line, "")
    space = root / "space.yaml"
    space.write_text(text, encoding="utf-8")
    out = root / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", str(space), "--budget", "light", "--n-trials", "1", "--out", str(out), "--device", "cpu"])
    assert code == 0, printed.getvalue()
    return space, out, printed.getvalue()


def _report(out: Path) -> Report:
    return Report.model_validate(json.loads((out / "report.json").read_text(encoding="utf-8")))


def _printed(report: Report, out: Path) -> io.StringIO:
    """What ``run`` prints at its end for ``report`` (a run folder ``out``), as the CLI prints it."""
    printed = io.StringIO()
    result = api.SearchResult(
        space=None,  # type: ignore[arg-type]
        study=None,  # type: ignore[arg-type]
        out_dir=out,
        best_config=None,
        best_dev=None,
        best_test=None,
        baseline_dev=None,
        baseline_test=None,
        report=report,
        export_path=out / "best_prompt.yaml",
    )
    with contextlib.redirect_stdout(printed):
        _print_result(result)
    return printed


def test_the_budget_decides_what_runs_and_the_study_stores_it(light_run: tuple[Path, Path, str]) -> None:
    _, out, _ = light_run
    report = _report(out)
    assert report.evaluation is not None and report.evaluation.folds == 2  # light's folds
    assert report.trials.total == 2  # --n-trials 1 wins over light's 8 (+ the baseline)
    assert report.final_seeds == 2  # light's final seeds
    assert report.race is not None and len(report.race.standings) == 2  # light's 1 finalist + the baseline
    import optuna

    from promptsearch.study.storage import make_storage

    study = optuna.load_study(study_name="tiny", storage=make_storage(f"sqlite:///{out / 'study.db'}", create=False))
    stored = stored_space(study)
    assert stored is not None and "budget: light" in (stored.text or "")


def test_a_resume_needs_the_budget_it_ran_with(
    light_run: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    space, out, _ = light_run
    args = ["run", str(space), "--n-trials", "1", "--out", str(out), "--device", "cpu"]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "was created from a different search space" in err
    assert "it ran with search.budget light, this space has unset (medium)" in err
    result = api.search(space, budget="light", n_trials=1, out=out, device="cpu")  # nothing left to run
    assert result.report.trials.total == 2


def test_the_summary_of_a_real_run(light_run: tuple[Path, Path, str]) -> None:
    _, out, _ = light_run
    report = _report(out)
    assert report.race is not None
    summary = run_summary(report, export_path=out / "best_prompt.yaml")
    assert summary.raced and summary.metric == "accuracy"
    assert [(r.trial, r.estimate, r.std_error, r.n) for r in summary.rows] == [
        (s.trial, s.mean, s.std_error, s.n) for s in report.race.standings
    ]
    assert [r.trial for r in summary.rows if r.chosen] == [report.race.winner]
    assert all(r.trains is True and r.prompt_tokens is not None and r.prompt_tokens > 0 for r in summary.rows)
    baseline = next(r for r in summary.rows if r.baseline)
    assert baseline.name == "the baseline"
    # the separation rule: the chosen one's lead over the runner-up against the standard error of the difference
    sep = summary.separation
    assert sep is not None
    chosen = next(s for s in report.race.standings if s.trial == report.race.winner)
    runner_up = next(s for s in report.race.standings if s.trial != report.race.winner)
    assert chosen.std_error is not None and runner_up.std_error is not None
    assert sep.lead == pytest.approx(chosen.mean - runner_up.mean)
    assert sep.std_error == pytest.approx(math.sqrt(chosen.std_error**2 + runner_up.std_error**2))
    assert sep.separated == (sep.lead > sep.std_error)
    kinds = [s.kind for s in summary.next_steps]
    assert kinds[:2] == ["train", "predict"]
    assert ("add_rows" in kinds) == (not sep.separated or report.verdict is not None)
    model = out / "model"
    assert summary.next_steps[0].command == (
        f"promptsearch train {shlex.quote(str(out / 'best_prompt.yaml'))} --save-model {shlex.quote(str(model))}"
    )
    assert summary.next_steps[1].command == f"promptsearch predict {shlex.quote(str(model))} --input NEW_ROWS.jsonl"
    assert summary.verdict is not None and report.verdict is not None
    assert report.verdict.label.upper() in summary.verdict
    assert RunSummary.model_validate(summary.model_dump()) == summary


def test_the_cli_prints_the_table_the_verdict_and_the_commands(light_run: tuple[Path, Path, str]) -> None:
    _, out, printed = light_run
    assert "finalists, scored again on fresh seeds (accuracy, mean ± standard error)" in printed
    header = next(line for line in printed.splitlines() if "config" in line and "prompt tokens" in line)
    assert "accuracy" in header and "trains" in header
    assert "verdict on test, chosen vs baseline" in printed
    assert f"promptsearch predict {out / 'model'} --input NEW_ROWS.jsonl" in printed
    assert f"promptsearch train {out / 'best_prompt.yaml'} --save-model {out / 'model'}" in printed


def test_a_saved_model_is_predicted_from_directly(light_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, out, _ = light_run
    saved = tmp_path / "my model"
    steps = run_summary(_report(out), export_path=out / "best_prompt.yaml", saved_model=saved).next_steps
    assert steps[0].kind == "predict" and steps[0].command == f"promptsearch predict '{saved}' --input NEW_ROWS.jsonl"
    assert "train" not in [s.kind for s in steps]


def test_without_a_race_the_chosen_config_and_the_baseline_are_shown(light_run: tuple[Path, Path, str]) -> None:
    """search.finalists: 0 and multi-objective studies have no race: their report holds none."""
    _, out, _ = light_run
    report = _report(out)
    for edited in (
        report.model_copy(update={"race": None}),
        report.model_copy(
            update={
                "race": None,
                "verdict": None,
                "objectives": Objectives(
                    multi=True, names=["dev", "prompt_tokens"], directions=["maximize", "minimize"], rule="r"
                ),
            }
        ),
    ):
        summary = run_summary(edited, export_path=out / "best_prompt.yaml")
        assert not summary.raced and summary.separation is None
        assert edited.best is not None and edited.baseline is not None
        expected = [edited.best.trial] + ([] if edited.best.trial == edited.baseline.trial else [edited.baseline.trial])
        assert [r.trial for r in summary.rows] == expected
        assert summary.rows[0].chosen and summary.rows[0].estimate == edited.best.dev_score
        assert all(r.std_error is None for r in summary.rows)
        assert [s.kind for s in summary.next_steps][:2] == ["train", "predict"]
        printed = _printed(edited, out)
        assert "chosen config and baseline (accuracy in the search; no race)" in printed.getvalue()


def test_the_finalists_are_separated_only_by_more_than_the_standard_error(light_run: tuple[Path, Path, str]) -> None:
    _, out, _ = light_run
    report = _report(out)
    assert report.race is not None
    first, second = report.race.standings

    def summary(mean: tuple[float, float], se: tuple[float | None, float | None], direction: str) -> RunSummary:
        standings = [
            first.model_copy(update={"mean": mean[0], "std_error": se[0]}),
            second.model_copy(update={"mean": mean[1], "std_error": se[1]}),
        ]
        race = Race.model_validate({**report.race.model_dump(), "winner": first.trial, "standings": standings})  # type: ignore[union-attr]
        edited = report.model_copy(update={"race": race, "direction": direction, "verdict": None})
        return run_summary(edited, export_path=out / "best_prompt.yaml")

    apart = summary((0.9, 0.7), (0.03, 0.04), "maximize")  # lead 0.2 > sqrt(0.03² + 0.04²) = 0.05
    assert apart.separation is not None and apart.separation.separated
    assert apart.separation.std_error == pytest.approx(0.05)
    assert "add_rows" not in [s.kind for s in apart.next_steps]
    close = summary((0.9, 0.86), (0.03, 0.04), "maximize")  # lead 0.04 < 0.05
    assert close.separation is not None and not close.separation.separated
    step = next(s for s in close.next_steps if s.kind == "add_rows")
    assert step.text.startswith("dev was too small to separate the finalists: add labelled rows")
    assert "leads trial" in step.text or "leads the baseline" in step.text
    cheaper = summary((0.88, 0.9), (0.03, 0.04), "maximize")  # the race chose a cheaper one within one error
    assert cheaper.separation is not None and cheaper.separation.lead < 0 and not cheaper.separation.separated
    lower = summary((0.2, 0.4), (0.03, 0.04), "minimize")  # minimising: the lower mean leads
    assert lower.separation is not None and lower.separation.lead == pytest.approx(0.2) and lower.separation.separated
    tied = summary((0.5, 0.5), (0.0, 0.0), "maximize")
    assert tied.separation is not None and not tied.separation.separated
    single = summary((0.9, 0.7), (None, None), "maximize")  # one evaluation each: no standard error to judge by
    assert single.separation is None and single.rows[0].std_error is None


def test_an_incomplete_study_says_to_continue(
    light_run: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The exit-3 path: the report of the study as it stands, no export; the error message follows."""
    _, out, _ = light_run
    report = _report(out).model_copy(update={"incomplete": "1 of 9 trials counted", "verdict": None})
    summary = run_summary(report)
    assert [s.kind for s in summary.next_steps] == ["continue"]
    assert summary.incomplete == "1 of 9 trials counted"
    _print_incomplete(IncompleteStudy("stopped", missing=8, report=report))
    printed = capsys.readouterr().out
    assert "finalists, scored again on fresh seeds" in printed and "next:" not in printed
    _print_incomplete(IncompleteStudy("stopped", missing=8))  # no report could be written: nothing to print
    assert capsys.readouterr().out == ""


def test_a_summary_that_fails_does_not_lose_the_end_of_the_run(
    light_run: tuple[Path, Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    space, out, _ = light_run
    result = api.search(space, budget="light", n_trials=1, out=out, device="cpu")  # resumes: nothing to run

    def broken(*args: object, **kwargs: object) -> RunSummary:
        raise RuntimeError("a bug in the summary")

    monkeypatch.setattr(api, "run_summary", broken)
    _print_result(result)
    printed = capsys.readouterr()
    assert "could not print the summary: RuntimeError: a bug in the summary" in caplog.text
    assert f"report: {out / 'report.html'}" in printed.out
    assert "finalists, scored again on fresh seeds (mean ± standard error):" in printed.out  # the plain lines


def test_a_winner_that_reads_no_template_is_described_by_its_model_and_method(
    light_run: tuple[Path, Path, str],
) -> None:
    """An embedding-head winner (methods embedding, contrastive) reads the instruction only: no 'template None'."""
    _, out, printed = light_run
    report = _report(out)
    assert report.best is not None
    assert "template None" not in printed
    config = report.best.config.model_copy(
        update={
            "baseline": False,
            "head": "embedding",
            "model": "minilm-setfit",
            "train": report.best.config.train.model_copy(update={"method": "contrastive"}),
            "prompt": report.best.config.prompt.model_copy(update={"template": None, "instruction": "Sort it."}),
        }
    )
    edited = report.model_copy(update={"best": report.best.model_copy(update={"config": config})})
    line = (
        f"best config (trial {report.best.trial}): model minilm-setfit (embedding head), method contrastive, "
        "instruction 'Sort it.'"
    )
    assert run_summary(edited, export_path=out / "best_prompt.yaml").chosen == line
    shown = _printed(edited, out)
    assert line in shown.getvalue().splitlines()
    assert "template" not in shown.getvalue() and "label words" not in shown.getvalue()
    # the reports describe it so too: its model, method and instruction, no template, label words or demonstrations
    markdown = render_markdown(edited)
    best_part = markdown.split("## Best config", 1)[1].split("\n## ", 1)[0]
    assert "## Best prompt" not in markdown and "- model: minilm-setfit (embedding head)" in best_part
    assert "- instruction: 'Sort it.'" in best_part and "method=contrastive" in best_part
    assert not any(w in best_part for w in ("- template", "- label words", "- demonstrations", "- calibration"))
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    html = render_html(study, edited)
    best_html = html.split('<section id="best-prompt">', 1)[1].split("</section>", 1)[0]
    assert "Best config · trial" in best_html and "minilm-setfit (embedding head)" in best_html
    assert not any(f"<th>{w}</th>" in best_html for w in ("template", "label words", "demonstrations"))
    # a head that reads the template without one: its plain input is named, never "None"
    plain = config.model_copy(update={"head": "classification", "model": None})
    plain = plain.model_copy(update={"train": plain.train.model_copy(update={"method": "full"})})
    chosen = run_summary(report.model_copy(update={"best": report.best.model_copy(update={"config": plain})})).chosen
    assert chosen is not None and chosen.startswith(
        f"best prompt (trial {report.best.trial}): template none (plain input)"
    )
