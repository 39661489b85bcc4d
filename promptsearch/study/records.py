"""The one module that reads and writes a trial's (and the study's) Optuna user attributes.

Optuna stores what promptsearch knows about a trial as user attributes (JSON values under string
keys). Every key is defined here, written by the writers here, and read back into a typed
:class:`TrialRecord`; the rest of the package reads fields, never ``user_attrs["..."]``.

>>> records = trial_records(study)                        # doctest: +SKIP
>>> best = best_trial(study); best.number, best.dev       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from promptsearch.space.config import CalibrationParams, TrialConfig
from promptsearch.study.pareto import recommend, signs_of

if TYPE_CHECKING:
    import datetime as dt

    import optuna
    from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "BASELINE_ATTR",
    "CALIBRATION_ATTR",
    "CANDIDATES_ATTR",
    "CONFIG_ATTR",
    "EVALUATION_ATTR",
    "FINAL_ATTR",
    "HEARTBEAT_ATTR",
    "LOST_ATTR",
    "OBJECTIVES_ATTR",
    "RACE_ATTR",
    "RUN_ATTR",
    "SPACE_ATTR",
    "STALE_ATTR",
    "SURPLUS_ATTR",
    "WARM_START_ATTR",
    "WORKER_ATTR",
    "ObjectivesInfo",
    "RunStatus",
    "StoredSpace",
    "TrialRecord",
    "TrialWriter",
    "baseline_trial",
    "best_trial",
    "completed_trial_attrs",
    "count_done",
    "counts_towards_budget",
    "enqueue_baseline",
    "enqueue_retry",
    "enqueue_warm_start",
    "epoch_recorder",
    "exit_text",
    "finished_equal",
    "finished_runs",
    "in_context_key",
    "mark_stale",
    "note_lost",
    "objectives_info",
    "pooled_values",
    "searched_best_trial",
    "store_candidates",
    "store_final",
    "store_objectives",
    "store_race",
    "store_run",
    "store_space",
    "stored_candidates_raw",
    "stored_final_raw",
    "stored_race",
    "stored_run",
    "stored_space",
    "training_key",
    "trial_config",
    "trial_record",
    "trial_records",
    "warm_start_sources",
]

# Trial attributes
BASELINE_ATTR = "baseline"
CONFIG_ATTR = "config"
CALIBRATION_ATTR = "calibration"
INTERRUPTED_ATTR = "interrupted"
SURPLUS_ATTR = "surplus"
STALE_ATTR = "stale"
RETRY_OF_ATTR = "retry_of"
HEARTBEAT_ATTR = "heartbeat"
WARM_START_ATTR = "warm_start"
SEED_ATTR = "seed"
DEVICE_ATTR = "device"
BEST_EPOCH_ATTR = "best_epoch"
EPOCHS_RUN_ATTR = "epochs_run"
LATENCY_ATTR = "latency_ms"
ERROR_ATTR = "error"
PRUNED_REASON_ATTR = "pruned_reason"
SECONDS_ATTR = "seconds"
TRAIN_SECONDS_ATTR = "train_seconds"
PEAK_MEMORY_ATTR = "peak_memory_mb"
PROMPT_EXAMPLE_ATTR = "prompt_example"
PROMPT_PARTS_ATTR = "prompt_parts"
PROMPT_TOKENS_ATTR = "prompt_tokens_mean"
DEMOS_DROPPED_ATTR = "demos_dropped"
EVALUATION_ATTR = "evaluation"  # how the trial was scored: mode, runs, rows, epoch, mean curve, per-fold values
DUPLICATE_OF_ATTR = "duplicate_of"  # an in-context trial that took an earlier, equal trial's result
RUN_VALUES_ATTR = "run_values"  # a repeat of a training config: its own run's objective values
POOLED_ATTR = "pooled"  # a repeat of a training config: {"trials": [every run's trial], "values": [their means]}
FAIL_REASON_SYSTEM_ATTR = "fail_reason"  # Optuna's own (a system attribute)
WORKER_ATTR = "worker"  # the process that runs the trial: {"pid", "host"}
LOST_ATTR = "lost"  # written by the coordinator when the trial's worker died: {"worker", "exit", "what"}
RETRIED_SYSTEM_ATTR = "retry_history"  # Optuna's retry callback (RDB storages): the trials this one retries

# Study attributes
SPACE_ATTR = "space"
OBJECTIVES_ATTR = "objectives"
FINAL_ATTR = "final_evaluation"
CANDIDATES_ATTR = "candidates"
RACE_ATTR = "race"
RUN_ATTR = "run"  # the last run's budget and how it ended (RunStatus)


def _config(attrs: Mapping[str, Any]) -> TrialConfig | None:
    raw = attrs.get(CONFIG_ATTR)
    if raw is None:
        return None
    try:
        return TrialConfig.model_validate(raw)
    except ValidationError:
        return None


@dataclass(frozen=True)
class TrialRecord:
    """What promptsearch knows about one trial, read from its Optuna ``FrozenTrial``.

    ``values`` are the objective values (``dev`` first); ``dev_curve`` maps each epoch to its dev score
    (what pruning saw); ``best_epoch`` is the epoch whose score the trial kept.
    """

    number: int
    state: TrialState
    values: tuple[float, ...] | None
    params: dict[str, Any]
    config: TrialConfig | None
    is_baseline: bool = False
    dev_curve: dict[int, float] = field(default_factory=dict)
    best_epoch: int | None = None
    epochs_run: int | None = None
    seed: int | None = None
    device: str | None = None
    calibration: dict[str, Any] | None = None
    error: str | None = None
    pruned_reason: str | None = None
    fail_reason: str | None = None
    interrupted: bool = False
    surplus: bool = False
    stale: bool = False
    retry_of: int | None = None
    duplicate_of: int | None = None
    run_values: tuple[float, ...] | None = None  # a repeat of a training config: its own run's values
    pooled_trials: tuple[int, ...] = ()  # a repeat: every run of its config, this one last (values: their mean)
    pooled_into: int | None = None  # a run of a config that a later repeat pooled (set by trial_records)
    warm_start: str | None = None
    heartbeat: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    train_seconds: float | None = None
    peak_memory_mb: float | None = None
    evaluation: dict[str, Any] | None = None  # mode, runs, rows, epoch, curve, fold_values (study.protocol)
    latency_ms: float | None = None
    prompt_example: str | None = None
    prompt_parts: list[list[str]] | None = None
    prompt_tokens_mean: float | None = None
    demos_dropped: int = 0
    datetime_start: dt.datetime | None = None
    datetime_complete: dt.datetime | None = None
    worker: dict[str, Any] | None = None  # {"pid", "host"} of the process that ran it
    lost: dict[str, Any] | None = None  # what the coordinator saw when its worker died
    retried_as: int | None = None  # the retry of this abandoned trial (set by trial_records)

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord:
        a = trial.user_attrs
        return cls(
            number=trial.number,
            state=trial.state,
            values=tuple(trial.values) if trial.values is not None else None,
            params=dict(trial.params),
            config=_config(a),
            is_baseline=bool(a.get(BASELINE_ATTR)),
            dev_curve={int(k): float(v) for k, v in trial.intermediate_values.items()},
            best_epoch=a.get(BEST_EPOCH_ATTR),
            evaluation=a.get(EVALUATION_ATTR),
            epochs_run=a.get(EPOCHS_RUN_ATTR),
            seed=a.get(SEED_ATTR),
            device=a.get(DEVICE_ATTR),
            calibration=a.get(CALIBRATION_ATTR),
            error=a.get(ERROR_ATTR),
            pruned_reason=a.get(PRUNED_REASON_ATTR),
            fail_reason=trial.system_attrs.get(FAIL_REASON_SYSTEM_ATTR),
            interrupted=bool(a.get(INTERRUPTED_ATTR)),
            surplus=bool(a.get(SURPLUS_ATTR)),
            stale=bool(a.get(STALE_ATTR)),
            retry_of=_retry_of(trial),
            duplicate_of=a.get(DUPLICATE_OF_ATTR),
            run_values=tuple(a[RUN_VALUES_ATTR]) if a.get(RUN_VALUES_ATTR) is not None else None,
            pooled_trials=tuple((a.get(POOLED_ATTR) or {}).get("trials") or ()),
            warm_start=a.get(WARM_START_ATTR),
            heartbeat=a.get(HEARTBEAT_ATTR),
            seconds=dict(a.get(SECONDS_ATTR) or {}),
            train_seconds=a.get(TRAIN_SECONDS_ATTR),
            peak_memory_mb=a.get(PEAK_MEMORY_ATTR),
            latency_ms=a.get(LATENCY_ATTR),
            prompt_example=a.get(PROMPT_EXAMPLE_ATTR),
            prompt_parts=a.get(PROMPT_PARTS_ATTR),
            prompt_tokens_mean=a.get(PROMPT_TOKENS_ATTR),
            demos_dropped=int(a.get(DEMOS_DROPPED_ATTR) or 0),
            datetime_start=trial.datetime_start,
            datetime_complete=trial.datetime_complete,
            worker=a.get(WORKER_ATTR),
            lost=a.get(LOST_ATTR),
        )

    @property
    def dev(self) -> float | None:
        """The dev score (the first objective), or None when the trial has no value."""
        return self.values[0] if self.values else None

    @property
    def model(self) -> str | None:
        """The model id of a model list (None with a single model or without a config)."""
        return self.config.model if self.config is not None else None

    @property
    def is_complete(self) -> bool:
        from optuna.trial import TrialState

        return self.state == TrialState.COMPLETE and bool(self.values)

    @property
    def is_point(self) -> bool:
        """Complete and its config's estimate: not a run that a later repeat of the same training config pooled
        into its own value (a config is one point, whose value is the mean over its runs)."""
        return self.is_complete and self.pooled_into is None

    @property
    def runs(self) -> int:
        """How many runs (trials) of its config the value is the mean of (1 unless a repeat pooled them)."""
        return max(1, len(self.pooled_trials))

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, for finished trials."""
        if self.datetime_start and self.datetime_complete:
            return (self.datetime_complete - self.datetime_start).total_seconds()
        return None

    @property
    def abandoned(self) -> bool:
        """Failed because its worker stopped (no heartbeat): not by its own error, Ctrl-C or a budget race."""
        from optuna.trial import TrialState

        if self.state != TrialState.FAIL or self.error is not None or self.interrupted or self.surplus:
            return False
        # the journal's check marks it stale; Optuna's RDB heartbeat check fails it without a word, but retries it
        # (a retry that fails without an error of its own was failed by that check too)
        retried = self.retried_as is not None or self.retry_of is not None
        return self.stale or self.lost is not None or retried

    @property
    def failure(self) -> str:
        """Why a failed trial failed: its own error, what happened to its worker, or Optuna's fail reason."""
        if self.error:
            return self.error
        if self.interrupted:
            return "interrupted (Ctrl-C, or its worker was stopped); not counted, the study runs another trial"
        if self.surplus:
            return "started beyond the budget by a race between workers; not counted"
        if self.abandoned:
            return self.loss
        return self.fail_reason or ""

    @property
    def loss(self) -> str:
        """What happened to an abandoned trial: "worker 0 died (SIGKILL) during epoch 3; no heartbeat for 15 s;
        retried as trial 12"."""
        lost = self.lost or {}
        what = lost.get("what")
        if not what:
            who = (
                f"its worker (pid {self.worker.get('pid')} on {self.worker.get('host')})"
                if self.worker
                else "its worker"
            )
            what = f"{who} stopped sending heartbeats" + _during(self.epochs_run)
        parts = [str(what)]
        if self.heartbeat is not None and self.datetime_complete is not None:
            silent = self.datetime_complete.timestamp() - float(self.heartbeat)
            if silent >= 0:
                parts.append(f"no heartbeat for {silent:.0f} s")
        if self.retried_as is not None:
            parts.append(f"retried as trial {self.retried_as}")
        elif self.retry_of is not None:
            parts.append(f"not retried again (it was the retry of trial {self.retry_of})")
        return "; ".join(parts)

    @property
    def counts_towards_budget(self) -> bool:
        """Complete, pruned, or failed by its own error; not interrupted, abandoned (stale) or surplus."""
        from optuna.trial import TrialState

        if self.state in (TrialState.COMPLETE, TrialState.PRUNED):
            return True
        return self.state == TrialState.FAIL and self.error is not None

    def calibration_params(self) -> CalibrationParams | None:
        return CalibrationParams.model_validate(self.calibration) if self.calibration is not None else None


