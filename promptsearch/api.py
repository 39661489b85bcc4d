"""The Python API. :class:`Study` searches a space in memory (``optimize``, ``best``, ``finalists``,
``report``, ``export``); :func:`evaluate` scores one config; :func:`train` fits one config into a
:class:`~promptsearch.inference.predict.Model` and :func:`load` reads a saved one back. ``search``
(the CLI's ``run``) is a :class:`Study` that writes its files; ``report`` and ``export_best`` rebuild them.

>>> space = promptsearch.Space.from_yaml("search_spaces/sst2.yaml")        # doctest: +SKIP
>>> study = promptsearch.Study(space).optimize(8)                           # doctest: +SKIP
>>> model = promptsearch.train(study.best)                                  # doctest: +SKIP
>>> model.predict(["a moving, funny film"])                                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import optuna

from promptsearch.errors import ConfigError, IncompleteStudy, PromptsearchError
from promptsearch.experimental import experimental
from promptsearch.files import creatable_folder
from promptsearch.io.data import TaskData, TaskDataInput, load_task_data, task_data
from promptsearch.io.export import (
    ExportedScores,
    ExportedTask,
    PromptExport,
    export_to_space,
    is_export_file,
    load_prompt_config,
    write_prompt_config,
)
from promptsearch.redact import mask_url
from promptsearch.reporting.report import build_report, incomplete_note, write_reports
from promptsearch.reporting.schema import Finalist, Race, Report
from promptsearch.reporting.summary import RunSummary, run_summary
from promptsearch.space.budget import MEDIUM
from promptsearch.space.config import TrialConfig
from promptsearch.space.dimensions import Fixed
from promptsearch.space.registry import DEFAULT_HEAD
from promptsearch.space.sampling import baseline_config
from promptsearch.space.search_space import SearchSpace, load_space, parse_space
from promptsearch.space.spec import DataSource, ModelSpec
from promptsearch.study.candidates import ensure_candidates, generated_parts, stored_candidates
from promptsearch.study.checks import check_space_data, check_test_split
from promptsearch.study.final import final_evaluation, stored_final
from promptsearch.study.finalists import race_finalists
from promptsearch.study.objective import TrialRunner
from promptsearch.study.records import (
    RunStatus,
    TrialRecord,
    baseline_trial,
    best_trial,
    completed_trial_attrs,
    count_done,
    epoch_recorder,
    store_run,
    stored_final_raw,
    stored_space,
    trial_records,
)
from promptsearch.study.storage import (
    HEARTBEAT_SECONDS,
    default_out_dir,
    open_study,
    run_trials,
)
from promptsearch.study.supervise import MAX_RESTARTS, RESTART_DELAY, Supervision, supervise
from promptsearch.study.workers import (
    WorkerLauncher,
    choose_storage,
    existing_storage,
    watch_coordinator,
    worker_seed,
)
from promptsearch.versions import versions

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from promptsearch.inference.predict import Model
    from promptsearch.study.warmstart import WarmStartPlan

__all__ = [
    "Evaluation",
    "Finalist",
    "SearchResult",
    "Study",
    "TestResult",
    "config_from",
    "evaluate",
    "export_best",
    "load",
    "load_any_space",
    "report",
    "search",
    "train",
    "train_config",
    "work",
]

logger = logging.getLogger(__name__)
CANDIDATES_WAIT = 900.0  # seconds a joining worker waits for the study's generated candidates
DEFAULT_N_TRIALS = MEDIUM.n_trials  # sampled trials when neither the call nor the space's search.n_trials says


def n_trials_for(space: SearchSpace, n_trials: int | None) -> int:
    """The trial budget: ``n_trials`` if given, else the space's ``search.n_trials``, else 20."""
    if n_trials is None:
        return space.spec.search.n_trials or DEFAULT_N_TRIALS
    if n_trials < 0:
        raise ConfigError(f"--n-trials must be >= 0, but got {n_trials}")
    return n_trials


@dataclass
class SearchResult:
    """What a search produced; ``best_test``/``baseline_test`` are ``{"mean", "std", "scores"}`` or None."""

    space: SearchSpace
    study: optuna.Study
    out_dir: Path
    best_config: TrialConfig | None
    best_dev: float | None
    best_test: dict[str, Any] | None
    baseline_dev: float | None
    baseline_test: dict[str, Any] | None
    report: Report
    export_path: Path | None = None
    saved_model: Path | None = None  # the folder save_model= wrote

    def summary(self) -> RunSummary:
        """The end of the run in brief: the finalists, the verdict and the next steps (the CLI prints it)."""
        return run_summary(self.report, export_path=self.export_path, saved_model=self.saved_model)


