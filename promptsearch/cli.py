"""The ``promptsearch`` command line. Our own errors become one message and exit code 2."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from promptsearch.errors import IncompleteStudy, PromptsearchError, SpaceError
from promptsearch.space.budget import BUDGETS, budget_preset
from promptsearch.space.config import SEED_MAX  # NumPy's range; pydantic only, so the CLI starts fast

if TYPE_CHECKING:
    from promptsearch.reporting.summary import RunSummary
    from promptsearch.space.search_space import SearchSpace

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search prompt structure and fine-tuning hyperparameters together, on Optuna.",
)
console = Console()
err = Console(stderr=True)
EXIT_INCOMPLETE = 3  # `run` stopped before the study reached its budget (its workers died); the same command continues

SpaceArg = Annotated[Path, typer.Argument(help="Search-space YAML file (or an exported best_prompt.yaml).")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Run folder (default runs/<space name>/).")]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="PROMPTSEARCH_STORAGE",
        show_envvar=True,
        help="Optuna storage URL (default: SQLite in the run folder). Put URLs with a password in the "
        "environment variable instead of the command line.",
    ),
]
StudyOpt = Annotated[str | None, typer.Option("--study-name", help="Study name (default: the space name).")]
WorkersOpt = Annotated[
    int, typer.Option("--workers", min=1, help="Worker processes on this machine (several share a journal file).")
]
HeartbeatOpt = Annotated[
    float,
    typer.Option(
        "--heartbeat", min=0.5, max=86400, help="Seconds between heartbeats; a silent trial is stale after 3x."
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.")]


def _budget(value: str | None) -> str | None:
    """``--budget``'s check: one message with the three names."""
    if value is None:
        return None
    try:
        return budget_preset(value).name
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


BudgetOpt = Annotated[
    str | None,
    typer.Option(
        "--budget",
        callback=_budget,
        help="light | medium | heavy: sets search.n_trials, evaluation.folds, finalists and final_seeds where the "
        "space does not write them, in place of its search.budget ("
        + "; ".join(p.describe() for p in BUDGETS.values())
        + "). --n-trials and --final-seeds still win.",
    ),
]


def _seed(value: int | None) -> int | None:
    """A seed option's check: one message with the range and the value given."""
    if value is not None and not 0 <= value <= SEED_MAX:
        raise typer.BadParameter(f"expected an integer from 0 to {SEED_MAX} (2**32 - 1), but got {value}")
    return value