def _retry_of(trial: FrozenTrial) -> int | None:
    """The trial that ``trial`` retries: ours (journal storages) or Optuna's retry callback's (RDB storages)."""
    ours = trial.user_attrs.get(RETRY_OF_ATTR)
    if ours is not None:
        return int(ours)
    history = trial.system_attrs.get(RETRIED_SYSTEM_ATTR)
    return int(history[-1]) if isinstance(history, list) and history else None


def _during(epochs_run: int | None) -> str:
    return f" during epoch {int(epochs_run) + 1}" if epochs_run is not None else ""


def _with_retries(records: list[TrialRecord]) -> list[TrialRecord]:
    retries = {r.retry_of: r.number for r in records if r.retry_of is not None}
    return [dataclasses.replace(r, retried_as=retries[r.number]) if r.number in retries else r for r in records]


def _with_pools(records: list[TrialRecord]) -> list[TrialRecord]:
    """Each run that a complete repeat pooled knows the latest such repeat (``pooled_into``)."""
    into: dict[int, int] = {}
    for r in records:  # by trial number: a later repeat pools every earlier run, so it wins
        if r.is_complete and len(r.pooled_trials) > 1:
            into.update({n: r.number for n in r.pooled_trials if n != r.number})
    return [dataclasses.replace(r, pooled_into=into[r.number]) if r.number in into else r for r in records]


