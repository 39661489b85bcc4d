"""Optional MLflow logging of trials, through Optuna's integration (``pip install 'promptsearch[mlflow]'``).

Each finished trial becomes one MLflow run in the experiment named after the study: its params,
its objective values (``dev_<metric>``, then the costs of a multi-objective study), its state, and
its user attributes as tags (the rendered ``prompt_example``, the resolved config, timings). A
tracking failure is logged and never stops the search.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError
from promptsearch.redact import mask_url, scrub

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["INSTALL_HINT", "mlflow_callback"]

logger = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'promptsearch[mlflow]'"


def _check_uri(uri: str) -> None:
    is_file_store = uri.startswith("file:") or "://" not in uri
    if is_file_store and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise ConfigError(
            f"--mlflow {mask_url(uri)}: MLflow 3 refuses its plain-folder file store unless "
            "MLFLOW_ALLOW_FILE_STORE=true is set; use a local database file instead "
            "(--mlflow sqlite:///mlflow.db) or set that variable"
        )


def mlflow_callback(
    tracking_uri: str, *, metric: str, objectives: Sequence[str] = ("dev",)
) -> Callable[[optuna.Study, FrozenTrial], None]:
    """A study callback that logs every finished trial to MLflow at ``tracking_uri``."""
    _check_uri(tracking_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the integration's own deprecation notice, see the README
            from optuna_integration.mlflow import MLflowCallback
    except ImportError as exc:
        raise ConfigError(
            f"--mlflow needs MLflow and optuna-integration ({exc}); install them: {INSTALL_HINT}"
        ) from None
    names = [f"dev_{metric}" if name == "dev" else name for name in objectives]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        inner = MLflowCallback(
            tracking_uri=tracking_uri,
            metric_name=names if len(names) > 1 else names[0],
            create_experiment=True,
            tag_trial_user_attrs=True,
        )

    def log_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        try:
            inner(study, trial)
        except Exception as exc:  # MLflow raises many types (store, network, limits); the search goes on
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            logger.warning("MLflow: could not log trial %d: %s", trial.number, scrub(first, tracking_uri))

    return log_trial
