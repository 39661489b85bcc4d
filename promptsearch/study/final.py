"""Final evaluation: retrain the best config and the baseline with K seeds, score the test split.

The search never reads test. Here each seed trains on train, keeps the epoch that was best on dev
(as in LM-BFF), and scores that model on test. Results are stored in the study, keyed by what they
depend on, so ``promptsearch report`` reuses them instead of training again.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import optuna

from promptsearch.errors import PromptsearchError
from promptsearch.io.data import TaskData
from promptsearch.space.config import TrialConfig
from promptsearch.space.sampling import baseline_config
from promptsearch.space.search_space import SearchSpace
from promptsearch.study.objective import TrialRunner
from promptsearch.study.records import TrialRecord, baseline_trial, best_trial, store_final, stored_final_raw

__all__ = ["final_evaluation", "score_summary", "stored_final"]

logger = logging.getLogger(__name__)
SEED_OFFSET = 1000


def score_summary(scores: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(scores),
        "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "scores": scores,
    }


def _evaluate_config(
    runner: TrialRunner,
    config: TrialConfig,
    seeds: int,
    *,
    save_to: Callable[[], None] | None = None,
    progress: Callable[[str], None] | None = None,
    label: str = "",
) -> dict[str, Any]:
    scores, dev_scores, epochs = [], [], []
    for i in range(seeds):
        seed = SEED_OFFSET + i
        if progress is not None:
            progress(f"final evaluation: {label} seed {i + 1}/{seeds}")
        result, _ = runner.fit(config, seed=seed, keep_best_state=True)
        score = runner.evaluate(config, "test")
        scores.append(score)
        dev_scores.append(result.best_score)
        epochs.append(result.best_epoch)
        if i == 0 and save_to is not None:
            save_to()
    return {
        "test": score_summary(scores),
        "dev_scores": dev_scores,
        "best_epochs": epochs,
        "seeds": [SEED_OFFSET + i for i in range(seeds)],
    }


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
    save_model: Callable[[TrialConfig], None] | None = None,
    progress: Callable[[str], None] | None = None,
    best: TrialRecord | None = None,
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

    def save() -> None:
        if save_model is not None:
            save_model(best_cfg)

    best_eval = _evaluate_config(runner, best_cfg, seeds, save_to=save, progress=progress, label="best config")
    if best_cfg == base_cfg or best_cfg.baseline:
        base_eval = best_eval
    else:
        base_eval = _evaluate_config(runner, base_cfg, seeds, progress=progress, label="baseline")
    outcome = {
        "key": _key(study, runner.space, runner.data, seeds, best),
        "best": best_eval,
        "baseline": base_eval,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    store_final(study, outcome)
    return outcome