def trial_records(study: optuna.Study, states: Sequence[TrialState] | None = None) -> list[TrialRecord]:
    """Every trial of ``study`` (or those in ``states``) as records, by trial number; an abandoned trial knows
    its retry (``retried_as``)."""
    every = _with_pools(_with_retries([TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]))
    return every if states is None else [r for r in every if r.state in tuple(states)]


def trial_record(study: optuna.Study, trial: FrozenTrial) -> TrialRecord:
    """One trial as a record that knows its retry (``retried_as``), as :func:`trial_records` reads it."""
    record = TrialRecord.from_trial(trial)
    if record.state.name != "FAIL":
        return record
    retry = next((t.number for t in study.get_trials(deepcopy=False) if _retry_of(t) == trial.number), None)
    return dataclasses.replace(record, retried_as=retry) if retry is not None else record


def trial_config(trial: FrozenTrial | TrialRecord) -> TrialConfig:
    """The resolved config a finished trial ran (stored as a user attribute)."""
    if isinstance(trial, TrialRecord):
        if trial.config is None:
            raise ValueError(f"trial {trial.number} stores no config")
        return trial.config
    return TrialConfig.model_validate(trial.user_attrs[CONFIG_ATTR])


# Budget and the best trial


def in_context_key(config: TrialConfig) -> str:
    """What an in-context trial's score depends on: the model, its head and the prompt (the trial's seed, and
    training settings that a trial which trains nothing still samples, do not change it)."""
    return json.dumps(
        [config.model, config.head, config.train.method, config.prompt.model_dump(mode="json")], sort_keys=True
    )


