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

from promptsearch.errors import ConfigError
from promptsearch.io.data import TaskData
from promptsearch.models.calibration import apply_calibration, compute_calibration
from promptsearch.models.device import free_memory, peak_memory_mb, reset_peak_memory
from promptsearch.models.features import Encoded, FeatureCache
from promptsearch.models.trainer import FitResult, NonFiniteLoss, evaluate, fine_tune, load_state
from promptsearch.space.config import CalibrationParams, LoraConfig, TrialConfig
from promptsearch.space.sampling import baseline_config, sample_config
from promptsearch.space.search_space import SearchSpace, possible_values
from promptsearch.study.checks import check_label_words
from promptsearch.study.pareto import objective_names, objective_values
from promptsearch.study.protocol import Protocol
from promptsearch.study.records import TrialWriter, counts_towards_budget

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


class OutOfMemory(RuntimeError):
    """The accelerator ran out of memory even at batch size 1: the config cannot run here."""


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


@dataclass
class TrialRunner:
    """What trials share in one process: the data, the loaded models and their tokenized-split caches.

    ``runtime`` has the space's head (the first model's, with a model list). The baseline fine-tunes a
    classification head on the same body, so with an mlm or causal head a second runtime is loaded the
    first time it runs. Every model of a model list is loaded at construction, to check the space against
    it (methods, LoRA targets, label words) before the first trial.
    """

    space: SearchSpace
    data: TaskData
    runtime: ModelRuntime

    def __post_init__(self) -> None:
        first = next(iter(self.space.models), None)
        self._runtimes = {(first, self.runtime.head): self.runtime}
        self._features = {(first, self.runtime.head): FeatureCache(self.runtime, self.data)}
        self._calibrations: dict[tuple[str | None, str], CalibrationParams] = {}
        self.last_runtime = self.runtime  # the model of the last fit (what --save-model writes)
        self._check_space()

    def _check_space(self) -> None:
        """What needs the model to check: methods that train something, label words the head can score."""
        for model_id in self.space.models or [None]:
            spec = self.space.model_spec(model_id)
            self._check_model(model_id, self.runtime_for(spec.head, model_id))

    def _check_model(self, model_id: str | None, runtime: ModelRuntime) -> None:
        space = self.space
        where = f"{space.path}: " if space.path else ""
        own = f"model.{model_id}.train.method"
        method_dim = space.params.get(own, space.params.get("train.method"))
        methods = possible_values(method_dim) if method_dim is not None else ()
        choice = space.models.get(model_id) if model_id is not None else None
        lora = choice.train.lora if choice is not None and choice.train is not None else space.spec.train.lora
        try:
            runtime.check_methods(methods or ())
            if "lora" in (methods or ()):
                runtime.check_lora(LoraConfig(target_modules=lora.target_modules))
        except ConfigError as exc:
            name = f"model '{model_id}': " if model_id is not None else ""
            raise ConfigError(f"{where}{name}{exc}") from None
        check_label_words(space, runtime.encoder)

    def view(self, data: TaskData, *, share_calibrations: bool = False) -> TrialRunner:
        """A runner over other rows (a fold, the leave-one-out pool, all labelled rows) that shares this one's
        loaded models; its tokenized prompts are its own, and so are its calibrations unless shared (the same
        train rows give the same offsets)."""
        other = copy.copy(self)
        other.data = data
        other._features = {key: FeatureCache(runtime, data) for key, runtime in self._runtimes.items()}
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
        return self._features[next(iter(self._features))]

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def runtime_for(self, head: str, model: str | None = None) -> ModelRuntime:
        """The loaded model ``model`` (an id of the model list; None: the single or first) with ``head``."""
        key = self._key(head, model)
        if key not in self._runtimes:
            from promptsearch.models.runtime import ModelRuntime

            t0 = time.perf_counter()
            spec = self.space.model_spec(key[0])
            runtime = ModelRuntime(spec, self.runtime.labels, self.device, head=head)
            logger.info("loaded %s with a %s head in %.1f s", runtime.name, head, time.perf_counter() - t0)
            self._runtimes[key] = runtime
        if key not in self._features:  # a view shares the loaded models, not the tokenized prompts
            self._features[key] = FeatureCache(self._runtimes[key], self.data)
        return self._runtimes[key]

    def features_for(self, head: str, model: str | None = None) -> FeatureCache:
        self.runtime_for(head, model)
        return self._features[self._key(head, model)]

    def _key(self, head: str, model: str | None) -> tuple[str | None, str]:
        """Runtimes and caches are per (model id, head); no id means the single (or first) model."""
        return (model if model is not None else next(iter(self.space.models), None), head)

    def calibration_for(self, config: TrialConfig) -> CalibrationParams | None:
        """The calibration offsets of ``config`` (None when it has none, or when it trains: those are scored
        uncalibrated). Computed once from the train split with the untrained model, then reused."""
        if config.prompt.calibration == "none" or config.train.trains or config.head == "classification":
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
        on_epoch: Any = None,
        keep_best_state: bool = False,
        timings: dict[str, float] | None = None,
    ) -> tuple[FitResult, Encoded]:
        """Restore the model, encode train/dev for ``config`` and fine-tune it."""
        timings = timings if timings is not None else {}
        runtime = self.runtime_for(config.head, config.model)
        features = self.features_for(config.head, config.model)
        self.last_runtime = runtime
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
        accumulation = 1
        while True:
            result = FitResult()
            try:
                fine_tune(
                    model,
                    train,
                    dev,
                    config.train,
                    metric=self.space.spec.task.metric,
                    device=self.device,
                    pad_id=int(runtime.tokenizer.pad_token_id),
                    seed=seed,
                    maximize=self.space.spec.search.direction == "maximize",
                    on_epoch=on_epoch,
                    keep_best_state=keep_best_state,
                    result=result,
                    accumulation=accumulation,
                    precision=runtime.precision,
                )
                if keep_best_state and result.best_state:
                    load_state(model, result.best_state)  # the model ends at its best dev epoch
                return result, train
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                free_memory(self.device)
                micro = config.train.batch_size // accumulation
                if micro <= 1:
                    raise OutOfMemory(
                        f"out of memory on {self.device} even with micro-batches of 1 row "
                        f"(batch size {config.train.batch_size})"
                    ) from None
                accumulation *= 2
                logger.warning(
                    "out of memory with micro-batches of %d rows; retrying with %d x %d (same effective batch)",
                    micro,
                    config.train.batch_size // accumulation,
                    accumulation,
                )
                model = runtime.restore(seed=seed, train=config.train)
            finally:  # also when pruned: the seconds spent so far
                timings["train"] = timings.get("train", 0.0) + result.train_seconds
                timings["eval"] = timings.get("eval", 0.0) + result.eval_seconds


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
            trial.report(value, step)
            if trial.should_prune():
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
                return score.value
            # per scored row, over the evaluations of the run that finished last (one for in-context trials)
            result = score.last
            latency = 1000 * result.eval_seconds / max(1, len(result.history) * score.eval_rows)
            writer.latency(latency)
            return objective_values(
                objectives, dev=score.value, prompt_tokens=score.train.mean_tokens, latency_ms=latency
            )
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
    def _describe(writer: TrialWriter, train: Encoded) -> None:
        first = train.prompts[0] if train.prompts else None
        writer.prompt(
            example=first.text if first is not None else "",
            parts=[list(p) for p in first.parts] if first is not None and first.parts else None,
            tokens_mean=train.mean_tokens,
            demos_dropped=sum(p.demos_dropped for p in train.prompts),
        )