def load_any_space(path: str | Path) -> SearchSpace:
    """A search-space file, or an exported best prompt read as a one-point space."""
    if is_export_file(path):
        return export_to_space(load_prompt_config(path), path=Path(path))
    return load_space(path)


def _absolute_source(space: SearchSpace) -> DataSource | None:
    src = space.spec.task.data
    if src is None or src.hub is not None:
        return src

    def absolute(p: str) -> str:
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else (space.base_dir / path).resolve())

    return DataSource(dir=absolute(src.dir) if src.dir else None, files={k: absolute(v) for k, v in src.files.items()})


def _model_for(spec: ModelSpec, head: str) -> ModelSpec:
    """The model section of a config that ran with ``head`` (the baseline: a classification head)."""
    if head == spec.head:
        return spec
    return spec.model_copy(update={"head": head, "multi_token": None})


def build_export(
    space: SearchSpace, study: optuna.Study, data: TaskData, *, best: TrialRecord | None = None
) -> PromptExport:
    """The best trial of ``study`` as a :class:`PromptExport` (with test scores when evaluated).

    ``best``: the study's :func:`~promptsearch.study.records.best_trial`, when the caller has it already.
    """
    records = trial_records(study)
    best = best_trial(study, records) if best is None else best
    if best is None or best.config is None:
        raise PromptsearchError(f"study '{study.study_name}' has no completed trial, so there is nothing to export")
    config = best.config
    base = baseline_trial(study, records)
    final = stored_final_raw(study) or {}
    if final and final.get("key", {}).get("best_trial") != best.number:
        final = {}
    task = space.spec.task
    pool = []
    if config.prompt.demonstrations.count > 0:
        pool = [{**ex.fields, task.label_field: ex.label} for ex in data.train]
    return PromptExport(
        name=space.name,
        space_file=str(space.path) if space.path else None,
        trial=best.number,
        model=_model_for(space.model_spec(config.model), config.head),
        task=ExportedTask(
            text_fields=task.text_fields,
            label_field=task.label_field,
            labels=task.labels,
            metric=task.metric,
            data=_absolute_source(space),
            splits=task.splits,
            few_shot=task.few_shot,
            dev_from_train=task.dev_from_train,
        ),
        prompt=config.prompt,
        demonstration_pool=pool,
        calibration=best.calibration,
        generated=generated_parts(study, config),
        train=config.train,
        baseline_train=(base.config.train if base is not None and base.config else baseline_config(space).train),
        params=dict(best.params),
        scores=ExportedScores(
            metric=task.metric,
            dev=best.dev,
            dev_epoch=best.best_epoch,
            test=(final.get("best") or {}).get("test"),
            baseline_dev=base.dev if base is not None else None,
            baseline_test=(final.get("baseline") or {}).get("test"),
        ),
        data_fingerprint=data.fingerprint,
        versions=versions(),
    )


def _evaluation(space: SearchSpace) -> dict[str, Any]:
    ev = space.spec.search.evaluation
    return {"mode": ev.mode, "folds": ev.folds, "seeds": ev.seeds, "final_train": ev.final_rows}


def _build_report(
    space: SearchSpace,
    study: optuna.Study,
    final: dict[str, Any] | None,
    *,
    records: Sequence[TrialRecord],
    best: TrialRecord | None,
    search_seconds: float | None = None,
    started: float | None = None,
) -> Report:
    file = str(space.path) if space.path else None
    return build_report(
        study,
        space_name=space.name,
        space_file=file,
        metric=space.spec.task.metric,
        final=final,
        evaluation=_evaluation(space),
        records=records,
        best=best,
        search_seconds=search_seconds,
        started=started,
    )


def _make_runner(space: SearchSpace, data: TaskData, device: str | None) -> TrialRunner:
    from promptsearch.models.device import resolve_device
    from promptsearch.models.runtime import ModelRuntime

    dev = resolve_device(device)
    t0 = time.perf_counter()
    runtime = ModelRuntime(space.model, space.spec.task.labels, dev)
    logger.info("loaded %s on %s in %.1f s", runtime.name, dev, time.perf_counter() - t0)
    return TrialRunner(space=space, data=data, runtime=runtime)


def _resolve_space(space_or_path: SearchSpace | str | Path) -> SearchSpace:
    return space_or_path if isinstance(space_or_path, SearchSpace) else load_any_space(space_or_path)