def say(text: str) -> None:
    """Print user-facing text as is (no rich markup: data and params contain brackets)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _error(line: str) -> None:
    err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    _error(message)
    raise typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
    import optuna

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)


def _version(value: bool) -> None:
    if value:
        from promptsearch.versions import versions

        say(" ".join(f"{k} {v}" for k, v in versions().items()))
        raise typer.Exit(0)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the versions and exit.")
    ] = False,
) -> None:
    _setup_logging(verbose)


@app.command("init")
def init_cmd(
    data: Annotated[
        str,
        typer.Argument(
            help="A JSONL, JSON, CSV, TSV or Parquet file of labelled rows, a folder of split files (train.jsonl, "
            "dev.jsonl, test.jsonl), or a Hugging Face Hub dataset owner/name[:config].",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="The space file to write (default: <name>.yaml in this folder)."),
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", help="The text field; give it twice for sentence pairs (default: guessed)."),
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="The label field (default: guessed).")] = None,
    labels: Annotated[
        str | None, typer.Option("--labels", help="The classes, comma-separated, as written in the data.")
    ] = None,
    test: Annotated[
        Path | None, typer.Option("--test", help="A labelled file kept apart as the test split (final report only).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Study name (default: from the data's file or folder name).")
    ] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="light | medium | heavy: writes search.budget.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the space file if it exists.")] = False,
) -> None:
    """Write a commented search space for your data: fields, classes, data set-up, prompts and installed models."""
    from promptsearch.scaffold import default_name, init_space

    target = out if out is not None else Path(f"{name or default_name(data)}.yaml")
    classes = [c.strip() for c in labels.split(",")] if labels is not None else None
    result = init_space(
        data,
        out=target,
        text=text,
        label=label,
        labels=classes,
        test=test,
        name=name,
        budget=budget,  # checked by init_space
        force=force,
    )
    profile = result.profile
    for split in profile.splits.values():
        say(f"{split.role}: {split.source}: {split.rows} rows")
    for note in profile.notes:
        say(f"  {note}")
    roles = [role for role, _ in result.balance]
    width = max(len(c) for c in [*profile.labels, "class"])
    say("class balance:")
    say("  " + "class".ljust(width) + "".join(f"{role:>8}" for role in roles))
    for label_ in profile.labels:
        say("  " + label_.ljust(width) + "".join(f"{counts[label_]:>8}" for _, counts in result.balance))
    if result.lengths is not None:
        lengths = result.lengths
        say(
            f"text length: median {lengths.median} {lengths.unit}, 95th percentile {lengths.p95}, "
            f"longest {lengths.longest}"
        )
    for note in result.plan.notes:
        say(f"data set-up: {note}")
    say(f"models: {', '.join(m.id for m in result.models)}")
    for line in result.warnings:
        say(f"warning: {line}")
    say(f"wrote {result.path}")
    first, *rest = result.next_commands()
    say(f"next: {first}")
    for line in rest:
        say(f"then: {line}")


@app.command()
def validate(path: SpaceArg) -> None:
    """Check a search space and its data; print 'ok' and a summary, or every problem (exit 2)."""
    from promptsearch.api import load_any_space
    from promptsearch.io.data import load_task_data
    from promptsearch.study.checks import check_space_data, data_summary

    space = load_any_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    check_space_data(space, data)
    words = _check_words(space)
    say(f"ok: {space.summary()}; data: {data_summary(data)}{words}")


def _check_words(space: SearchSpace) -> str:
    """The model checks that need only the tokenizers (label words, mask token, chat template), as a summary."""
    from promptsearch.study.checks import check_models

    checks = check_models(space)
    if checks.not_checked is not None:
        return f"; label words not checked ({checks.not_checked})"
    n = checks.label_words
    if not n:
        return ""
    generated = " (generated ones are checked as they are made)" if space.needs_generation else ""
    return f"; label words: {n} template x map combination(s) checked against the tokenizer{generated}"


def _parse_sets(values: list[str]) -> dict[str, Any]:
    import yaml

    from promptsearch.errors import ConfigError
    from promptsearch.space.yamlsafe import SET_VALUE_LIMITS, load_yaml

    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            _fail(f"--set {item!r}: expected key=value, e.g. --set prompt.template=cloze")
        key, raw = item.split("=", 1)
        where = f"--set {key.strip()}"
        try:
            out[key.strip()] = (
                load_yaml(raw, where=where, limits=SET_VALUE_LIMITS, error=ConfigError, lines=False).data
                if raw.strip()
                else raw
            )
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


@app.command()
def render(
    path: SpaceArg,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Fix a parameter: key=value (repeatable).")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Examples to render.")] = 3,
    split: Annotated[str, typer.Option("--split", help="train or dev.")] = "dev",
    seed: Annotated[
        int,
        typer.Option("--seed", callback=_seed, help="Seed of the parameters not fixed with --set (0 to 2**32 - 1)."),
    ] = 0,
) -> None:
    """Print rendered prompts for one point of the space, with token counts."""
    from promptsearch.api import load_any_space
    from promptsearch.io.data import load_task_data
    from promptsearch.reporting.preview import render_examples

    if split not in ("train", "dev"):
        _fail(f"--split {split!r}: expected train or dev (the test split is read only by the final report)")
    space = load_any_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    if space.needs_generation:
        from promptsearch.models.device import resolve_device
        from promptsearch.study.candidates import describe, generate_candidates

        generated = generate_candidates(space, data, resolve_device("auto"))
        space = space.with_candidates(generated)
        say("generated now (a run generates them once and stores them with its study):")
        for level, line in describe(generated):
            say("  " * level + line)
    config, rendered, answers = render_examples(space, data, _parse_sets(set_ or []), n=n, split=split, seed=seed)
    say("parameters: " + json.dumps(config.params, ensure_ascii=False))
    if answers:
        head = config.head
        scored = "; ".join(f"{label} -> {' '.join(tokens)}" for label, tokens in answers.items())
        say(f"label words ({head} head, scored as these tokens): {scored}")
    for i, (prompt, tokens) in enumerate(rendered, start=1):
        extra = f", {prompt.demos_dropped} demonstration(s) dropped to fit" if prompt.demos_dropped else ""
        extra += ", query cut to fit" if prompt.query_truncated else ""
        console.rule(escape(f"example {i}: gold '{prompt.label}', {tokens} tokens{extra}"))
        say(prompt.text + (f"\n[pair] {prompt.text_pair}" if prompt.text_pair else ""))


@app.command()
def run(
    path: SpaceArg,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", min=0, help="Sampled trials (baseline not counted).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Stop starting trials after this many seconds.")
    ] = None,
    storage: StorageOpt = None,
    study_name: StudyOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    seed: Annotated[
        int | None,
        typer.Option("--seed", callback=_seed, help="Sampler seed, 0 to 2**32 - 1 (default: search.seed)."),
    ] = None,
    final_seeds: Annotated[
        int | None,
        typer.Option("--final-seeds", min=0, help="Seeds of the final test evaluation (0 = skip)."),
    ] = None,
    save_model: Annotated[Path | None, typer.Option("--save-model", help="Save the best config's model here.")] = None,
    workers: WorkersOpt = 1,
    heartbeat: HeartbeatOpt = 10.0,
    warm_start: Annotated[
        Path | None, typer.Option("--warm-start", help="Enqueue this best_prompt.yaml as the first trial.")
    ] = None,
    warm_start_study: Annotated[
        tuple[str, str] | None,
        typer.Option("--warm-start-study", help="URL NAME of an earlier study: enqueue its top trials."),
    ] = None,
    warm_start_top: Annotated[
        int, typer.Option("--warm-start-top", min=1, help="How many top trials --warm-start-study enqueues.")
    ] = 3,
    mlflow: Annotated[
        str | None,
        typer.Option(
            "--mlflow", help="Log every trial to this MLflow tracking URI (pip install 'promptsearch[mlflow]')."
        ),
    ] = None,
    max_restarts: Annotated[
        int, typer.Option("--max-restarts", min=0, help="With --workers: restarts of a worker that dies, per worker.")
    ] = 3,
    restart_delay: Annotated[
        float,
        typer.Option("--restart-delay", min=0, help="Seconds before restarting a dead worker (doubled each time)."),
    ] = 5.0,
    budget: BudgetOpt = None,
) -> None:
    """Run (or resume) a search, evaluate the best prompt on test, write the report and best_prompt.yaml.

    Exit codes: 0 done, 2 bad input, 130 interrupted (Ctrl-C),
    3 incomplete: workers kept dying and the budget was not reached;
    nothing was evaluated on test, and the same command continues the study.
    """
    from promptsearch.api import load_any_space, n_trials_for, search
    from promptsearch.reporting.progress import SearchProgress
    from promptsearch.study.storage import parse_storage_url

    if storage is not None:
        parse_storage_url(storage)  # a URL that cannot be used is refused before the space and data are read
    space = load_any_space(path)
    if budget is not None:
        space = space.with_budget(budget)
    plan = _warm_start_plan(space, warm_start, warm_start_study, warm_start_top)
    trackers = []
    if mlflow is not None:
        from promptsearch.reporting.tracking import mlflow_callback
        from promptsearch.study.pareto import objective_names

        objectives = objective_names(space.spec.search)
        trackers.append(mlflow_callback(mlflow, metric=space.spec.task.metric, objectives=objectives))
    total = (n_trials_for(space, None) if n_trials is None else n_trials) + 1
    with SearchProgress(console, total=total) as progress:
        try:
            result = search(
                space,
                n_trials=n_trials,
                timeout=timeout,
                storage=storage,
                study_name=study_name,
                out=out,
                device=device,
                seed=seed,
                final_seeds=final_seeds,
                save_model=save_model,
                callbacks=[progress.on_trial, *trackers],
                on_epoch=progress.on_epoch,
                progress=progress.status,
                workers=workers,
                heartbeat=heartbeat,
                warm_start=plan,
                max_restarts=max_restarts,
                restart_delay=restart_delay,
            )
        except KeyboardInterrupt:
            progress.stop()
            err.print(
                "interrupted: the running trial is recorded as failed (interrupted); "
                "run the same command again to continue the study"
            )
            raise typer.Exit(130) from None
        except IncompleteStudy as exc:
            progress.stop()
            _print_incomplete(exc)
            raise
    _print_result(result)


def _warm_start_plan(space: Any, file: Path | None, study: tuple[str, str] | None, top: int) -> Any:
    """Both warm-start sources as one plan, each fitted to ``space``; what did not fit is printed."""
    from promptsearch.study.warmstart import WarmStartPlan, from_export, from_study

    if file is None and study is None:
        return None
    plan = WarmStartPlan()
    if file is not None:
        plan = from_export(space, file)
    if study is not None:
        more = from_study(space, study[0], study[1], top=top)
        plan = WarmStartPlan(trials=plan.trials + more.trials, notes=plan.notes + more.notes)
    for line in plan.lines():
        say(line)
    return plan


@app.command()
def worker(
    path: Annotated[
        Path | None, typer.Argument(help="The study's space file (default: the space stored with the study).")
    ] = None,
    storage: Annotated[
        str, typer.Option("--storage", envvar="PROMPTSEARCH_STORAGE", show_envvar=True, help="The study's storage URL.")
    ] = "",
    study_name: Annotated[str, typer.Option("--study-name", help="The study to join.")] = "",
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", min=0, help="The study's budget (baseline not counted).")
    ] = None,
    device: DeviceOpt = "auto",
    worker_index: Annotated[
        int, typer.Option("--worker-index", min=0, help="Gives this worker its own sampler seed.")
    ] = 0,
    heartbeat: HeartbeatOpt = 10.0,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Stop starting trials after this many seconds.")
    ] = None,
    budget: BudgetOpt = None,
) -> None:
    """Join an existing study from any machine and run trials until its budget is reached."""
    from promptsearch.api import work

    if not storage or not study_name:
        _fail("worker needs --storage URL (or PROMPTSEARCH_STORAGE) and --study-name NAME of an existing study")
    ran = work(
        path,
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        device=device,
        worker_index=worker_index,
        heartbeat=heartbeat,
        timeout=timeout,
        budget=budget,
    )
    import torch

    waits = os.environ.get("OMP_WAIT_POLICY", "the OpenMP default")
    say(f"worker {worker_index}: ran {ran} trial(s) on {torch.get_num_threads()} thread(s), OpenMP waits "
        f"{waits.lower() if waits.isupper() else waits}; the study has reached its budget")  # fmt: skip


def _print_result(result: Any) -> None:
    from promptsearch.reporting.report import fmt_score, fmt_test
    from promptsearch.reporting.schema import chosen_lines
    from promptsearch.reporting.summary import describe_chosen

    rep = result.report
    best, base = rep.best, rep.baseline
    t = rep.trials
    say(
        f"\n{rep.space.name}: {t.total} trials ({t.complete} complete, "
        f"{t.pruned} pruned, {t.fail} failed) in {rep.seconds.total or 0:.0f} s"
    )
    if best:
        say(describe_chosen(best))
        say(f"  {rep.metric}: dev {fmt_score(best.dev_score)}, test {fmt_test(best.test)}")
    if base:
        say(f"plain fine-tuning baseline: dev {fmt_score(base.dev_score)}, test {fmt_test(base.test)}")
    label = "best config (plain)" if best and best.config.baseline else "best prompt"
    try:  # the report and the export are written already: a bug here must not lose the run
        _print_summary(result.summary(), rep)
    except Exception as exc:
        logging.getLogger(__name__).warning("could not print the summary: %s: %s", type(exc).__name__, exc)
        for line in chosen_lines(rep):
            say(line)
    say(f"report: {result.out_dir / 'report.html'} (and report.md); {label}: {result.export_path}")


def _print_incomplete(exc: IncompleteStudy) -> None:
    """The finalists so far of a study that stopped short (the error message that follows says what to do)."""
    from promptsearch.reporting.schema import Report
    from promptsearch.reporting.summary import run_summary

    if not isinstance(exc.report, Report):
        return
    try:
        _print_summary(run_summary(exc.report), exc.report, steps=False)
    except Exception as error:
        logging.getLogger(__name__).warning("could not print the summary: %s: %s", type(error).__name__, error)


def summary_table(summary: RunSummary) -> Any:
    """The finalists as a rich table: estimate ± standard error, prompt tokens, whether each one trains."""
    from rich.table import Table

    if summary.raced:
        title = f"finalists, scored again on fresh seeds ({summary.metric}, mean ± standard error)"
    else:
        title = f"chosen config and baseline ({summary.metric} in the search; no race)"
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("")
    table.add_column("config")
    table.add_column(summary.metric, justify="right")
    table.add_column("prompt tokens", justify="right")
    table.add_column("trains")
    for row in summary.rows:
        estimate = "-" if row.estimate is None else f"{100 * row.estimate:.1f}"  # points, as dev and test are
        if row.std_error is not None:
            estimate += f" ± {100 * row.std_error:.1f}"
        tokens = "-" if row.prompt_tokens is None else f"{row.prompt_tokens:.0f}"
        trains = "-" if row.trains is None else ("yes" if row.trains else "no")
        table.add_row("→" if row.chosen else "", escape(row.name), estimate, tokens, trains)
    return table


def _print_summary(summary: RunSummary, report: Any, *, steps: bool = True) -> None:
    """The table, how the race chose, the verdict and the next steps."""
    from promptsearch.reporting.schema import evaluation_line

    how = evaluation_line(report)
    if how:
        say(how)
    if summary.rows:
        console.print(summary_table(summary), soft_wrap=True)
    if report.race is not None:
        say(f"  {report.race.reason}")
        for note in report.race.notes:
            say(f"  note: {note}")
    if summary.verdict:
        say(summary.verdict)
    if report.gap_warning:
        say(f"warning: {report.gap_warning}")
    if not steps or not summary.next_steps:
        return
    say("next:")
    for step in summary.next_steps:
        say(f"  - {step.text}" + (f":\n      {step.command}" if step.command else ""))


@app.command("report")
def report_cmd(
    out: OutOpt = None,
    storage: StorageOpt = None,
    study_name: StudyOpt = None,
    device: DeviceOpt = "auto",
    final_seeds: Annotated[int | None, typer.Option("--final-seeds", min=0)] = None,
) -> None:
    """Rebuild report.md and report.json from the storage (training only a missing final evaluation)."""
    from promptsearch.api import report

    result = report(out=out, storage=storage, study_name=study_name, device=device, final_seeds=final_seeds)
    if result.incomplete:
        say(f"incomplete study: {result.incomplete}")
    say(f"wrote the report of study '{result.study}'")


@app.command("export")
def export_cmd(
    out: OutOpt = None,
    storage: StorageOpt = None,
    study_name: StudyOpt = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (default <out>/best_prompt.yaml).")
    ] = None,
) -> None:
    """Write the best prompt of a study as a self-contained YAML config."""
    from promptsearch.api import export_best

    target = export_best(out=out, storage=storage, study_name=study_name, output=output)
    say(f"wrote {target}")


@app.command("train")
def train_cmd(
    path: SpaceArg,
    save_model: Annotated[
        Path | None, typer.Option("--save-model", help="Save the model, tokenizer and prompt here.")
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Fine-tune one fixed config (e.g. best_prompt.yaml) and optionally save the model."""
    from promptsearch.api import train_config

    scores = train_config(path, save_model=save_model, device=device)
    test = "n/a" if scores["test"] is None else f"{100 * scores['test']:.2f}"
    say(f"dev {100 * scores['dev']:.2f} (epoch {scores['dev_epoch']}), test {test}")
    if save_model is not None:
        say(f"saved to {save_model}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by --save-model.")],
    input_: Annotated[
        Path,
        typer.Option(
            "--input",
            help="JSONL, JSON, CSV, TSV or Parquet file with the text field(s). Each row gives one output row, "
            "labelled or with its own error. A column named like an output column (prediction, probability, "
            "probabilities, error, p_<label>) is refused, never overwritten: rename it.",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", help="JSONL or CSV file to write (default: JSONL to stdout).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per inference batch.")] = 64,
    device: DeviceOpt = "auto",
) -> None:
    """Label new texts with a saved model, streaming a file of any size: label and per-class probabilities."""
    from promptsearch.inference.batch import predict_file_streaming
    from promptsearch.inference.predict import Predictor
    from promptsearch.reporting.progress import stream_progress

    predictor = Predictor(model_dir, device=device)
    with stream_progress(err, label=input_.name) as progress:
        stats = predict_file_streaming(
            predictor, input_, output, batch_size=batch_size, stream=sys.stdout, progress=progress
        )
    where = f" to {output}" if output is not None else ""
    (console if output is not None else err).print(
        f"wrote predictions{where}: {stats.summary()}", markup=False, highlight=False, soft_wrap=True
    )


_REFUSALS = {
    errno.EACCES: "this user may not read or write it; check the permissions of the file and of its folders",
    errno.EPERM: "this user may not read or write it; check the permissions of the file and of its folders",
    errno.EROFS: "the file system is read-only; give a path on a writable one",
    errno.ENOSPC: "the disk is full; free some space or give a path on another disk",
    errno.EDQUOT: "this user's disk quota is used up; free some space or give another path",
    errno.ENAMETOOLONG: "a name in the path is too long for the file system; give a shorter path",
}


def file_system_refusal(exc: OSError) -> str | None:
    """One message for a file the system refuses (permissions, a read-only or full disk, a name too long):
    wherever a path the user named is read or written (space, data, model and storage files, outputs),
    the refusal names the file, what happened and the fix. None for any other error."""
    fix = _REFUSALS.get(exc.errno) if exc.errno is not None else None
    if fix is None or exc.filename is None:
        return None
    return f"{exc.filename}: {exc.strerror or 'refused'}: {fix}"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 3 study incomplete, 130 interrupted)."""
    try:
        # standalone mode: typer itself reports usage errors (unknown option, bad value) and exits 2
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except SpaceError as exc:
        for line in exc.messages:
            _error(line)
        return 2
    except IncompleteStudy as exc:
        first, *rest = str(exc).splitlines()
        _error(first)
        for line in rest:
            err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_INCOMPLETE
    except PromptsearchError as exc:
        for line in str(exc).splitlines():
            _error(line)
        return 2
    except OSError as exc:
        message = file_system_refusal(exc)
        if message is None:
            raise  # not about a path the user gave: a bug, shown as one
        _error(message)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
