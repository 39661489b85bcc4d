"""The Optuna objective: one trial renders, tokenizes, fine-tunes, reports each epoch and may be pruned."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from promptsearch.io.data import TaskData
from promptsearch.models.calibration import apply_calibration, compute_calibration
from promptsearch.models.device import free_memory, peak_memory_mb, reset_peak_memory
from promptsearch.models.features import Encoded, FeatureCache
from promptsearch.models.oom import OutOfMemory, fine_tune_within_memory
from promptsearch.models.pool import RuntimePool
from promptsearch.models.trainer import FitOptions, FitResult, NonFiniteLoss, evaluate, load_state
from promptsearch.space.config import CalibrationParams, TrialConfig
from promptsearch.space.registry import head_traits
from promptsearch.space.sampling import baseline_config, sample_config
from promptsearch.space.search_space import SearchSpace
from promptsearch.study.checks import check_models
from promptsearch.study.pareto import objective_names, objective_values
from promptsearch.study.protocol import Protocol
from promptsearch.study.records import TrialWriter, counts_towards_budget, finished_equal, finished_runs

if TYPE_CHECKING:
    import torch

    from promptsearch.models.runtime import ModelRuntime

__all__ = ["Objective", "TrialRunner"]

logger = logging.getLogger(__name__)


class Surplus(RuntimeError):
    """Another worker started the last trial of the budget first; this one does not run."""


@contextmanager
def _heartbeat(trial: optuna.trial.Trial, interval: float | None) -> Iterator[None]:
    """Write a heartbeat user attribute every ``interval`` seconds while the trial runs."""
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            with suppress(Exception):  # a storage hiccup must not kill the trial
                TrialWriter(trial).heartbeat()
            stop.wait(interval)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class TrialRunner:
    """What trials share in one process, and one trial's work: restore the model, encode, fine-tune, score.

    ``runtime`` has the space's head (the first model's, with a model list). The loaded models and their
    tokenized-split caches are a :class:`~promptsearch.models.pool.RuntimePool` (``models``): the baseline
    fine-tunes a classification head on the same body, so with an mlm or causal head a second runtime is loaded
    the first time it runs. Every model of a model list is loaded at construction, to check the space against it
    (:func:`~promptsearch.study.checks.check_models`) before the first trial. Fine-tuning retries with smaller
    micro-batches when the accelerator runs out of memory (:mod:`promptsearch.models.oom`).
    """

    space: SearchSpace
    data: TaskData
    runtime: ModelRuntime

    def __post_init__(self) -> None:
        self.models = RuntimePool(self.space, self.data, self.runtime)
        self._calibrations: dict[tuple[str | None, str], CalibrationParams] = {}
        check_models(self.space, self.models)

    def view(self, data: TaskData, *, share_calibrations: bool = False) -> TrialRunner:
        """A runner over other rows (a fold, the leave-one-out pool, all labelled rows) that shares this one's
        loaded models; its tokenized prompts are its own, and so are its calibrations unless shared (the same
        train rows give the same offsets)."""
        other = copy.copy(self)
        other.data = data
        other.models = self.models.view(data)
        if not share_calibrations:
            other._calibrations = {}
        return other

    def predictions(self, config: TrialConfig, split: str) -> tuple[list[int], list[int]]:
        """``(gold, predicted)`` class indices of ``split``'s rows, for the model as ``config``'s last fit left it."""
        from promptsearch.models.trainer import predict_proba

        runtime = self.runtime_for(config.head, config.model)
        encoded = self.features_for(config.head, config.model).get(config.prompt, split)
        encoded = apply_calibration(encoded, self.calibration_for(config))
        probs = predict_proba(
            runtime.model, encoded, self.device, int(runtime.tokenizer.pad_token_id), runtime.precision
        )
        return list(encoded.labels), [int(i) for i in probs.argmax(axis=1)]

    @property
    def features(self) -> FeatureCache:
        return self.models.features(self.runtime.head)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def runtime_for(self, head: str, model: str | None = None) -> ModelRuntime:
        """The loaded model ``model`` (an id of the model list; None: the single or first) with ``head``."""
        return self.models.runtime(head, model)

    def features_for(self, head: str, model: str | None = None) -> FeatureCache:
        return self.models.features(head, model)

    def calibration_for(self, config: TrialConfig) -> CalibrationParams | None:
        """The calibration offsets of ``config`` (None when it has none, or when it trains: those are scored
        uncalibrated). Computed once from the train split with the untrained model, then reused."""
        if config.prompt.calibration == "none" or config.train.trains or not head_traits(config.head).label_words:
            return None
        key = (config.model, config.prompt.model_dump_json())
        if key not in self._calibrations:
            runtime = self.runtime_for(config.head, config.model)
            train = self.features_for(config.head, config.model).get(config.prompt, "train")
            self._calibrations[key] = compute_calibration(runtime, config.prompt, self.data.train, encoded_train=train)
        return self._calibrations[key]

    def evaluate(self, config: TrialConfig, split: str) -> float:
        """The score on ``split`` of the model as ``config``'s last :meth:`fit` left it."""
        runtime = self.runtime_for(config.head, config.model)
        encoded = self.features_for(config.head, config.model).get(config.prompt, split)
        encoded = apply_calibration(encoded, self.calibration_for(config))
        pad_id = int(runtime.tokenizer.pad_token_id)
        return evaluate(runtime.model, encoded, self.device, pad_id, self.space.spec.task.metric, runtime.precision)

    def fit(
        self,
        config: TrialConfig,
        *,
        seed: int,
        on_epoch: Callable[[int, float], None] | None = None,
        keep_best_state: bool = False,
        timings: dict[str, float] | None = None,
    ) -> tuple[FitResult, Encoded]:
        """Restore the model, encode train/dev for ``config`` and fine-tune it (the model is then
        ``runtime_for(config.head, config.model)``, at its best dev epoch with ``keep_best_state``)."""
        timings = timings if timings is not None else {}
        runtime = self.runtime_for(config.head, config.model)
        features = self.features_for(config.head, config.model)
        t0 = time.perf_counter()
        model = runtime.restore(seed=seed, train=config.train)
        t1 = time.perf_counter()
        train = features.get(config.prompt, "train")
        dev = features.get(config.prompt, "dev")
        t2 = time.perf_counter()
        timings.update(restore=t1 - t0, tokenize=t2 - t1)
        calibration = self.calibration_for(config)  # in-context trials only: the model is as loaded
        if calibration is not None:
            dev = apply_calibration(dev, calibration)
            timings["calibrate"] = time.perf_counter() - t2
        options = FitOptions(
            device=self.device,
            pad_id=int(runtime.tokenizer.pad_token_id),
            seed=seed,
            metric=self.space.spec.task.metric,
            maximize=self.space.spec.search.direction == "maximize",
            keep_best_state=keep_best_state,
            precision=runtime.precision,
        )
        attempts: dict[int, FitResult] = {}  # each attempt's progress (an out-of-memory retry starts another)

        def report(epoch: int, score: float, progress: FitResult) -> None:
            attempts[id(progress)] = progress
            if on_epoch is not None:
                on_epoch(epoch, score)

        try:
            model, result = fine_tune_within_memory(
                model,
                train,
                dev,
                config.train,
                options,
                restore=lambda: runtime.restore(seed=seed, train=config.train),
                on_epoch=report,
            )
            attempts[id(result)] = result
        finally:  # also when pruned: the seconds spent so far
            timings["train"] = timings.get("train", 0.0) + sum(r.train_seconds for r in attempts.values())
            timings["eval"] = timings.get("eval", 0.0) + sum(r.eval_seconds for r in attempts.values())
        if keep_best_state and result.best_state:
            load_state(model, result.best_state)  # the model ends at its best dev epoch
        return result, train