def finished_equal(study: optuna.Study, config: TrialConfig) -> FrozenTrial | None:
    """The first finished (complete or pruned) trial of ``study`` that scored the same in-context config and
    computed its result itself; None for a config that trains (another seed is another estimate)."""
    from optuna.trial import TrialState

    if config.train.trains:
        return None
    wanted = in_context_key(config)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        a = trial.user_attrs
        if a.get(BASELINE_ATTR) or a.get(DUPLICATE_OF_ATTR) is not None:
            continue
        if trial.state == TrialState.PRUNED and not trial.intermediate_values:
            continue  # pruned for another reason (out of memory, a non-finite loss): nothing to replay
        earlier = _config(a)
        if earlier is not None and not earlier.train.trains and in_context_key(earlier) == wanted:
            return trial
    return None


def training_key(config: TrialConfig) -> str:
    """What a trained config's estimate is of: the whole config (the trial's seed is one draw of its noise)."""
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)


def finished_runs(study: optuna.Study, config: TrialConfig) -> list[FrozenTrial]:
    """The complete trials of ``study`` that trained the same config as ``config`` (a config that trains; the
    baseline is never one), by trial number: the earlier runs a repeat adds its own run to. Empty for an
    in-context config (:func:`finished_equal` takes its result instead)."""
    from optuna.trial import TrialState

    if not config.train.trains:
        return []
    wanted = training_key(config)
    out = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get(BASELINE_ATTR) or not trial.values:
            continue
        earlier = _config(trial.user_attrs)
        if earlier is not None and training_key(earlier) == wanted:
            out.append(trial)
    return out