def _load_data(space: SearchSpace, data: TaskDataInput | None) -> TaskData:
    """The task's data: passed in code (checked like files), else read from the files the space names. The test
    split is read too, before any training (:func:`~promptsearch.study.checks.check_test_split`)."""
    loaded = task_data(space.spec.task, data) if data is not None else load_task_data(space.spec.task, space.base_dir)
    check_test_split(loaded)
    return loaded


@dataclass(frozen=True)
class TestResult:
    """One config of the final comparison on test: the chosen trial's, or the plain fine-tuning baseline's."""

    __test__ = False  # not a pytest class

    role: str  # "best" or "baseline"
    trial: int | None
    config: TrialConfig
    dev: float | None
    test: dict[str, Any] | None  # {"mean", "std", "scores"} over the final seeds; None without a test split


class Study:
    """A search of ``space`` over its data: Optuna's study with the model loaded once for all trials.

    Nothing is written to disk unless asked: the Optuna storage is in memory by default (give
    ``storage`` a URL such as ``sqlite:///study.db`` to keep it, and to resume with the same ``name``).
    ``data`` passes the splits in code (a mapping split -> list of dicts, DataFrame or Dataset);
    without it the files named by the space's ``task.data`` are read.

    >>> study = Study(space, data={"train": rows, "dev": dev_rows}).optimize(8)   # doctest: +SKIP
    >>> study.best.prompt.template, study.best.scores.dev                          # doctest: +SKIP
    """

    def __init__(
        self,
        space: SearchSpace | str | Path,
        data: TaskDataInput | None = None,
        *,
        storage: str | None = None,
        name: str | None = None,
        device: str | None = "auto",
        seed: int | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        from promptsearch.models.device import resolve_device

        space = _resolve_space(space)
        resolve_device(device)  # a bad device fails now, not after the study exists
        self.data = _load_data(space, data)
        check_space_data(space, self.data)
        self.device = device
        self.storage = storage
        self.heartbeat = heartbeat
        self.optuna_study = open_study(
            space, storage, name or space.name, data_fingerprint=self.data.fingerprint, seed=seed, heartbeat=heartbeat
        )
        # generated candidates: once per study, before any trial or worker; read back on resume
        self.space = ensure_candidates(space, self.optuna_study, self.data, device)
        self._runner: TrialRunner | None = None

    @property
    def name(self) -> str:
        return self.optuna_study.study_name

    @property
    def runner(self) -> TrialRunner:
        """The model, loaded on first use: a finished study with a stored final evaluation needs none."""
        if self._runner is None:
            self._runner = _make_runner(self.space, self.data, self.device)
        return self._runner

    def optimize(
        self,
        n_trials: int | None = None,
        *,
        timeout: float | None = None,
        callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
        on_epoch: Callable[[int, int, float], None] | None = None,
    ) -> Study:
        """Run trials until the study has ``n_trials`` sampled trials (+ the baseline); returns the study.

        ``n_trials`` and ``timeout`` default to the space's ``search`` section. Calling it again with a
        larger ``n_trials`` runs only the missing trials.
        """
        n = n_trials_for(self.space, n_trials)
        timeout = self.space.spec.search.timeout if timeout is None else timeout
        if count_done(self.optuna_study) < n + 1:
            run_trials(
                self.runner, self.optuna_study, n_trials=n, timeout=timeout, callbacks=callbacks, on_epoch=on_epoch,
                heartbeat=self.heartbeat,
            )  # fmt: skip
        self.race()
        return self

    def race(self, *, progress: Callable[[str], None] | None = None) -> Race | None:
        """Race the finalists (``search.finalists``) on fresh seeds; the winner becomes :attr:`best`.

        Stored with the study and reused until another trial finishes; None when there is nothing to race.
        """
        record = race_finalists(lambda: self.runner, self.optuna_study, progress=progress)
        return Race.model_validate(record) if record is not None else None

    def enqueue(self, plan: WarmStartPlan) -> int:
        """Queue earlier configs (:mod:`promptsearch.study.warmstart`) as the next trials; returns how many."""
        from promptsearch.study.warmstart import enqueue

        return enqueue(self.optuna_study, plan)

    @property
    def best_trial(self) -> TrialRecord | None:
        """The chosen trial: the race's winner after :meth:`race` (which :meth:`optimize` runs), else the best
        search value (with several objectives, the recommended one)."""
        return best_trial(self.optuna_study)

    @property
    def best(self) -> PromptExport:
        """The best config as a self-contained prompt config (what :meth:`export` writes and :func:`train` takes)."""
        return build_export(self.space, self.optuna_study, self.data)

    def final_evaluation(
        self,
        seeds: int | None = None,
        *,
        save_model: Callable[[TrialConfig, TrialRunner], None] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any] | None:
        """Score the best config and the baseline on test with ``seeds`` seeds (default: the space's
        ``search.final_seeds``); stored with the study and reused. None without a test split or trials."""
        seeds = self.space.spec.search.final_seeds if seeds is None else seeds
        if seeds < 0:
            raise ConfigError(f"--final-seeds must be >= 0, but got {seeds}")
        if seeds == 0 or not self.data.has_test or self.best_trial is None:
            return None
        final = stored_final(self.optuna_study, self.space, self.data, seeds) if save_model is None else None
        if final is None:
            final = final_evaluation(
                self.runner, self.optuna_study, seeds=seeds, save_model=save_model, progress=progress
            )
        return final

    @property
    @experimental("0.1.0", name="Study.finalists")
    def finalists(self) -> list[Finalist]:
        """The race's finalists, best first: each one's mean ± standard error on fresh seeds (runs the race
        when it is due). Empty when there was nothing to race (``search.finalists: 0``, or one trial)."""
        race = self.race()
        return list(race.standings) if race is not None else []

    @property
    @experimental("0.1.0", name="Study.test_results")
    def test_results(self) -> list[TestResult]:
        """The chosen config and the baseline with their test scores (the final evaluation runs on first use)."""
        final = self.final_evaluation() or {}
        out = []
        for role, trial in (("best", self.best_trial), ("baseline", baseline_trial(self.optuna_study))):
            if trial is None or trial.config is None:
                continue
            test = (final.get(role) or {}).get("test")
            out.append(TestResult(role, trial.number, trial.config, trial.dev, test))
        return out

    def report(self) -> Report:
        """Everything the report shows (the final evaluation when stored); writes nothing."""
        seeds = self.space.spec.search.final_seeds
        final = stored_final(self.optuna_study, self.space, self.data, seeds) if self.data.has_test else None
        return _build_report(self.space, self.optuna_study, final, records=trial_records(self.optuna_study),
                             best=self.best_trial)  # fmt: skip

    def export(self, path: str | Path) -> Path:
        """Write the best config to ``path`` as a prompt config YAML (``promptsearch train``/``load`` read it)."""
        return write_prompt_config(self.best, Path(path))


def _check_save_target(save_model: str | Path | None, space: SearchSpace, final_seeds: int) -> None:
    if save_model is None:
        return
    from promptsearch.inference.predict import check_save_target

    check_save_target(save_model)
    creatable_folder(save_model, "--save-model")
    if final_seeds == 0 or space.spec.task.splits.test is None:
        raise ConfigError(
            "--save-model saves the model of the final evaluation: it needs a test split and --final-seeds >= 1"
        )


def search(
    space_or_path: SearchSpace | str | Path,
    *,
    data: TaskDataInput | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    out: str | Path | None = None,
    device: str | None = "auto",
    seed: int | None = None,
    final_seeds: int | None = None,
    save_model: str | Path | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    on_epoch: Callable[[int, int, float], None] | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int = 1,
    heartbeat: float = HEARTBEAT_SECONDS,
    warm_start: WarmStartPlan | None = None,
    max_restarts: int = MAX_RESTARTS,
    restart_delay: float = RESTART_DELAY,
    budget: str | None = None,
) -> SearchResult:
    """Run (or resume) the search of a space, evaluate on test, write the report and the best prompt.

    A :class:`Study` whose storage is a file of the run folder (``out``), which then writes
    ``report.*`` and ``best_prompt.yaml`` there. Arguments default to the space's ``search`` section.
    Running it again with the same storage continues the study and runs only the remaining trials.
    With ``workers`` > 1, that many worker processes share the study (a journal file in the run folder
    unless ``storage`` names another). ``warm_start`` (:func:`promptsearch.study.warmstart.from_export`
    / ``from_study``) enqueues earlier configs as the first trials after the baseline.

    A worker process that dies is restarted after ``restart_delay`` seconds (doubled for each further restart),
    at most ``max_restarts`` times per worker. When the budget cannot be reached the run stops before the final
    evaluation and raises :class:`~promptsearch.errors.IncompleteStudy` (the CLI exits 3); calling it again
    continues the study.

    ``budget`` (light, medium or heavy) sets ``search.budget`` in place of the space's
    (:meth:`SearchSpace.with_budget`); ``n_trials`` and ``final_seeds`` given here win over it.
    """
    t_start = time.perf_counter()
    space = _resolve_space(space_or_path)
    if budget is not None:
        space = space.with_budget(budget)
    n_trials = n_trials_for(space, n_trials)
    final_seeds = space.spec.search.final_seeds if final_seeds is None else final_seeds
    if final_seeds < 0:
        raise ConfigError(f"--final-seeds must be >= 0, but got {final_seeds}")
    timeout = space.spec.search.timeout if timeout is None else timeout
    if max_restarts < 0:
        raise ConfigError(f"--max-restarts must be >= 0, but got {max_restarts}")
    if restart_delay < 0:
        raise ConfigError(f"--restart-delay must be >= 0 seconds, but got {restart_delay}")
    _check_save_target(save_model, space, final_seeds)
    if workers > 1 and space.path is None:
        raise ConfigError("--workers needs the search space as a file, which every worker reads")
    if workers > 1 and data is not None:
        raise ConfigError("--workers needs the data as files, which every worker reads; leave data= out")
    out_dir = Path(out) if out is not None else default_out_dir(space)
    storage = choose_storage(out_dir, storage, workers)
    creatable_folder(out_dir, "--out")  # before the study exists: a run never trains and then cannot write
    study = Study(space, data, storage=storage, name=study_name, device=device, seed=seed, heartbeat=heartbeat)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the inputs and the storage are good
    if warm_start is not None:
        study.enqueue(warm_start)
    store_run(study.optuna_study, RunStatus(n_trials, "running"))  # a report meanwhile says it is incomplete
    if workers > 1:
        outcome = _run_workers(
            study, storage=storage, out_dir=out_dir, workers=workers, n_trials=n_trials, timeout=timeout,
            max_restarts=max_restarts, restart_delay=restart_delay, callbacks=callbacks, progress=progress,
        )  # fmt: skip
        if not outcome.complete:
            _stop_incomplete(study, out_dir, outcome, n_trials=n_trials, max_restarts=max_restarts)
    else:
        study.optimize(n_trials, timeout=timeout, callbacks=callbacks, on_epoch=on_epoch)
    store_run(study.optuna_study, RunStatus(n_trials, "finished"))
    search_seconds = time.perf_counter() - t_start
    # optimize() has raced already (with workers, nobody has): the stored race is reused when no trial finished
    # since, so this call costs nothing then, and races the workers' trials otherwise
    study.race(progress=progress)
    records = trial_records(study.optuna_study)  # the trials are finished: one read serves the rest
    best_record = best_trial(study.optuna_study, records)
    saver = None
    if save_model is not None:

        def saver(config: TrialConfig, trained: TrialRunner) -> None:
            from promptsearch.inference.predict import save_model as _save

            _save(trained.runtime_for(config.head, config.model), study.best, Path(save_model))

    final = study.final_evaluation(final_seeds, save_model=saver, progress=progress)
    rep = _build_report(
        study.space, study.optuna_study, final, records=records, best=best_record, search_seconds=search_seconds,
        started=t_start,
    )  # fmt: skip
    write_reports(out_dir, study.optuna_study, rep, records=records)
    export_path = study.export(out_dir / "best_prompt.yaml") if best_record is not None else None
    best, base = rep.best, rep.baseline
    return SearchResult(
        space=study.space,
        study=study.optuna_study,
        out_dir=out_dir,
        best_config=best.config if best else None,
        best_dev=best.dev_score if best else None,
        best_test=best.test.model_dump() if best and best.test else None,
        baseline_dev=base.dev_score if base else None,
        baseline_test=base.test.model_dump() if base and base.test else None,
        report=rep,
        export_path=export_path,
        saved_model=Path(save_model) if save_model is not None and final is not None else None,
    )


def _run_workers(
    study: Study,
    *,
    storage: str,
    out_dir: Path,
    workers: int,
    n_trials: int,
    timeout: float | None,
    max_restarts: int,
    restart_delay: float,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
    progress: Callable[[str], None] | None,
) -> Supervision:
    """Start ``workers`` worker processes on the study and keep them alive until the budget is reached."""
    assert study.space.path is not None
    launcher = WorkerLauncher(
        space_file=study.space.path, storage=storage, study_name=study.name, workers=workers, n_trials=n_trials,
        device=study.device, out_dir=out_dir, heartbeat=study.heartbeat, budget=study.space.spec.search.budget,
    )  # fmt: skip
    return supervise(
        launcher, study.optuna_study, workers=workers, target=n_trials + 1, heartbeat=study.heartbeat,
        max_restarts=max_restarts, restart_delay=restart_delay, timeout=timeout, callbacks=callbacks,
        progress=progress, storage_url=storage,
    )  # fmt: skip


def _stop_incomplete(
    study: Study, out_dir: Path, outcome: Supervision, *, n_trials: int, max_restarts: int
) -> NoReturn:
    """The budget cannot be reached: record it, write reports that say so (no final evaluation), and raise."""
    problems = outcome.problems(max_restarts) or [
        f"the workers exited before the budget was reached; their output: {out_dir / 'worker-*.log'}"
    ]
    lines = [
        f"study '{study.name}' is incomplete: {outcome.done} of {outcome.target} trials counted "
        f"({outcome.missing} missing), so no final evaluation was run and no best prompt was exported",
        *problems,
    ]
    rep = None
    try:
        store_run(study.optuna_study, RunStatus(n_trials, "incomplete", tuple(problems)))
        records = trial_records(study.optuna_study)
        rep = _build_report(study.space, study.optuna_study, None, records=records, best=best_trial(study.optuna_study))
        write_reports(out_dir, study.optuna_study, rep, records=records)
        lines.append(f"the report in {out_dir} says the study is incomplete")
    except Exception as exc:  # the storage may be gone: the message above matters more than the report
        logger.warning("could not write the report of the incomplete study: %s: %s", type(exc).__name__, exc)
    lines.append("run the same command again to continue the study; its finished trials are kept")
    raise IncompleteStudy("\n".join(lines), missing=outcome.missing, report=rep)


def work(
    space_or_path: SearchSpace | str | Path | None,
    *,
    storage: str,
    study_name: str,
    n_trials: int | None = None,
    device: str | None = "auto",
    worker_index: int = 0,
    heartbeat: float = HEARTBEAT_SECONDS,
    timeout: float | None = None,
    budget: str | None = None,
) -> int:
    """Join an existing study as one worker and run trials until the study has ``n_trials`` (+ baseline).

    Without a space file the space stored with the study is used. ``budget`` sets ``search.budget``
    (:meth:`SearchSpace.with_budget`), as ``run --budget`` did. A worker whose space or data differ
    from the study's refuses to join. Each running trial keeps its epoch current in the storage, so a trial
    whose worker dies says when. A worker started by ``run --workers N`` stops (its trial recorded as
    interrupted) when that coordinator is gone. Returns the number of trials this worker ran.
    """
    watch_coordinator(heartbeat)  # started by `run --workers N`: stop when it is gone
    threads = os.environ.get("PROMPTSEARCH_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    if space_or_path is None:
        space, _, _ = _open_existing(None, storage, study_name)
    else:
        space = _resolve_space(space_or_path)
    if budget is not None:
        space = space.with_budget(budget)
    data = load_task_data(space.spec.task, space.base_dir)
    study = open_study(
        space, storage, study_name, data_fingerprint=data.fingerprint, create=False, heartbeat=heartbeat,
        seed=worker_seed(space.spec.search.seed, worker_index),
    )  # fmt: skip
    n = n_trials_for(space, n_trials)
    space = ensure_candidates(space, study, data, device, wait=CANDIDATES_WAIT)
    runner = _make_runner(space, data, device)
    return run_trials(runner, study, n_trials=n, heartbeat=heartbeat, timeout=timeout, on_epoch=epoch_recorder(study))


def _open_existing(
    out: str | Path | None, storage: str | None, study_name: str | None, *, read_only: bool = False
) -> tuple[SearchSpace, optuna.Study, Path]:
    """The space, study and run folder of an existing study; a storage that holds none is refused unchanged
    (:func:`~promptsearch.study.storage.make_storage` with ``create=False``); ``read_only``: the database
    itself refuses writes while it is open."""
    if storage is None:
        if out is None:
            raise ConfigError("give --out DIR (a run folder) or --storage URL with --study-name NAME")
        out_dir = Path(out)
        storage = existing_storage(out_dir)
        if storage is None:
            raise ConfigError(
                f"--out {out_dir}: no study there (study.db or study.journal); "
                f"run `promptsearch run SPACE --out {out_dir}` first"
            )
    else:
        out_dir = Path(out) if out is not None else Path("runs") / (study_name or "study")
    from promptsearch.study.storage import make_storage

    store = make_storage(storage, create=False, read_only=read_only)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(f"{mask_url(storage)} holds {len(names)} studies ({names}); pick one with --study-name")
        study_name = names[0]
    if study_name not in names:
        raise ConfigError(f"--study-name '{study_name}': not in {mask_url(storage)}; studies there: {names or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=store)
    info = stored_space(study)
    text = info.text if info is not None else None
    if info is None or text is None:
        raise ConfigError(f"study '{study_name}' was not created by promptsearch (it stores no search space)")
    file = info.file
    space = parse_space(text, path=Path(file) if file else None, data_in_code=True)  # it was checked when stored
    stored = stored_candidates(study)
    if stored is not None and space.needs_generation:
        space = space.with_candidates(stored)
    if out is None:
        out_dir = Path("runs") / space.name
    return space, study, out_dir


def report(
    *,
    out: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    device: str | None = "auto",
    final_seeds: int | None = None,
) -> Report:
    """Rebuild report.md/json from the storage; trains only for a final evaluation not stored yet.

    A study short of the budget of its last run is marked incomplete (``Report.incomplete``) and not evaluated on
    test until it is complete.
    """
    space, study, out_dir = _open_existing(out, storage, study_name)
    creatable_folder(out_dir, "--out")  # before a final evaluation trains
    data = load_task_data(space.spec.task, space.base_dir)
    stored_seeds = len(((stored_final_raw(study) or {}).get("best") or {}).get("seeds", []))
    seeds = final_seeds if final_seeds is not None else (stored_seeds or space.spec.search.final_seeds)
    records = trial_records(study)
    best = best_trial(study, records)
    final = None
    if seeds > 0 and data.has_test and best is not None:
        final = stored_final(study, space, data, seeds, best=best)
        if final is None and incomplete_note(study, records) is None:  # an unfinished study is not tested yet
            check_test_split(data)  # before the final evaluation trains
            final = final_evaluation(_make_runner(space, data, device), study, seeds=seeds, best=best)
    result = _build_report(space, study, final, records=records, best=best)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_reports(out_dir, study, result, records=records)
    return result


def export_best(
    *,
    out: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    output: str | Path | None = None,
) -> Path:
    """Write the best prompt of a stored study to ``output`` (default ``<out>/best_prompt.yaml``)."""
    space, study, out_dir = _open_existing(out, storage, study_name, read_only=True)
    data = load_task_data(space.spec.task, space.base_dir)
    target = Path(output) if output is not None else out_dir / "best_prompt.yaml"
    return write_prompt_config(build_export(space, study, data), target)


@dataclass(frozen=True)
class Evaluation:
    """One config fitted and scored: the best dev score over the epochs, and the test score at that epoch."""

    config: TrialConfig
    dev: float
    dev_epoch: int
    history: list[float]  # dev score after each epoch
    test: float | None  # None without a test split (or when not asked)
    fit_seconds: float
    test_seconds: float
    train_seconds: float  # the training steps alone (fit_seconds also counts tokenizing and dev scoring)


def config_from(space: SearchSpace, config: TrialConfig | Mapping[str, Any] | None = None) -> TrialConfig:
    """The space's config for these parameter values (names as in ``space.params``; every parameter the space
    searches must be given), or ``config`` itself when it is one already. A parameter the space does not have,
    or a searched one left out, raises :class:`ConfigError` naming them."""
    from promptsearch.space.sampling import sample_config

    if isinstance(config, TrialConfig):
        return config
    params = dict(config or {})
    unknown = sorted(set(params) - set(space.params))
    if unknown:
        raise ConfigError(f"config: unknown parameter(s) {unknown}; the space's parameters are {sorted(space.params)}")
    searched = [k for k, d in space.params.items() if not isinstance(d, Fixed) and k not in params]
    if space.needs_generation:
        searched.append("generated candidates (auto)")
    if searched:
        raise ConfigError(
            f"one config is needed, but the space searches {searched}; give their values "
            "(config={'train.learning_rate': 2e-5, ...}), a TrialConfig, or fix them in the space"
        )
    return sample_config(optuna.trial.FixedTrial(params), space)


@experimental("0.1.0")
def evaluate(
    space: SearchSpace | str | Path,
    config: TrialConfig | Mapping[str, Any] | None = None,
    *,
    data: TaskDataInput | None = None,
    device: str | None = "auto",
    seed: int = 0,
    test: bool = True,
) -> Evaluation:
    """Fine-tune one config of ``space`` and score it on dev (every epoch) and test (at the best dev epoch).

    ``config`` is a :class:`TrialConfig`, a dict of parameter values (``{"train.learning_rate": 2e-5}``;
    the others must be fixed in the space), or None for a space with one point. Nothing is written.

    >>> promptsearch.evaluate(space, {"prompt.template": "review"}, data=data).test   # doctest: +SKIP
    """
    space = _resolve_space(space)
    chosen = config_from(space, config)
    runner = _make_runner(space, _load_data(space, data), device)
    t0 = time.perf_counter()
    result, _ = runner.fit(chosen, seed=seed, keep_best_state=True)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    score = runner.evaluate(chosen, "test") if test and runner.data.has_test else None
    return Evaluation(
        config=chosen,
        dev=result.best_score,
        dev_epoch=result.best_epoch,
        history=list(result.history),
        test=score,
        fit_seconds=fit_seconds,
        test_seconds=time.perf_counter() - t0 if score is not None else 0.0,
        train_seconds=result.train_seconds,
    )


def _fixed_space(source: PromptExport | SearchSpace | str | Path) -> tuple[SearchSpace, PromptExport | None]:
    """The one-point space of an export (in memory or a file) or of a space file, and the export if any."""
    if isinstance(source, PromptExport):
        return export_to_space(source, allow_plain=True), source
    if not isinstance(source, SearchSpace) and is_export_file(source):
        exported = load_prompt_config(source)
        return export_to_space(exported, path=Path(source), allow_plain=True), exported
    return _resolve_space(source), None


def _fit(
    source: PromptExport | SearchSpace | str | Path,
    data: TaskDataInput | None,
    device: str | None,
    seed: int,
) -> Model:
    """Fine-tune one fixed config (kept at its best dev epoch) and score it on test when there is one."""
    from promptsearch.inference.predict import Model

    space, exported = _fixed_space(source)
    searched = [k for k, d in space.params.items() if not isinstance(d, Fixed)]
    if space.needs_generation:
        searched.append("generated candidates (auto)")
    if searched:
        raise ConfigError(
            f"train needs one fixed config, but the space searches {searched}; run `promptsearch run` "
            "first and train its best_prompt.yaml"
        )
    loaded = _load_data(space, data)
    runner = _make_runner(space, loaded, device)
    if exported is not None:  # the export's own prompt (possibly plain, which no space can express)
        config = TrialConfig(
            prompt=exported.prompt,
            train=exported.train,
            baseline=exported.prompt.is_plain and exported.model.head == DEFAULT_HEAD,
            head=exported.model.head,
        )
    else:
        config = config_from(space, None)
    result, _ = runner.fit(config, seed=seed, keep_best_state=True)
    test = runner.evaluate(config, "test") if loaded.has_test else None
    study = optuna.create_study(direction=space.spec.search.direction)
    attrs = completed_trial_attrs(config, best_epoch=result.best_epoch, calibration=runner.calibration_for(config))
    study.add_trial(optuna.trial.create_trial(value=result.best_score, user_attrs=attrs))
    scores = {"dev": result.best_score, "dev_epoch": result.best_epoch, "test": test}
    runtime = runner.runtime_for(config.head, config.model)
    return Model.from_runtime(runtime, build_export(space, study, loaded), scores=scores)


def train(
    config: PromptExport | SearchSpace | str | Path,
    *,
    data: TaskDataInput | None = None,
    device: str | None = "auto",
    seed: int = 1000,
) -> Model:
    """Fine-tune one fixed config and return the trained model, in memory.

    ``config`` is an export (``study.best``, or a ``best_prompt.yaml`` path) or a space with one point.
    ``data`` passes the splits in code; without it the files the config names are read. The model
    (at its best dev epoch) has ``predict``, ``predict_proba`` and ``save``; ``model.scores`` holds
    ``{"dev", "dev_epoch", "test"}``.

    >>> model = promptsearch.train(study.best, data=data)    # doctest: +SKIP
    >>> model.save("model"); promptsearch.load("model").predict(["a fine film"])   # doctest: +SKIP
    """
    return _fit(config, data, device, seed)


def load(directory: str | Path, *, device: str | None = "auto") -> Model:
    """A model saved by :meth:`Model.save <promptsearch.inference.predict.Model.save>` or ``--save-model``."""
    from promptsearch.inference.predict import Model

    return Model(directory, device=device)


def train_config(
    space_or_path: SearchSpace | str | Path,
    *,
    save_model: str | Path | None = None,
    device: str | None = "auto",
    seed: int = 1000,
) -> dict[str, Any]:
    """Fine-tune one fixed config (an exported best prompt, or a space with one point) and score it.

    What ``promptsearch train`` runs. Returns ``{"dev": ..., "dev_epoch": ..., "test": ... or None}``;
    with ``save_model`` the model (at its best dev epoch), its tokenizer and the prompt config are written
    there (checked before training: a save never deletes a file it did not write).
    """
    from promptsearch.inference.predict import check_save_target

    if save_model is not None:
        check_save_target(save_model)
        creatable_folder(save_model, "--save-model")
    model = _fit(space_or_path, None, device, seed)
    if save_model is not None:
        model.save(save_model)
    return dict(model.scores)
