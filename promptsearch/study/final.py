"""Final evaluation: retrain the chosen config and the baseline with K seeds, score the test split, and say
whether the difference is real.

The search never reads test. With ``search.evaluation.mode: cv`` each seed trains on the rows of
``final_train`` (all labelled rows by default) for the epoch the trial chose on its mean fold curve; with
``mode: dev`` each seed trains on train and keeps the epoch that was best on dev (as in LM-BFF). Both configs are
scored on the same test rows, so a paired bootstrap over rows (and seeds) gives an interval for the difference
and a verdict: better, no clear difference, or worse (:mod:`promptsearch.study.verdict`). Results are stored in
the study, keyed by what they depend on, so ``promptsearch report`` reuses them instead of training again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import optuna

from promptsearch.errors import PromptsearchError
from promptsearch.io.data import TaskData
from promptsearch.models.metrics import compute_metric
from promptsearch.space.config import TrialConfig
from promptsearch.space.sampling import baseline_config
from promptsearch.space.search_space import SearchSpace
from promptsearch.study.objective import TrialRunner
from promptsearch.study.protocol import Protocol
from promptsearch.study.records import (
    TrialRecord,
    baseline_trial,
    best_trial,
    store_final,
    stored_final_raw,
    stored_race,
)
from promptsearch.study.verdict import dev_test_gap_warning, paired_bootstrap_metric

__all__ = ["evaluate_config", "final_evaluation", "score_summary", "stored_final"]

logger = logging.getLogger(__name__)
SEED_OFFSET = 1000


def score_summary(scores: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(scores),
        "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "scores": scores,
    }


def evaluate_config(
    protocol: Protocol,
    record: TrialRecord | None,
    config: TrialConfig,
    seeds: int,
    *,
    save_to: Callable[[TrialRunner], None] | None = None,
    progress: Callable[[str], None] | None = None,
    label: str = "",
) -> tuple[dict[str, Any], list[list[int]], list[int]]:
    """Scores per seed, and the test predictions per seed (for the verdict) with the gold labels."""
    cv = protocol.evaluation.cross_validated
    runner = protocol.final_runner() if cv else protocol.runner
    epoch = record.best_epoch if record is not None and record.best_epoch else config.train.epochs
    if cv and config.train.trains:  # the epoch the trial chose on its mean fold curve
        config = config.model_copy(update={"train": config.train.model_copy(update={"epochs": max(1, epoch)})})
    metric = runner.space.spec.task.metric
    scores, dev_scores, epochs, predictions = [], [], [], []
    gold: list[int] = []
    for i in range(seeds):
        seed = SEED_OFFSET + i
        if progress is not None:
            progress(f"final evaluation: {label} seed {i + 1}/{seeds}")
        result, _ = runner.fit(config, seed=seed, keep_best_state=not cv)
        gold, predicted = runner.predictions(config, "test")
        scores.append(compute_metric(metric, gold, predicted))
        predictions.append(predicted)
        dev_scores.append(result.best_score)
        epochs.append(result.best_epoch if not cv else (config.train.epochs if config.train.trains else 0))
        if i == 0 and save_to is not None:
            save_to(runner)
    rows = len(runner.data.train)
    trained_on = (
        f"all {rows} labelled rows (train and dev)" if runner is not protocol.runner else f"the {rows} train rows"
    )
    outcome = {
        "test": score_summary(scores),
        "dev_scores": dev_scores,
        "best_epochs": epochs,
        "seeds": [SEED_OFFSET + i for i in range(seeds)],
        "trained_on": trained_on if config.train.trains else f"nothing (in context; demonstrations from {trained_on})",
    }
    return outcome, predictions, gold


def _search_estimate(study: optuna.Study, best: TrialRecord) -> float | None:
    """What the search chose ``best`` on: its race mean when it ran in the stored race, else its trial value."""
    race = stored_race(study)
    for standing in (race or {}).get("standings", []):
        if standing.get("trial") == best.number and standing.get("mean") is not None:
            return float(standing["mean"])
    return best.dev if best.dev is not None and math.isfinite(best.dev) else None


def _configs(
    study: optuna.Study, space: SearchSpace, best: TrialRecord | None = None
) -> tuple[TrialRecord, TrialConfig, TrialConfig]:
    best = best_trial(study) if best is None else best
    if best is None or best.config is None:
        raise PromptsearchError(
            f"study '{study.study_name}' has no completed trial yet, so there is no best config to evaluate; "
            "run more trials (the failed ones say why in report.md)"
        )
    base = baseline_trial(study)
    base_cfg = base.config if base is not None and base.config is not None else baseline_config(space)
    return best, best.config, base_cfg


def _key(
    study: optuna.Study, space: SearchSpace, data: TaskData, seeds: int, best: TrialRecord | None = None
) -> dict[str, Any]:
    best, best_cfg, base_cfg = _configs(study, space, best)
    return {
        "best_trial": best.number,
        "best_config": best_cfg.model_dump(mode="json"),
        "baseline_config": base_cfg.model_dump(mode="json"),
        "seeds": seeds,
        "data": data.fingerprint,
    }


def stored_final(
    study: optuna.Study, space: SearchSpace, data: TaskData, seeds: int, *, best: TrialRecord | None = None
) -> dict[str, Any] | None:
    """The stored final evaluation if it still matches the study's best trial, configs, seeds and data.

    ``best``: the study's :func:`~promptsearch.study.records.best_trial`, when the caller has it already.
    """
    stored = stored_final_raw(study)
    if stored is None:
        return None
    best = best_trial(study) if best is None else best
    if best is not None and stored.get("key") == _key(study, space, data, seeds, best):
        return stored
    return None


def final_evaluation(
    runner: TrialRunner,
    study: optuna.Study,
    *,
    seeds: int,
    save_model: Callable[[TrialConfig, TrialRunner], None] | None = None,
    progress: Callable[[str], None] | None = None,
    best: TrialRecord | None = None,
    protocol: Protocol | None = None,
) -> dict[str, Any]:
    """Test scores (mean, std, per seed) of the best trial's config and of the baseline.

    ``best``: the study's :func:`~promptsearch.study.records.best_trial`, when the caller has it already.
    """
    if not runner.data.has_test:
        raise PromptsearchError(
            "task.splits.test: this task has no test split, so there is no final evaluation; "
            "provide a test file (task.data.files.test) or run with --final-seeds 0"
        )
    best = best_trial(study) if best is None else best
    stored = stored_final(study, runner.space, runner.data, seeds, best=best)
    if stored is not None and save_model is None:
        logger.info("reusing the stored final evaluation of trial %d", stored["key"]["best_trial"])
        return stored
    t0 = time.perf_counter()
    best, best_cfg, base_cfg = _configs(study, runner.space, best)
    protocol = protocol if protocol is not None else Protocol(runner)

    def save(trained: TrialRunner) -> None:
        if save_model is not None:
            save_model(best_cfg, trained)

    best_eval, best_preds, gold = evaluate_config(
        protocol, best, best_cfg, seeds, save_to=save, progress=progress, label="best config"
    )
    if best_cfg == base_cfg or best_cfg.baseline:
        base_eval, base_preds = best_eval, best_preds
    else:
        base = baseline_trial(study)
        base_eval, base_preds, _ = evaluate_config(protocol, base, base_cfg, seeds, progress=progress, label="baseline")
    verdict = paired_bootstrap_metric(gold, best_preds, base_preds, runner.space.spec.task.metric)
    warning = None
    estimate = _search_estimate(study, best)
    if estimate is not None:
        warning = dev_test_gap_warning(estimate, best_eval["test"]["mean"])
    outcome = {
        "key": _key(study, runner.space, runner.data, seeds, best),
        "best": best_eval,
        "baseline": base_eval,
        "verdict": {**dataclasses.asdict(verdict), "text": verdict.describe()},
        "gap_warning": warning,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    store_final(study, outcome)
    return outcome