def pooled_values(earlier: Sequence[FrozenTrial], own: Sequence[float]) -> list[float]:
    """The mean over the runs of a config of each objective: ``own`` (this run's values) and each earlier run's
    own values (a repeat's ``run_values``, not its pooled value, so that no run counts twice)."""
    runs = [list(t.user_attrs.get(RUN_VALUES_ATTR) or t.values) for t in earlier] + [list(own)]
    return [sum(r[i] for r in runs) / len(runs) for i in range(len(own))]


def counts_towards_budget(trial: FrozenTrial) -> bool:
    """Complete, pruned, or failed by its own error; not interrupted, abandoned (stale) or surplus."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs


def count_done(study: optuna.Study) -> int:
    """Finished trials that count towards the budget (baseline included)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if counts_towards_budget(t))


def best_trial(study: optuna.Study, records: Sequence[TrialRecord] | None = None) -> TrialRecord | None:
    """The study's chosen trial: the winner of the finalists' race (:mod:`promptsearch.study.finalists`) when one
    was run after the last trial finished, else :func:`searched_best_trial`.

    Pass ``records`` (:func:`trial_records`) to reuse a snapshot instead of reading the storage again.
    """
    records = trial_records(study) if records is None else records
    race = stored_race(study)
    if race is not None and len(study.directions) == 1:
        done = [r for r in records if r.is_complete]
        winner = next((r for r in done if r.number == race.get("winner")), None)
        if winner is not None and race.get("done") == len(done):
            return winner
    return searched_best_trial(study, records)


def searched_best_trial(study: optuna.Study, records: Sequence[TrialRecord] | None = None) -> TrialRecord | None:
    """The best completed trial by its search value (ties: the earlier trial). With several objectives, the
    recommended config of the Pareto front (:func:`promptsearch.study.pareto.recommend`) stands for "the best".
    """
    records = trial_records(study) if records is None else records
    done = [r for r in records if r.is_point]
    if not done:
        return None
    if len(study.directions) > 1:
        return recommend(done, study.directions, within=objectives_info(study).within)
    sign = signs_of(study.directions)[0]
    return min(done, key=lambda r: (sign * (r.dev or 0.0), r.number))


def baseline_trial(study: optuna.Study, records: Sequence[TrialRecord] | None = None) -> TrialRecord | None:
    """The completed plain fine-tuning baseline, if any."""
    from optuna.trial import TrialState

    records = trial_records(study) if records is None else records
    return next((r for r in records if r.is_baseline and r.state == TrialState.COMPLETE), None)


# Writing a running trial's attributes

# What a finished trial learned about its config (not how or where it ran): a duplicate takes these over
_RESULT_ATTRS = (
    CALIBRATION_ATTR,
    BEST_EPOCH_ATTR,
    EPOCHS_RUN_ATTR,
    EVALUATION_ATTR,
    LATENCY_ATTR,
    PROMPT_EXAMPLE_ATTR,
    PROMPT_PARTS_ATTR,
    PROMPT_TOKENS_ATTR,
    DEMOS_DROPPED_ATTR,
)


