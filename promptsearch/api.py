"""The Python API: ``search`` runs (or resumes) a study end to end; ``report`` and ``export`` rebuild outputs.

>>> result = promptsearch.search("search_spaces/sst2.yaml", n_trials=8)   # doctest: +SKIP
>>> result.best_test["mean"], result.baseline_test["mean"]                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from promptsearch.errors import ConfigError, PromptsearchError
from promptsearch.io.data import TaskData, load_task_data
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
from promptsearch.reporting.report import build_report, write_reports
from promptsearch.space.config import TrialConfig
from promptsearch.space.dimensions import Fixed
from promptsearch.space.sampling import baseline_config
from promptsearch.space.search_space import SearchSpace, load_space, parse_space
from promptsearch.space.spec import DataSource, ModelSpec
from promptsearch.study.candidates import ensure_candidates, generated_parts, stored_candidates
from promptsearch.study.checks import check_space_data
from promptsearch.study.final import FINAL_ATTR, final_evaluation, stored_final
from promptsearch.study.objective import CALIBRATION_ATTR, TrialRunner, trial_config
from promptsearch.study.pareto import dev_value
from promptsearch.study.storage import (
    HEARTBEAT_SECONDS,
    baseline_trial,
    best_trial,
    count_done,
    default_out_dir,
    open_study,
    run_trials,
    stored_space_text,
)
from promptsearch.study.workers import choose_storage, existing_storage, launch_workers, worker_seed
from promptsearch.versions import versions

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from promptsearch.study.warmstart import WarmStartPlan

_FINISHED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)

__all__ = ["SearchResult", "export_best", "load_any_space", "report", "search", "train", "work"]

logger = logging.getLogger(__name__)
CANDIDATES_WAIT = 900.0  # seconds a joining worker waits for the study's generated candidates


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
    report: dict[str, Any] = field(default_factory=dict)
    export_path: Path | None = None


def load_any_space(path: str | Path) -> SearchSpace:
    """A search-space file, or an exported best prompt read as a one-point space."""
    if is_export_file(path):
        return export_to_space(load_prompt_config(path), path=Path(path))
    return load_space(path)


def _absolute_source(space: SearchSpace) -> DataSource:
    src = space.spec.task.data
    if src.hub is not None:
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


def build_export(space: SearchSpace, study: optuna.Study, data: TaskData) -> PromptExport:
    """The best trial of ``study`` as a :class:`PromptExport` (with test scores when evaluated)."""
    best = best_trial(study)
    if best is None:
        raise PromptsearchError(f"study '{study.study_name}' has no completed trial, so there is nothing to export")
    config = trial_config(best)
    base = baseline_trial(study)
    final = study.user_attrs.get(FINAL_ATTR) or {}
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
        ),
        prompt=config.prompt,
        demonstration_pool=pool,
        calibration=best.user_attrs.get(CALIBRATION_ATTR),
        generated=generated_parts(study, config),
        train=config.train,
        baseline_train=(trial_config(base).train if base is not None else baseline_config(space).train),
        params=dict(best.params),
        scores=ExportedScores(
            metric=task.metric,
            dev=dev_value(best),
            dev_epoch=best.user_attrs.get("best_epoch"),
            test=(final.get("best") or {}).get("test"),
            baseline_dev=dev_value(base) if base is not None else None,
            baseline_test=(final.get("baseline") or {}).get("test"),
        ),
        data_fingerprint=data.fingerprint,
        versions=versions(),
    )


def _build_report(space: SearchSpace, study: optuna.Study, final: dict[str, Any] | None) -> dict[str, Any]:
    file = str(space.path) if space.path else None
    return build_report(study, space_name=space.name, space_file=file, metric=space.spec.task.metric, final=final)


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


def search(
    space_or_path: SearchSpace | str | Path,
    *,
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
) -> SearchResult:
    """Run (or resume) the search of a space, evaluate on test, write the report and the best prompt.

    Arguments default to the space's ``search`` section. Running it again with the same storage
    continues the study and runs only the remaining trials. With ``workers`` > 1, that many worker
    processes share the study (a journal file in the run folder unless ``storage`` names another).
    ``warm_start`` (:func:`promptsearch.study.warmstart.from_export` / ``from_study``) enqueues earlier
    configs as the first trials after the baseline.
    """
    t_start = time.perf_counter()
    space = _resolve_space(space_or_path)
    search_spec = space.spec.search
    n_trials = (search_spec.n_trials or 20) if n_trials is None else n_trials
    if n_trials < 0:
        raise ConfigError(f"--n-trials must be >= 0, but got {n_trials}")
    final_seeds = search_spec.final_seeds if final_seeds is None else final_seeds
    if final_seeds < 0:
        raise ConfigError(f"--final-seeds must be >= 0, but got {final_seeds}")
    timeout = search_spec.timeout if timeout is None else timeout
    if save_model is not None:
        from promptsearch.inference.predict import check_save_target

        check_save_target(save_model)
        if final_seeds == 0 or space.spec.task.splits.test is None:
            raise ConfigError(
                "--save-model saves the model of the final evaluation: it needs a test split and --final-seeds >= 1"
            )
    from promptsearch.models.device import resolve_device

    resolve_device(device)  # a bad --device fails now, not after the study exists
    out_dir = Path(out) if out is not None else default_out_dir(space)
    storage = choose_storage(out_dir, storage, workers)
    study_name = study_name or space.name

    data = load_task_data(space.spec.task, space.base_dir)
    check_space_data(space, data)
    study = open_study(space, storage, study_name, data_fingerprint=data.fingerprint, seed=seed, heartbeat=heartbeat)
    # generated candidates: once per study, here, before any trial or worker; read back on resume
    space = ensure_candidates(space, study, data, device)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the inputs and the storage are good
    if warm_start is not None:
        from promptsearch.study.warmstart import enqueue

        enqueue(study, warm_start)
    loaded: list[TrialRunner] = []

    def runner() -> TrialRunner:
        """The model, loaded on first use: a finished study with a stored final evaluation needs none."""
        if not loaded:
            loaded.append(_make_runner(space, data, device))
        return loaded[0]

    if workers > 1:
        if space.path is None:
            raise ConfigError("--workers needs the search space as a file, which every worker reads")
        procs = launch_workers(
            space.path, storage, study_name, workers=workers, n_trials=n_trials, device=device,
            out_dir=out_dir, heartbeat=heartbeat, timeout=timeout,
        )  # fmt: skip
        _watch_workers(procs, study, callbacks, progress)
    elif count_done(study) < n_trials + 1:
        run_trials(
            runner(), study, n_trials=n_trials, timeout=timeout, callbacks=callbacks, on_epoch=on_epoch,
            heartbeat=heartbeat,
        )  # fmt: skip
    search_seconds = time.perf_counter() - t_start

    final = None
    if final_seeds > 0 and data.has_test and best_trial(study) is not None:
        saver = None
        if save_model is not None:

            def saver(config: TrialConfig) -> None:
                from promptsearch.inference.predict import save_model as _save

                runtime = runner().runtime_for(config.head, config.model)
                _save(runtime, build_export(space, study, data), Path(save_model))

        final = stored_final(study, space, data, final_seeds) if saver is None else None
        if final is None:
            final = final_evaluation(runner(), study, seeds=final_seeds, save_model=saver, progress=progress)

    report_dict = _build_report(space, study, final)
    report_dict["seconds"]["search"] = round(search_seconds, 2)
    report_dict["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    write_reports(out_dir, study, report_dict)
    export_path = None
    if best_trial(study) is not None:
        export_path = write_prompt_config(build_export(space, study, data), out_dir / "best_prompt.yaml")
    best, base = report_dict["best"], report_dict["baseline"]
    return SearchResult(
        space=space,
        study=study,
        out_dir=out_dir,
        best_config=trial_config(best_trial(study)) if best else None,  # type: ignore[arg-type]
        best_dev=best["dev_score"] if best else None,
        best_test=best["test"] if best else None,
        baseline_dev=base["dev_score"] if base else None,
        baseline_test=base["test"] if base else None,
        report=report_dict,
        export_path=export_path,
    )


def _watch_workers(
    procs: Sequence[tuple[subprocess.Popen[bytes], Path]],
    study: optuna.Study,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
    progress: Callable[[str], None] | None,
) -> None:
    """Wait for the worker processes, passing each newly finished trial to ``callbacks``."""
    seen: set[int] = set()

    def notify() -> None:
        for trial in study.get_trials(deepcopy=False, states=_FINISHED):
            if trial.number not in seen:
                seen.add(trial.number)
                for callback in callbacks:
                    callback(study, trial)

    try:
        while any(p.poll() is None for p, _ in procs):
            if progress is not None:
                running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
                progress(f"{sum(p.poll() is None for p, _ in procs)} workers, {running} trials running")
            notify()
            time.sleep(1.0)
        notify()
    except KeyboardInterrupt:
        for p, _ in procs:
            p.send_signal(signal.SIGINT)  # each worker records its running trial as interrupted
        for p, _ in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    for p, log in procs:
        if p.returncode != 0:
            logger.warning("a worker exited with code %s; its output is in %s", p.returncode, log)


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
) -> int:
    """Join an existing study as one worker and run trials until the study has ``n_trials`` (+ baseline).

    Without a space file the space stored with the study is used. A worker whose space or data differ
    from the study's refuses to join. Returns the number of trials this worker ran.
    """
    threads = os.environ.get("PROMPTSEARCH_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    if space_or_path is None:
        space, _, _ = _open_existing(None, storage, study_name)
    else:
        space = _resolve_space(space_or_path)
    data = load_task_data(space.spec.task, space.base_dir)
    study = open_study(
        space, storage, study_name, data_fingerprint=data.fingerprint, create=False, heartbeat=heartbeat,
        seed=worker_seed(space.spec.search.seed, worker_index),
    )  # fmt: skip
    n = (space.spec.search.n_trials or 20) if n_trials is None else n_trials
    space = ensure_candidates(space, study, data, device, wait=CANDIDATES_WAIT)
    runner = _make_runner(space, data, device)
    return run_trials(runner, study, n_trials=n, heartbeat=heartbeat, timeout=timeout)


def _open_existing(
    out: str | Path | None, storage: str | None, study_name: str | None
) -> tuple[SearchSpace, optuna.Study, Path]:
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

    store = make_storage(storage, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(f"{mask_url(storage)} holds {len(names)} studies ({names}); pick one with --study-name")
        study_name = names[0]
    if study_name not in names:
        raise ConfigError(f"--study-name '{study_name}': not in {mask_url(storage)}; studies there: {names or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=store)
    text = stored_space_text(study)
    info = study.user_attrs.get("space") or {}
    if text is None:
        raise ConfigError(f"study '{study_name}' was not created by promptsearch (it stores no search space)")
    file = info.get("file")
    space = parse_space(text, path=Path(file) if file else None)
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
) -> dict[str, Any]:
    """Rebuild report.md/json from the storage; trains only for a final evaluation not stored yet."""
    space, study, out_dir = _open_existing(out, storage, study_name)
    data = load_task_data(space.spec.task, space.base_dir)
    stored_seeds = len(((study.user_attrs.get(FINAL_ATTR) or {}).get("best") or {}).get("seeds", []))
    seeds = final_seeds if final_seeds is not None else (stored_seeds or space.spec.search.final_seeds)
    final = None
    if seeds > 0 and data.has_test and best_trial(study) is not None:
        final = stored_final(study, space, data, seeds) or final_evaluation(
            _make_runner(space, data, device), study, seeds=seeds
        )
    result = _build_report(space, study, final)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_reports(out_dir, study, result)
    return result


def export_best(
    *,
    out: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    output: str | Path | None = None,
) -> Path:
    """Write the best prompt of a stored study to ``output`` (default ``<out>/best_prompt.yaml``)."""
    space, study, out_dir = _open_existing(out, storage, study_name)
    data = load_task_data(space.spec.task, space.base_dir)
    target = Path(output) if output is not None else out_dir / "best_prompt.yaml"
    return write_prompt_config(build_export(space, study, data), target)


def train(
    space_or_path: SearchSpace | str | Path,
    *,
    save_model: str | Path | None = None,
    device: str | None = "auto",
    seed: int = 1000,
) -> dict[str, Any]:
    """Fine-tune one fixed config (an exported best prompt, or a space with one point) and score it.

    Returns ``{"dev": ..., "dev_epoch": ..., "test": ... or None}``; with ``save_model`` the model
    (at its best dev epoch), its tokenizer and the prompt config are written there.
    """
    from promptsearch.inference.predict import check_save_target
    from promptsearch.inference.predict import save_model as _save
    from promptsearch.space.sampling import sample_config

    if save_model is not None:
        check_save_target(save_model)
    exported = None
    if not isinstance(space_or_path, SearchSpace) and is_export_file(space_or_path):
        exported = load_prompt_config(space_or_path)
        space = export_to_space(exported, path=Path(space_or_path), allow_plain=True)
    else:
        space = _resolve_space(space_or_path)
    searched = [k for k, d in space.params.items() if not isinstance(d, Fixed)]
    if space.needs_generation:
        searched.append("generated candidates (auto)")
    if searched:
        raise ConfigError(
            f"train needs one fixed config, but the space searches {searched}; run `promptsearch run` "
            "first and train its best_prompt.yaml"
        )
    data = load_task_data(space.spec.task, space.base_dir)
    runner = _make_runner(space, data, device)
    if exported is not None:  # the export's own prompt (possibly plain, which no space can express)
        config = TrialConfig(
            prompt=exported.prompt,
            train=exported.train,
            baseline=exported.prompt.is_plain,
            head=exported.model.head,
        )
    else:
        config = sample_config(optuna.trial.FixedTrial({}), space)
    result, _ = runner.fit(config, seed=seed, keep_best_state=True)
    test = runner.evaluate(config, "test") if data.has_test else None
    if save_model is not None:
        study = optuna.create_study(direction=space.spec.search.direction)
        attrs: dict[str, Any] = {"config": config.model_dump(mode="json"), "best_epoch": result.best_epoch}
        calibration = runner.calibration_for(config)
        if calibration is not None:
            attrs[CALIBRATION_ATTR] = calibration.model_dump(mode="json")
        study.add_trial(optuna.trial.create_trial(value=result.best_score, user_attrs=attrs))
        _save(runner.runtime_for(config.head, config.model), build_export(space, study, data), Path(save_model))
    return {"dev": result.best_score, "dev_epoch": result.best_epoch, "test": test}
