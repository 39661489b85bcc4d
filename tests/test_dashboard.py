"""A study opens in optuna-dashboard as it is (SQLite URL or journal file), prompts visible as user attributes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from promptsearch.api import search

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed")


def _get(app: Any, path: str) -> Any:
    """One GET through the dashboard's WSGI app, in process (no server, no network)."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_the_dashboard_opens_a_run_folders_study_and_shows_each_prompt(
    kind: str, tiny_space: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    db = out / ("study.db" if kind == "sqlite" else "study.journal")
    storage = f"sqlite:///{db}" if kind == "sqlite" else f"journal://{db}"
    result = search(tiny_space, out=out, storage=storage, n_trials=1, final_seeds=0, device="cpu")
    # the very argument the README gives: `optuna-dashboard sqlite:///runs/<name>/study.db` or the journal's path
    app = optuna_dashboard.wsgi(f"sqlite:///{db}" if kind == "sqlite" else str(db))
    studies = _get(app, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["tiny"]
    detail = _get(app, f"/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) == len(result.study.trials) == 2
    for shown, trial in zip(detail["trials"], result.study.trials, strict=True):
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        assert attrs["prompt_example"] == trial.user_attrs["prompt_example"]