class TrialWriter:
    """Writes what the objective learns about a running trial; every key it writes is defined above."""

    def __init__(self, trial: optuna.trial.Trial) -> None:
        self.trial = trial

    @property
    def is_baseline(self) -> bool:
        return bool(self.trial.user_attrs.get(BASELINE_ATTR))

    def start(self, config: TrialConfig, *, seed: int, device: str) -> None:
        self.trial.set_user_attr(CONFIG_ATTR, config.model_dump(mode="json"))
        self.trial.set_user_attr(SEED_ATTR, seed)
        self.trial.set_user_attr(DEVICE_ATTR, device)
        self.trial.set_user_attr(WORKER_ATTR, {"pid": os.getpid(), "host": socket.gethostname()})
        copied = self.trial.user_attrs  # a retry made by Optuna's callback carries the dead trial's attributes
        if copied.get(LOST_ATTR) is not None:
            self.trial.set_user_attr(LOST_ATTR, None)
        if EPOCHS_RUN_ATTR in copied:
            self.trial.set_user_attr(EPOCHS_RUN_ATTR, 0)

    def heartbeat(self) -> None:
        self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())

    def calibration(self, params: CalibrationParams) -> None:
        self.trial.set_user_attr(CALIBRATION_ATTR, params.model_dump(mode="json"))

    def fit(self, *, best_epoch: int | None, epochs_run: int) -> None:
        self.trial.set_user_attr(BEST_EPOCH_ATTR, best_epoch)
        self.trial.set_user_attr(EPOCHS_RUN_ATTR, epochs_run)

    def evaluation(self, record: Mapping[str, Any]) -> None:
        """How the trial was scored (:meth:`promptsearch.study.protocol.TrialScore.record`)."""
        self.trial.set_user_attr(EVALUATION_ATTR, dict(record))

    def epochs_run(self, epochs: int) -> None:
        self.trial.set_user_attr(EPOCHS_RUN_ATTR, epochs)

    def prompt(self, *, example: str, parts: list[list[str]] | None, tokens_mean: float, demos_dropped: int) -> None:
        self.trial.set_user_attr(PROMPT_EXAMPLE_ATTR, example)
        if parts:  # for the report's highlighting
            self.trial.set_user_attr(PROMPT_PARTS_ATTR, parts)
        self.trial.set_user_attr(PROMPT_TOKENS_ATTR, round(tokens_mean, 1))
        if demos_dropped:
            self.trial.set_user_attr(DEMOS_DROPPED_ATTR, demos_dropped)

    def latency(self, ms: float) -> None:
        self.trial.set_user_attr(LATENCY_ATTR, round(ms, 4))

    def interrupted(self) -> None:
        self.trial.set_user_attr(INTERRUPTED_ATTR, True)

    def surplus(self) -> None:
        self.trial.set_user_attr(SURPLUS_ATTR, True)

    def pruned_reason(self, reason: str) -> None:
        self.trial.set_user_attr(PRUNED_REASON_ATTR, reason)

    def error(self, message: str) -> None:
        self.trial.set_user_attr(ERROR_ATTR, message[:2000])

    def duplicate(self, earlier: FrozenTrial, *, intermediate: bool = True, last_step: int | None = None) -> bool:
        """Take ``earlier``'s result (an equal in-context config: deterministic, so not computed again): what it
        recorded about its score and prompt, and which trial it came from. Its intermediate values are reported
        again, one step at a time, so the pruner judges them as it judges this study now: True when it prunes
        them (the caller raises ``TrialPruned``); never at ``last_step``, where the trial is fully scored.
        Single-objective studies only report (``intermediate``)."""
        for key in _RESULT_ATTRS:
            if key in earlier.user_attrs:
                self.trial.set_user_attr(key, earlier.user_attrs[key])
        self.trial.set_user_attr(DUPLICATE_OF_ATTR, earlier.number)
        if not intermediate:
            return False
        for step, value in sorted(earlier.intermediate_values.items()):
            self.trial.report(value, step)
            if (last_step is None or step < last_step) and self.trial.should_prune():
                return True
        return False

    def pooled(self, earlier: Sequence[FrozenTrial], own: Sequence[float]) -> list[float]:
        """A repeat of a trained config: record its own run's ``own`` values and the trials of every run, and
        return the mean over the runs (:func:`pooled_values`), the value the trial then takes."""
        values = pooled_values(earlier, own)
        self.trial.set_user_attr(RUN_VALUES_ATTR, [float(v) for v in own])
        self.trial.set_user_attr(
            POOLED_ATTR, {"trials": [t.number for t in earlier] + [self.trial.number], "values": values}
        )
        return values

    def not_duplicate(self) -> None:
        """The earlier trial was pruned, but the pruner lets this one go on: it is scored after all."""
        self.trial.set_user_attr(DUPLICATE_OF_ATTR, None)

    def resources(self, timings: Mapping[str, float], *, peak_memory_mb: float) -> None:
        self.trial.set_user_attr(SECONDS_ATTR, {k: round(v, 4) for k, v in timings.items()})
        self.trial.set_user_attr(TRAIN_SECONDS_ATTR, round(timings.get("train", 0.0), 3))
        self.trial.set_user_attr(PEAK_MEMORY_ATTR, round(peak_memory_mb, 1))