class Objective:
    """``study.optimize(Objective(runner), ...)``: returns the best dev score over the epochs."""

    def __init__(
        self,
        runner: TrialRunner,
        *,
        on_epoch: Callable[[int, int, float], None] | None = None,
        target: int | None = None,
        heartbeat: float | None = None,
    ) -> None:
        self.runner = runner
        self.on_epoch = on_epoch
        self.target = target  # finished trials wanted: a trial beyond it (a race between workers) is surplus
        self.heartbeat = heartbeat  # seconds between "heartbeat" user attrs (storages without their own)
        self._protocol: Protocol | None = None

    @property
    def protocol(self) -> Protocol:
        """How trials are scored (folds are drawn once per study, on first use)."""
        if self._protocol is None:
            self._protocol = Protocol(self.runner)
        return self._protocol

    def _is_surplus(self, trial: optuna.trial.Trial) -> bool:
        if self.target is None:
            return False
        active = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
        earlier = [
            t
            for t in trial.study.get_trials(deepcopy=False)
            if t.number < trial.number and (counts_towards_budget(t) or t.state in active)
        ]
        return len(earlier) >= self.target

    def seed_for(self, trial: optuna.trial.Trial) -> int:
        return self.runner.space.spec.search.seed * 100_003 + trial.number

    def __call__(self, trial: optuna.trial.Trial) -> float | list[float]:
        if self._is_surplus(trial):
            TrialWriter(trial).surplus()
            raise Surplus(f"trial {trial.number} is beyond the {self.target} trials asked for")
        with _heartbeat(trial, self.heartbeat):
            return self._run(trial)

    def _run(self, trial: optuna.trial.Trial) -> float | list[float]:
        space = self.runner.space
        objectives = objective_names(space.spec.search)
        prunable = len(objectives) == 1  # Optuna supports neither report nor should_prune with several
        writer = TrialWriter(trial)
        config = baseline_config(space) if writer.is_baseline else sample_config(trial, space)
        seed = self.seed_for(trial)
        writer.start(config, seed=seed, device=str(self.runner.device))
        last_step = self.protocol.steps(config)
        replayed: set[int] = set()  # steps an earlier, equal trial already reported for this one
        earlier = None if writer.is_baseline else finished_equal(trial.study, config)
        if earlier is not None:
            # Nothing trains, the folds and the demonstration draws are the study's: the score would be the same
            logger.info("trial %d: the same in-context config as trial %d, whose result it takes", trial.number,
                        earlier.number)  # fmt: skip
            if writer.duplicate(earlier, intermediate=prunable, last_step=last_step):
                raise optuna.TrialPruned(f"pruned as trial {earlier.number}, the same in-context config, was")
            if earlier.values:
                return earlier.values[0] if prunable else list(earlier.values)
            writer.not_duplicate()  # pruned then, not now: score the rest
            replayed = set(earlier.intermediate_values) if prunable else set()
        # A config that trains and was trained before: this run (its own seed, the trial's) is one more draw of
        # the same estimate, so the trial's value is the mean over the config's runs, not a new point
        runs = [] if writer.is_baseline else finished_runs(trial.study, config)
        timings: dict[str, float] = {}
        reset_peak_memory(self.runner.device)
        state: dict[str, Any] = {}

        def on_epoch(epoch: int, score: float) -> None:  # every evaluation: progress only
            state["last"] = (epoch, score)
            if self.on_epoch is not None:
                self.on_epoch(trial.number, epoch, score)

        def report(value: float, step: int) -> None:  # the protocol says when (see study.protocol)
            if not prunable:
                return  # several objectives: Optuna can neither report nor prune
            if step not in replayed:
                trial.report(value, step)
            if step < last_step and trial.should_prune():  # never once fully scored: its cost is spent
                raise optuna.TrialPruned(f"pruned at step {step} (value so far {value:.4f})")

        try:
            score = self.protocol.score(config, seed=seed, on_epoch=on_epoch, report=report, timings=timings)
            calibration = self.protocol.final_runner().calibration_for(config)
            if calibration is not None:  # exported with the best prompt, so predict applies the same offsets
                writer.calibration(calibration)
            writer.fit(best_epoch=score.epoch, epochs_run=score.last.epochs_run)
            writer.evaluation(score.record())
            self._describe(writer, score.train)
            if prunable:
                return self._pool(writer, runs, [score.value])[0]
            # per scored row, over the evaluations of the run that finished last (one for in-context trials)
            result = score.last
            latency = 1000 * result.eval_seconds / max(1, len(result.history) * score.eval_rows)
            writer.latency(latency)
            values = objective_values(
                objectives, dev=score.value, prompt_tokens=score.train.mean_tokens, latency_ms=latency
            )
            return self._pool(writer, runs, values)
        except KeyboardInterrupt:
            writer.interrupted()
            raise
        except (NonFiniteLoss, OutOfMemory) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            writer.pruned_reason(reason)
            writer.epochs_run(state.get("last", (0, 0.0))[0])
            raise optuna.TrialPruned(reason) from None
        except optuna.TrialPruned:
            writer.epochs_run(state.get("last", (0, 0.0))[0])
            self._describe(writer, self.runner.features_for(config.head, config.model).get(config.prompt, "train"))
            raise
        except Exception as exc:
            writer.error(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            writer.resources(timings, peak_memory_mb=peak_memory_mb(self.runner.device))
            free_memory(self.runner.device)

    @staticmethod
    def _pool(writer: TrialWriter, runs: list[optuna.trial.FrozenTrial], values: list[float]) -> list[float]:
        """``values`` of this run, or with earlier ``runs`` of the same trained config the mean over all runs."""
        if not runs:
            return values
        pooled = writer.pooled(runs, values)
        logger.info("trial %d: run %d of its config (trials %s): %s pooled to %s", writer.trial.number,
                    len(runs) + 1, ", ".join(str(t.number) for t in runs), values, pooled)  # fmt: skip
        return pooled

    @staticmethod
    def _describe(writer: TrialWriter, train: Encoded) -> None:
        first = train.prompts[0] if train.prompts else None
        writer.prompt(
            example=first.text if first is not None else "",
            parts=[list(p) for p in first.parts] if first is not None and first.parts else None,
            tokens_mean=train.mean_tokens,
            demos_dropped=sum(p.demos_dropped for p in train.prompts),
        )
