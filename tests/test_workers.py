"""Several workers on one study: storage choice, parallel runs, and recovery from a killed worker.

The PostgreSQL tests use the server at 127.0.0.1:5432 (database ``test``) with a study of their own,
deleted afterwards; they skip, saying why, when no server is reachable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tiny import postgres_reachable

from promptsearch.api import search
from promptsearch.cli import main
from promptsearch.errors import ConfigError
from promptsearch.io.data import load_task_data
from promptsearch.space.search_space import load_space
from promptsearch.study.records import STALE_ATTR, counts_towards_budget
from promptsearch.study.storage import make_storage, open_study
from promptsearch.study.workers import choose_storage, worker_seed

PG = "postgresql://root@127.0.0.1:5432/test"


needs_postgres = pytest.mark.skipif(
    not postgres_reachable(), reason="no PostgreSQL server at 127.0.0.1:5432 (database test, user root)"
)


# --- storage choice -------------------------------------------------------------------------------


def test_default_storage_is_sqlite_for_one_worker_and_a_journal_for_several(tmp_path: Path) -> None:
    assert choose_storage(tmp_path, None, 1) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    assert choose_storage(tmp_path, None, 3) == f"journal://{(tmp_path / 'study.journal').resolve()}"


def test_several_workers_on_sqlite_are_refused_with_what_to_use(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SQLite takes one writer at a time.*journal:///.*postgresql://"):
        choose_storage(tmp_path, "sqlite:///x.db", 2)
    (tmp_path / "study.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="continue it with --workers 1"):
        choose_storage(tmp_path, None, 2)


def test_workers_zero_is_one_clear_error(tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tiny_space), "--workers", "0", "--out", str(tmp_path / "run")]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_worker_seeds_differ() -> None:
    assert worker_seed(0, 0) == 0
    assert len({worker_seed(5, i) for i in range(8)}) == 8


def test_a_worker_with_another_space_refuses_to_join(tiny_space: Path, tmp_path: Path) -> None:
    space = load_space(tiny_space)
    data = load_task_data(space.spec.task, space.base_dir)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(space, url, "s", data_fingerprint=data.fingerprint)
    other = tmp_path / "other.yaml"
    other.write_text(tiny_space.read_text().replace("batch_size: [4, 8]", "batch_size: [2, 4]"))
    other_space = load_space(other)
    with pytest.raises(ConfigError, match="was created from a different search space"):
        open_study(other_space, url, "s", data_fingerprint=data.fingerprint, create=False)


# --- parallel runs --------------------------------------------------------------------------------


def _check_study(study: optuna.Study, target: int) -> None:
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if counts_towards_budget(t)]
    assert len(counted) == target, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
    assert study.best_value == max(complete)


@pytest.mark.slow
def test_two_workers_share_a_journal_file(tiny_space: Path, tmp_path: Path) -> None:
    result = search(tiny_space, out=tmp_path / "run", workers=2, final_seeds=1, device="cpu", heartbeat=1)
    assert (tmp_path / "run" / "study.journal").is_file() and not (tmp_path / "run" / "study.db").exists()
    _check_study(result.study, 5)
    logs = sorted((tmp_path / "run").glob("worker-*.log"))
    assert len(logs) == 2 and all("reached its budget" in log.read_text() for log in logs)
    # each worker its share of the cores, its OpenMP threads sleeping when idle (unless the user said otherwise)
    share = max(1, (os.cpu_count() or 1) // 2)
    waits = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    for log in logs:
        text = log.read_text()
        assert f"on {share} thread(s), OpenMP waits {waits.lower() if waits.isupper() else waits}" in text, text
    assert result.best_test is not None


def _worker(space: Path, storage: str, name: str, index: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PROMPTSEARCH_STORAGE": storage, "PROMPTSEARCH_TORCH_THREADS": "1"}
    cmd = [sys.executable, "-m", "promptsearch.cli", "worker", str(space), "--study-name", name,
           "--worker-index", str(index), "--device", "cpu", "--heartbeat", "1"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _kill_mid_trial_then_recover(space_file: Path, storage: str, name: str, tmp_path: Path) -> None:
    # long trials (many epochs), so that the worker is surely killed in the middle of one
    space_file.write_text(space_file.read_text().replace("epochs: 5", "epochs: 60"))
    space = load_space(space_file)
    data = load_task_data(space.spec.task, space.base_dir)
    study = open_study(space, storage, name, data_fingerprint=data.fingerprint, heartbeat=1)
    target = (space.spec.search.n_trials or 0) + 1
    first = _worker(space_file, storage, name, 0, tmp_path / "w0.log")
    deadline = time.monotonic() + 120
    while not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "w0.log").read_text()
        time.sleep(0.2)
    time.sleep(1.5)  # well inside the trial
    killed = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = _worker(space_file, storage, name, 1, tmp_path / "w1.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "w1.log").read_text()
    trials = study.get_trials(deepcopy=False)
    for number in killed:
        dead = trials[number]
        assert dead.state == TrialState.FAIL and not counts_towards_budget(dead)
        retried = [t for t in trials if t.user_attrs.get("retry_of") == number or
                   t.system_attrs.get("failed_trial") == number]  # fmt: skip
        assert len(retried) == 1 and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    _check_study(study, target)


@pytest.mark.slow
def test_sigkill_mid_trial_with_a_journal_file(tiny_space: Path, tmp_path: Path) -> None:
    storage = f"journal://{tmp_path / 'study.journal'}"
    _kill_mid_trial_then_recover(tiny_space, storage, "kill", tmp_path)
    study = optuna.load_study(study_name="kill", storage=make_storage(storage))
    assert any(t.user_attrs.get(STALE_ATTR) for t in study.trials)


@pytest.mark.slow
@needs_postgres
def test_two_worker_processes_on_postgresql(tiny_space: Path, tmp_path: Path) -> None:
    name = f"two-{uuid.uuid4().hex[:8]}"
    space = load_space(tiny_space)
    data = load_task_data(space.spec.task, space.base_dir)
    study = open_study(space, PG, name, data_fingerprint=data.fingerprint, heartbeat=1)
    try:
        procs = [_worker(tiny_space, PG, name, i, tmp_path / f"w{i}.log") for i in range(2)]
        for i, p in enumerate(procs):
            assert p.wait(timeout=600) == 0, (tmp_path / f"w{i}.log").read_text()
        _check_study(study, 5)
    finally:
        optuna.delete_study(study_name=name, storage=PG)


@pytest.mark.slow
@needs_postgres
def test_sigkill_mid_trial_on_postgresql(tiny_space: Path, tmp_path: Path) -> None:
    name = f"kill-{uuid.uuid4().hex[:8]}"
    try:
        _kill_mid_trial_then_recover(tiny_space, PG, name, tmp_path)
    finally:
        optuna.delete_study(study_name=name, storage=PG)


@pytest.mark.slow
def test_a_lock_left_by_a_killed_worker_stalls_the_journal_for_seconds_not_half_a_minute(tmp_path: Path) -> None:
    import time

    import optuna

    from promptsearch.study.storage import JOURNAL_LOCK_GRACE_S, make_storage

    journal = tmp_path / "study.journal"
    storage = make_storage(f"journal:///{journal}")
    study = optuna.create_study(storage=storage, study_name="s")
    (tmp_path / "study.journal.lock").touch()  # what a worker killed inside a write leaves behind
    started = time.monotonic()
    study.enqueue_trial({"x": 1})  # a write: waits for the stale lock, then takes it over
    waited = time.monotonic() - started
    assert JOURNAL_LOCK_GRACE_S - 1 <= waited < 25, waited  # Optuna's own default waits 30 s
    assert not (tmp_path / "study.journal.lock").exists()