def completed_trial_attrs(
    config: TrialConfig, *, best_epoch: int | None, calibration: CalibrationParams | None = None
) -> dict[str, Any]:
    """The attributes of a trial added by hand (``optuna.trial.create_trial``) for a config trained outside a
    study, so that it reads back as a :class:`TrialRecord`."""
    attrs: dict[str, Any] = {CONFIG_ATTR: config.model_dump(mode="json"), BEST_EPOCH_ATTR: best_epoch}
    if calibration is not None:
        attrs[CALIBRATION_ATTR] = calibration.model_dump(mode="json")
    return attrs


# Enqueued trials


def enqueue_baseline(study: optuna.Study) -> None:
    """Enqueue the plain fine-tuning baseline (the first trial of a new study)."""
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})


def enqueue_warm_start(study: optuna.Study, params: Mapping[str, Any], source: str) -> None:
    study.enqueue_trial(dict(params), user_attrs={WARM_START_ATTR: source})


def warm_start_sources(study: optuna.Study) -> set[str]:
    """The sources of the warm-start trials already enqueued in ``study``."""
    return {s for t in study.get_trials(deepcopy=False) if (s := t.user_attrs.get(WARM_START_ATTR)) is not None}


def epoch_recorder(study: optuna.Study) -> Callable[[int, int, float], None]:
    """An ``on_epoch(trial_number, epoch, score)`` callback that keeps a running trial's ``epochs_run`` current,
    so that a trial whose worker dies says in which epoch (a worker of ``run --workers N`` passes it)."""
    ids: dict[int, int] = {}

    def record(number: int, epoch: int, score: float) -> None:
        storage = study._storage
        with suppress(Exception):  # what it says is for a trial that dies: a storage hiccup must not kill it
            if number not in ids:
                ids[number] = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
            storage.set_trial_user_attr(ids[number], EPOCHS_RUN_ATTR, int(epoch))

    return record


def exit_text(returncode: int) -> str:
    """A process's end as people say it: ``SIGKILL`` for -9, ``exit code 1``."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def note_lost(study: optuna.Study, trial: FrozenTrial, *, worker: int, returncode: int) -> bool:
    """Write on the RUNNING ``trial`` that its worker died ("worker 0 died (SIGKILL) during epoch 3"), before the
    heartbeat check fails it; False when it is finished already (then the check has said what it knows)."""
    from optuna.exceptions import UpdateFinishedTrialError

    what = f"worker {worker} died ({exit_text(returncode)})" + _during(trial.user_attrs.get(EPOCHS_RUN_ATTR))
    note = {"worker": worker, "exit": returncode, "what": what}
    try:
        study._storage.set_trial_user_attr(trial._trial_id, LOST_ATTR, note)
    except (UpdateFinishedTrialError, RuntimeError):
        return False
    return True


def mark_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Flag a RUNNING trial whose worker stopped sending heartbeats (before failing it)."""
    study._storage.set_trial_user_attr(trial._trial_id, STALE_ATTR, True)


