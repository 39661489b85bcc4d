"""The Optuna objective: one trial renders, tokenizes, fine-tunes, reports each epoch and may be pruned."""

from __future__ import annotations

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

if TYPE_CHECKING:
    import torch

    from promptsearch.models.runtime import ModelRuntime

__all__ = ["BASELINE_ATTR", "CALIBRATION_ATTR", "Objective", "TrialRunner", "trial_config"]

logger = logging.getLogger(__name__)
BASELINE_ATTR = "baseline"
CONFIG_ATTR = "config"
CALIBRATION_ATTR = "calibration"
INTERRUPTED_ATTR = "interrupted"


SURPLUS_ATTR = "surplus"


class Surplus(RuntimeError):
    """Another worker started the last trial of the budget first; this one does not run."""


@contextmanager
def _heartbeat(trial: optuna.trial.Trial, interval: float | None) -> Iterator[None]:
    """Write a ``heartbeat`` user attribute every ``interval`` seconds while the trial runs."""
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            with suppress(Exception):  # a storage hiccup must not kill the trial
                trial.set_user_attr("heartbeat", time.time())
            stop.wait(interval)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def trial_config(trial: optuna.trial.FrozenTrial) -> TrialConfig:
    """The resolved config a finished trial ran (stored as a user attribute)."""
    return TrialConfig.model_validate(trial.user_attrs[CONFIG_ATTR])


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

    def _is_surplus(self, trial: optuna.trial.Trial) -> bool:
        from promptsearch.study.storage import counts_towards_budget

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
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise Surplus(f"trial {trial.number} is beyond the {self.target} trials asked for")
        with _heartbeat(trial, self.heartbeat):
            return self._run(trial)

    def _run(self, trial: optuna.trial.Trial) -> float | list[float]:
        space = self.runner.space
        objectives = objective_names(space.spec.search)
        prunable = len(objectives) == 1  # Optuna supports neither report nor should_prune with several
        is_baseline = bool(trial.user_attrs.get(BASELINE_ATTR))
        config = baseline_config(space) if is_baseline else sample_config(trial, space)
        seed = self.seed_for(trial)
        trial.set_user_attr(CONFIG_ATTR, config.model_dump(mode="json"))
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("device", str(self.runner.device))
        timings: dict[str, float] = {}
        reset_peak_memory(self.runner.device)
        state: dict[str, Any] = {}

        def on_epoch(epoch: int, score: float) -> None:
            state["last"] = (epoch, score)
            if self.on_epoch is not None:
                self.on_epoch(trial.number, epoch, score)
            if epoch == 0 or not prunable:
                return  # in context only (scored once, nothing to save), or several objectives (Optuna cannot prune)
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} (dev {score:.4f})")

        try:
            result, train = self.runner.fit(config, seed=seed, on_epoch=on_epoch, timings=timings)
            calibration = self.runner.calibration_for(config)
            if calibration is not None:  # exported with the best prompt, so predict applies the same offsets
                trial.set_user_attr(CALIBRATION_ATTR, calibration.model_dump(mode="json"))
            trial.set_user_attr("best_epoch", result.best_epoch)
            trial.set_user_attr("epochs_run", result.epochs_run)
            self._describe(trial, train)
            if prunable:
                return result.best_score
            # per dev example, over the evaluations of the attempt that finished (one for in-context trials)
            latency = 1000 * result.eval_seconds / max(1, len(result.history) * len(self.runner.data.dev))
            trial.set_user_attr("latency_ms", round(latency, 4))
            return objective_values(
                objectives, dev=result.best_score, prompt_tokens=train.mean_tokens, latency_ms=latency
            )
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            raise
        except (NonFiniteLoss, OutOfMemory) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("pruned_reason", reason)
            trial.set_user_attr("epochs_run", state.get("last", (0, 0.0))[0])
            raise optuna.TrialPruned(reason) from None
        except optuna.TrialPruned:
            trial.set_user_attr("epochs_run", state.get("last", (0, 0.0))[0])
            self._describe(trial, self.runner.features_for(config.head, config.model).get(config.prompt, "train"))
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            trial.set_user_attr("seconds", {k: round(v, 4) for k, v in timings.items()})
            trial.set_user_attr("train_seconds", round(timings.get("train", 0.0), 3))
            trial.set_user_attr("peak_memory_mb", round(peak_memory_mb(self.runner.device), 1))
            free_memory(self.runner.device)

    @staticmethod
    def _describe(trial: optuna.trial.Trial, train: Encoded) -> None:
        trial.set_user_attr("prompt_example", train.prompts[0].text if train.prompts else "")
        if train.prompts and train.prompts[0].parts:  # for the report's highlighting
            trial.set_user_attr("prompt_parts", [list(p) for p in train.prompts[0].parts])
        trial.set_user_attr("prompt_tokens_mean", round(train.mean_tokens, 1))
        dropped = sum(p.demos_dropped for p in train.prompts)
        if dropped:
            trial.set_user_attr("demos_dropped", dropped)