def enqueue_retry(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Enqueue a stale trial once more (once only: a retry is not retried); return whether it was enqueued."""
    if RETRY_OF_ATTR in trial.user_attrs:
        return False
    keep = {BASELINE_ATTR: True} if trial.user_attrs.get(BASELINE_ATTR) else {}
    study.enqueue_trial(dict(trial.params), user_attrs={**keep, RETRY_OF_ATTR: trial.number})
    return True


# Study attributes


@dataclass(frozen=True)
class StoredSpace:
    """The search space stored with a study when it was created."""

    name: str | None
    file: str | None
    text: str | None
    fingerprint: str | None
    data_fingerprint: str | None


def store_space(study: optuna.Study, space: StoredSpace) -> None:
    study.set_user_attr(
        SPACE_ATTR,
        {
            "name": space.name,
            "file": space.file,
            "text": space.text,
            "fingerprint": space.fingerprint,
            "data_fingerprint": space.data_fingerprint,
        },
    )


def stored_space(study: optuna.Study) -> StoredSpace | None:
    raw = study.user_attrs.get(SPACE_ATTR)
    if raw is None:
        return None
    return StoredSpace(
        name=raw.get("name"),
        file=raw.get("file"),
        text=raw.get("text"),
        fingerprint=raw.get("fingerprint"),
        data_fingerprint=raw.get("data_fingerprint"),
    )


@dataclass(frozen=True)
class RunStatus:
    """The budget of the last ``run`` on a study and how it ended: ``running`` (or killed), ``finished`` (the budget
    or the time limit reached) or ``incomplete`` (its workers died; ``problems`` says how)."""

    n_trials: int
    state: str
    problems: tuple[str, ...] = ()

    @property
    def target(self) -> int:
        """Counted trials the run asked for: the sampled ones and the baseline."""
        return self.n_trials + 1


def store_run(study: optuna.Study, status: RunStatus) -> None:
    study.set_user_attr(
        RUN_ATTR, {"n_trials": status.n_trials, "state": status.state, "problems": list(status.problems)}
    )


def stored_run(study: optuna.Study) -> RunStatus | None:
    raw = study.user_attrs.get(RUN_ATTR)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("n_trials"), int):
        return None
    return RunStatus(
        n_trials=raw["n_trials"], state=str(raw.get("state", "running")), problems=tuple(raw.get("problems") or ())
    )


@dataclass(frozen=True)
class ObjectivesInfo:
    """The objectives of a study (``dev`` first) and the recommendation tolerance, as stored at creation."""

    names: list[str]
    within: float


def store_objectives(study: optuna.Study, names: Sequence[str], recommend_within: float) -> None:
    """Store the objectives of a multi-objective study (only when they changed)."""
    info = {"names": list(names), "recommend_within": recommend_within}
    if study.user_attrs.get(OBJECTIVES_ATTR) != info:
        study.set_user_attr(OBJECTIVES_ATTR, info)


def objectives_info(study: optuna.Study) -> ObjectivesInfo:
    stored = study.user_attrs.get(OBJECTIVES_ATTR) or {}
    names = stored.get("names") or ["dev"] + [f"objective {i}" for i in range(1, len(study.directions))]
    return ObjectivesInfo(names=list(names), within=float(stored.get("recommend_within", 0.0)))


def store_race(study: optuna.Study, race: Mapping[str, Any]) -> None:
    study.set_user_attr(RACE_ATTR, dict(race))


def stored_race(study: optuna.Study) -> dict[str, Any] | None:
    """The finalists' race as stored (:func:`promptsearch.study.finalists.race_record`), or None."""
    raw = study.user_attrs.get(RACE_ATTR)
    return dict(raw) if isinstance(raw, Mapping) else None


def store_final(study: optuna.Study, outcome: Mapping[str, Any]) -> None:
    study.set_user_attr(FINAL_ATTR, dict(outcome))


def stored_final_raw(study: optuna.Study) -> dict[str, Any] | None:
    """The stored final evaluation as stored (see :mod:`promptsearch.study.final` for its checks)."""
    raw = study.user_attrs.get(FINAL_ATTR)
    return dict(raw) if raw is not None else None


def store_candidates(study: optuna.Study, candidates: Mapping[str, Any]) -> None:
    study.set_user_attr(CANDIDATES_ATTR, dict(candidates))


def stored_candidates_raw(study: optuna.Study) -> dict[str, Any] | None:
    raw = study.user_attrs.get(CANDIDATES_ATTR)
    return dict(raw) if isinstance(raw, Mapping) else None
