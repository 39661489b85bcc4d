"""Dying workers and a dying coordinator: restarts, what a lost trial says, incomplete studies.

The fast tests run the coordinator's loop on real, tiny processes (``sh -c 'kill -KILL $$'``) and real Optuna
storages; the slow ones SIGKILL real ``promptsearch worker`` processes (and the ``run`` coordinator) mid-trial on
a journal file and on PostgreSQL (127.0.0.1:5432, database ``test``; skipped, saying why, without a server).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.trial import TrialState
from test_fuzz import fuzz
from tiny import postgres_reachable, tiny_data, tiny_space_text

from promptsearch.api import search
from promptsearch.cli import EXIT_INCOMPLETE, main
from promptsearch.errors import ConfigError
from promptsearch.reporting.html import render_html
from promptsearch.reporting.report import build_report, render_markdown
from promptsearch.reporting.schema import Report
from promptsearch.space.config import PromptConfig, TrainConfig, TrialConfig
from promptsearch.study.records import (
    HEARTBEAT_ATTR,
    WORKER_ATTR,
    RunStatus,
    TrialWriter,
    completed_trial_attrs,
    counts_towards_budget,
    enqueue_baseline,
    epoch_recorder,
    exit_text,
    note_lost,
    store_run,
    trial_record,
    trial_records,
)
from promptsearch.study.storage import fail_stale_journal_trials, make_storage, recover_stale
from promptsearch.study.supervise import supervise
from promptsearch.study.workers import COORDINATOR_ENV, watch_coordinator

CONFIG = TrialConfig(prompt=PromptConfig(), train=TrainConfig(method="full", epochs=2), baseline=True)
HOST = socket.gethostname()
PG = "postgresql://root@127.0.0.1:5432/test"

needs_postgres = pytest.mark.skipif(
    not postgres_reachable(), reason="no PostgreSQL server at 127.0.0.1:5432 (database test, user root)"
)


# --- what a lost trial says ---------------------------------------------------------------------


def _start_trial(study: optuna.Study, *, epochs_done: int, silent: float) -> optuna.trial.Trial:
    """A trial started the way the objective starts one, ``epochs_done`` epochs in, last heartbeat ``silent`` ago."""
    trial = study.ask()
    TrialWriter(trial).start(CONFIG, seed=0, device="cpu")
    record = epoch_recorder(study)
    for epoch in range(1, epochs_done + 1):
        record(trial.number, epoch, 0.5)
    trial.set_user_attr(HEARTBEAT_ATTR, time.time() - silent)
    return trial


@fuzz(25)
@given(
    epochs_done=st.integers(0, 50),
    returncode=st.sampled_from([-signal.SIGKILL, -signal.SIGTERM, -signal.SIGSEGV, 1, 2, 137]),
    seen=st.booleans(),
    silent=st.integers(20, 500),
)
def test_an_abandoned_trial_says_what_happened_and_is_retried_once(
    epochs_done: int, returncode: int, seen: bool, silent: int
) -> None:
    study = optuna.create_study(direction="maximize")
    enqueue_baseline(study)
    trial = _start_trial(study, epochs_done=epochs_done, silent=silent)
    if seen:  # the coordinator saw its worker die
        assert note_lost(study, study.trials[0], worker=1, returncode=returncode)
    assert fail_stale_journal_trials(study, grace=10) == [0]
    dead = trial_records(study)[0]
    assert dead.state == TrialState.FAIL and dead.abandoned and not counts_towards_budget(study.trials[0])
    who = f"worker 1 died ({exit_text(returncode)})" if seen else f"its worker (pid {os.getpid()} on {HOST}) stopped "
    who += "" if seen else "sending heartbeats"
    during = f" during epoch {epochs_done + 1}" if epochs_done else ""
    assert dead.failure in [f"{who}{during}; no heartbeat for {s} s; retried as trial 1" for s in (silent, silent + 1)]
    if seen:  # the trial's own user attributes say it too (optuna-dashboard shows them)
        assert study.trials[0].user_attrs["lost"]["what"] == f"worker 1 died ({exit_text(returncode)}){during}"
    # the retry runs the same config; when its worker dies too, it is not retried again
    retry = study.ask()
    assert retry.number == 1 and trial_record(study, study.trials[1]).retry_of == 0
    TrialWriter(retry).start(CONFIG, seed=0, device="cpu")
    retry.set_user_attr(HEARTBEAT_ATTR, time.time() - silent)
    assert fail_stale_journal_trials(study, grace=10) == [1]
    again = trial_records(study)[1]
    assert again.failure.endswith("not retried again (it was the retry of trial 0)")
    assert len(study.trials) == 2 and trial.number == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.parametrize("returncode", [-signal.SIGKILL, 1])
def test_the_database_heartbeat_check_keeps_what_the_coordinator_noted(tmp_path: Path, returncode: int) -> None:
    # SQLite with Optuna's own heartbeats (as PostgreSQL): Optuna fails the trial and its callback enqueues the retry
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=0.5)  # a beat every 1 s, stale after 2 s
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    enqueue_baseline(study)
    trial = _start_trial(study, epochs_done=2, silent=0)
    storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    assert note_lost(study, study.trials[0], worker=0, returncode=returncode)
    time.sleep(3.2)  # SQLite's clock has whole seconds: more than 2 of them
    recover_stale(study, 0.5)
    dead, waiting = trial_records(study)
    assert dead.state == TrialState.FAIL and waiting.state == TrialState.WAITING and waiting.retry_of == 0
    assert re.fullmatch(
        rf"worker 0 died \({re.escape(exit_text(returncode))}\) during epoch 3; no heartbeat for \d+ s; "
        "retried as trial 1",
        dead.failure,
    ), dead.failure
    # Optuna's retry copies the dead trial's attributes; the retry, once it runs, says nothing of that death
    retry = study.ask()
    TrialWriter(retry).start(CONFIG, seed=0, device="cpu")
    retry_record = trial_records(study)[1]
    assert retry_record.lost is None and retry_record.epochs_run == 0 and retry_record.retry_of == 0
    assert not note_lost(study, study.trials[0], worker=0, returncode=-9)  # a finished trial is not written


def test_a_failure_without_evidence_is_not_blamed_on_a_dead_worker() -> None:
    study = optuna.create_study()
    trial = study.ask()
    TrialWriter(trial).start(CONFIG, seed=0, device="cpu")
    study.tell(trial, state=TrialState.FAIL)  # as Optuna fails a trial whose value it refuses
    record = trial_records(study)[0]
    assert not record.abandoned and record.failure == ""


def test_exit_text_names_signals_and_codes() -> None:
    assert exit_text(-9) == "SIGKILL" and exit_text(-15) == "SIGTERM" and exit_text(-200) == "signal 200"
    assert exit_text(1) == "exit code 1" and exit_text(130) == "exit code 130"


# --- the coordinator's loop, on real tiny processes ---------------------------------------------------------------


class Scripted:
    """Starts attempt ``n`` of worker ``i`` as ``sh -c scripts[i][n]``; ``on_start`` sees each new process."""

    def __init__(self, tmp_path: Path, scripts: dict[int, list[str]], on_start: Any = None) -> None:
        self.tmp_path, self.scripts, self.on_start = tmp_path, scripts, on_start
        self.starts = dict.fromkeys(scripts, 0)

    def log(self, index: int) -> Path:
        return self.tmp_path / f"worker-{index}.log"

    def start(self, index: int, *, timeout: float | None = None) -> subprocess.Popen[bytes]:
        script = self.scripts[index][self.starts[index]]
        self.starts[index] += 1
        with self.log(index).open("ab") as fh:
            proc = subprocess.Popen(["sh", "-c", script], stdout=fh, stderr=subprocess.STDOUT)
        if self.on_start is not None:
            self.on_start(index, proc)
        return proc


def test_a_dying_worker_is_restarted_with_a_back_off_until_its_restarts_are_used_up(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")  # nobody runs trials here: the budget is never reached
    launcher = Scripted(
        tmp_path,
        {0: ["kill -KILL $$", "exit 1", "echo 'error: the data changed'; exit 2"], 1: ["exit 0"]},
    )
    t0 = time.monotonic()
    outcome = supervise(launcher, study, workers=2, target=3, heartbeat=0.2, max_restarts=2, restart_delay=0.3)
    assert time.monotonic() - t0 >= 0.3 + 0.6  # the back-off doubles: 0.3 s, then 0.6 s
    assert launcher.starts == {0: 3, 1: 1}  # worker 1 exited normally: not restarted
    assert [(d.worker, d.returncode) for d in outcome.deaths] == [(0, -9), (0, 1), (0, 2)]
    assert outcome.gave_up == (0,) and not outcome.complete and outcome.missing == 3
    assert outcome.problems(2) == [
        "worker 0 died 3 times (SIGKILL, exit code 1, exit code 2), and was not restarted again (--max-restarts 2); "
        f"it last wrote: error: the data changed; its output: {tmp_path / 'worker-0.log'}"
    ]


def test_a_dead_worker_is_not_restarted_once_the_others_reached_the_budget(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=completed_trial_attrs(CONFIG, best_epoch=1)))
    launcher = Scripted(tmp_path, {0: ["sleep 0.3; kill -KILL $$", "exit 0"], 1: ["exit 0"]})
    outcome = supervise(launcher, study, workers=2, target=1, heartbeat=0.2, max_restarts=3, restart_delay=0.2)
    assert launcher.starts == {0: 1, 1: 1} and outcome.complete and outcome.gave_up == ()
    assert [d.describe() for d in outcome.deaths] == ["worker 0 died (SIGKILL)"]


def test_no_trial_of_a_dead_worker_stays_running_and_the_callbacks_hear_why(tmp_path: Path) -> None:
    storage = make_storage(f"journal://{tmp_path / 'study.journal'}")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    enqueue_baseline(study)

    def runs_a_trial(index: int, proc: subprocess.Popen[bytes]) -> None:  # as the worker would, in its process
        trial = _start_trial(study, epochs_done=4, silent=0)
        storage.set_trial_user_attr(trial._trial_id, WORKER_ATTR, {"pid": proc.pid, "host": HOST})

    heard: list[str] = []
    launcher = Scripted(tmp_path, {0: ["sleep 0.5; kill -KILL $$"]}, on_start=runs_a_trial)
    outcome = supervise(
        launcher, study, workers=1, target=1, heartbeat=0.3, max_restarts=0,
        callbacks=[lambda s, t: heard.append(trial_record(s, t).failure)],
    )  # fmt: skip
    assert outcome.gave_up == (0,) and outcome.still_running == () and not outcome.complete
    dead, retry = trial_records(study)
    assert dead.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert re.fullmatch(
        r"worker 0 died \(SIGKILL\) during epoch 5; no heartbeat for \d+ s; retried as trial 1", dead.failure
    )
    assert heard == [dead.failure]  # the terminal line waits for the retry, so it can name it


def test_a_storage_gone_makes_the_run_incomplete(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    study = optuna.create_study(storage=make_storage(f"journal://{journal}"), study_name="s")

    def storage_gone(index: int, proc: subprocess.Popen[bytes]) -> None:
        journal.unlink()
        journal.mkdir()  # not a file any more: every read fails

    launcher = Scripted(tmp_path, {0: ["sleep 0.5; exit 0"]}, on_start=storage_gone)
    outcome = supervise(launcher, study, workers=1, target=1, heartbeat=0.2, storage_url=f"journal://{journal}")
    assert not outcome.complete and outcome.storage_error is not None
    assert outcome.problems(3) == [f"the study's storage could not be read: {outcome.storage_error}"]


# --- workers whose coordinator is gone ------------------------------------------------------------------------

_CHILD = """
import sys, time
from promptsearch.study.workers import watch_coordinator
assert watch_coordinator(0.1) is not None
print("watching", flush=True)
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("stopped", flush=True)
    sys.exit(130)
"""
_COORDINATOR = """
import os, signal, subprocess, sys, time
env = {**os.environ, %r: str(os.getpid())}
ignore = sys.argv[2] == "1"  # as a script's background job: Ctrl-C (SIGINT) ignored
subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env,
                 preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore else None)
time.sleep(60)
"""


@pytest.mark.parametrize("sigint_ignored", [False, True])
def test_a_worker_stops_when_its_coordinator_is_killed(sigint_ignored: bool) -> None:
    coordinator = subprocess.Popen(
        [sys.executable, "-c", _COORDINATOR % COORDINATOR_ENV, _CHILD, str(int(sigint_ignored))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert coordinator.stdout is not None
    assert coordinator.stdout.readline().strip() == "watching"
    coordinator.kill()
    t0 = time.monotonic()
    rest = coordinator.stdout.read()  # until the worker, the last writer of the pipe, exits
    assert rest.strip() == "stopped" and time.monotonic() - t0 < 5
    coordinator.wait()


def test_a_worker_started_by_hand_watches_no_coordinator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(COORDINATOR_ENV, raising=False)
    assert watch_coordinator(0.1) is None


def test_run_documents_its_exit_codes_and_restart_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["run", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "3 incomplete: workers kept dying and the budget was not reached" in shown
    assert "--max-restarts" in shown and "--restart-delay" in shown
    assert EXIT_INCOMPLETE == 3
    for option in ("--max-restarts", "--restart-delay"):
        assert main(["run", str(tmp_path / "x.yaml"), option, "-1"]) == 2
        assert option in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [("max_restarts", "--max-restarts must be >= 0, but got -1"),
     ("restart_delay", "--restart-delay must be >= 0 seconds, but got -1")],
)  # fmt: skip
def test_the_python_api_checks_the_restart_options(repo_root: Path, tmp_path: Path, option: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        search(repo_root / "search_spaces" / "sst2.yaml", out=tmp_path / "run", **{option: -1})
    assert not (tmp_path / "run").exists()


# --- an incomplete study in every report format -----------------------------------------------------------------


def _study_with(done: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for i in range(done):
        attrs = completed_trial_attrs(CONFIG, best_epoch=1)
        study.add_trial(optuna.trial.create_trial(value=0.5 + i / 100, user_attrs=attrs))
    return study


def _report(study: optuna.Study) -> Report:
    return build_report(study, space_name="s", space_file=None, metric="accuracy", final=None)


@fuzz(30)
@given(
    n_trials=st.integers(0, 5),
    done=st.integers(0, 7),
    state=st.sampled_from(["running", "finished", "incomplete", None]),
)
def test_a_study_short_of_its_budget_is_marked_incomplete(n_trials: int, done: int, state: str | None) -> None:
    study = _study_with(done)
    if state is not None:
        problems = ("worker 0 died once (SIGKILL)",) if state == "incomplete" else ()
        store_run(study, RunStatus(n_trials, state, problems))
    rep = _report(study)
    short = state in ("running", "incomplete") and done < n_trials + 1
    assert (rep.incomplete is not None) == short
    assert ("**Incomplete study:**" in render_markdown(rep)) == short
    assert json.loads(rep.model_dump_json())["incomplete"] == rep.incomplete
    if short:
        assert rep.incomplete is not None
        assert rep.incomplete.startswith(f"{done} of {n_trials + 1} trials counted ({n_trials + 1 - done} missing)")
        assert rep.incomplete.endswith("Run the same command again to continue the study.")
        assert ("worker 0 died once (SIGKILL)" in rep.incomplete) == (state == "incomplete")


def test_the_html_report_says_incomplete() -> None:
    study = _study_with(2)
    store_run(study, RunStatus(4, "incomplete", ("worker 1 died 4 times (SIGKILL)",)))
    page = render_html(study, _report(study))
    assert '<p class="incomplete"><b>Incomplete study:</b> 2 of 5 trials counted (3 missing)' in page


# --- real workers and a real coordinator, SIGKILLed mid-trial -------------------------------------------------


def _space(tiny_model: Path, tmp_path: Path) -> Path:
    """3 sampled trials + the baseline, 40 epochs each (kills land mid-trial), no race and no test evaluation."""
    data = tiny_data(tmp_path / "data", test_rows=16)
    text = tiny_space_text(tiny_model, data, name="kill", n_trials=3, pruner="{type: none}", epochs="40")
    path = tmp_path / "kill.yaml"
    path.write_text(text.replace("  final_seeds: 2\n", "  final_seeds: 2\n  finalists: 0\n"), encoding="utf-8")
    return path


class Run:
    """``promptsearch run SPACE --workers 2`` as a real process, and the study it works on."""

    def __init__(self, space: Path, out: Path, name: str, storage: str | None, *extra: str) -> None:
        self.space, self.out, self.name, self.extra = space, out, name, extra
        self.url = storage or f"journal://{(out / 'study.journal').resolve()}"
        self.storage = storage
        self.runs = 0

    def start(self) -> subprocess.Popen[str]:
        self.runs += 1
        cmd = [
            sys.executable, "-m", "promptsearch.cli", "run", str(self.space), "--out", str(self.out),
            "--study-name", self.name, "--workers", "2", "--heartbeat", "1", "--restart-delay", "0.5",
            "--device", "cpu", "--final-seeds", "0", *(["--storage", self.storage] if self.storage else []),
            *self.extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "PROMPTSEARCH_STORAGE"}
        log = (self.out.parent / f"{self.out.name}-run{self.runs}.txt").open("w")
        return subprocess.Popen(cmd, env={**env, "COLUMNS": "300"}, stdout=log, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        return (self.out.parent / f"{self.out.name}-run{self.runs}.txt").read_text()

    def study(self, proc: subprocess.Popen[str]) -> optuna.Study:
        deadline = time.monotonic() + 120
        while True:
            try:
                return optuna.load_study(study_name=self.name, storage=make_storage(self.url, create=False))
            except Exception:
                assert proc.poll() is None and time.monotonic() < deadline, self.output()
                time.sleep(0.5)

    def stop(self, proc: subprocess.Popen[str]) -> None:
        """End what is left of this run (the coordinator and its workers), for a test that failed midway."""
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _worker_pids(self.name):
            os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _worker_pids(name: str) -> list[int]:
    """The live ``promptsearch worker`` processes of study ``name`` (found by their command lines)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            args = _cmdline(int(entry.name))
            if b"worker" in args and name.encode() in args:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _index_of(pid: int | None) -> int | None:
    args = _cmdline(pid) if pid else []
    return int(args[args.index(b"--worker-index") + 1]) if b"--worker-index" in args else None


def _running(study: optuna.Study, index: int, min_epochs: int) -> optuna.trial.FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = trial_record(study, trial)
        pid = (record.worker or {}).get("pid")
        if _index_of(pid) == index and _alive(pid) and (record.epochs_run or 0) >= min_epochs:
            return trial
    return None


def _kill_mid_trial(run: Run, proc: subprocess.Popen[str], study: optuna.Study, index: int, rng: random.Random) -> int:
    """SIGKILL worker ``index`` at a random point of a trial it runs (after 1-15 of its 40 epochs); return the trial."""
    epochs, deadline = rng.randint(1, 15), time.monotonic() + 300
    while (trial := _running(study, index, epochs)) is None:
        assert proc.poll() is None and time.monotonic() < deadline, run.output()
        time.sleep(0.1)
    time.sleep(rng.uniform(0, 0.3))
    os.kill(trial.user_attrs["worker"]["pid"], signal.SIGKILL)
    return trial.number


def _check_budget(study: optuna.Study, target: int) -> list[Any]:
    """Exactly ``target`` counted trials and none left RUNNING; returns the records."""
    records = trial_records(study)
    assert sum(r.counts_towards_budget for r in records) == target, [(r.number, r.state, r.failure) for r in records]
    assert not [r.number for r in records if r.state == TrialState.RUNNING]
    assert len({r.number for r in records}) == len(records)
    return records


def _check_killed(records: list[Any], killed: dict[int, int], report: str) -> None:
    """Each killed trial failed saying which worker died and when, is retried at most once, and the report says so."""
    for number, index in killed.items():
        dead = records[number]
        assert dead.state == TrialState.FAIL and dead.abandoned and not dead.counts_towards_budget
        assert re.fullmatch(
            rf"worker {index} died \(SIGKILL\) during epoch \d+; no heartbeat for \d+ s; "
            r"(retried as trial \d+|not retried again \(it was the retry of trial \d+\))",
            dead.failure,
        ), dead.failure
        retries = [r for r in records if r.retry_of == number]
        assert len(retries) == (0 if dead.retry_of is not None else 1)
        assert f"- trial {number}: {dead.failure}" in report


def _scenario_workers_killed(tiny_model: Path, tmp_path: Path, storage: str | None, name: str, seed: int) -> None:
    rng = random.Random(seed)
    run = Run(_space(tiny_model, tmp_path), tmp_path / "run", name, storage)
    proc = run.start()
    try:
        study = run.study(proc)
        killed = {_kill_mid_trial(run, proc, study, index, rng): index for index in (0, 1, 0)}  # each in turn
        assert proc.wait(timeout=600) == 0, run.output()
    finally:
        run.stop(proc)
    records = _check_budget(study, target=4)
    report = (run.out / "report.md").read_text()
    _check_killed(records, killed, report)
    assert "Incomplete" not in report and json.loads((run.out / "report.json").read_text())["incomplete"] is None
    for number, index in killed.items():  # the terminal said it too
        assert f"trial {number} failed: worker {index} died (SIGKILL)" in run.output()
    assert (run.out / "worker-0.log").read_text().count("--- worker 0 started") == 3  # restarted after each kill


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_workers_killed_in_turn_are_restarted_and_the_budget_is_reached(
    tiny_model: Path, tmp_path: Path, seed: int
) -> None:
    _scenario_workers_killed(tiny_model, tmp_path, None, "kill", seed)


@pytest.mark.slow
@needs_postgres
@pytest.mark.parametrize("seed", [2, 3])
def test_workers_killed_in_turn_on_postgresql(tiny_model: Path, tmp_path: Path, seed: int) -> None:
    name = f"kill-{uuid.uuid4().hex[:8]}"
    try:
        _scenario_workers_killed(tiny_model, tmp_path, PG, name, seed)
    finally:
        optuna.delete_study(study_name=name, storage=PG)


def _scenario_coordinator_killed(tiny_model: Path, tmp_path: Path, storage: str | None, name: str, seed: int) -> None:
    rng = random.Random(seed)
    run = Run(_space(tiny_model, tmp_path), tmp_path / "run", name, storage)
    proc = run.start()
    try:
        study = run.study(proc)
        epochs, deadline = rng.randint(1, 15), time.monotonic() + 300
        while (a := _running(study, 0, epochs)) is None or (b := _running(study, 1, 1)) is None:
            assert proc.poll() is None and time.monotonic() < deadline, run.output()
            time.sleep(0.1)
        time.sleep(rng.uniform(0, 0.3))
        workers = _worker_pids(name)
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        t0 = time.monotonic()
        while any(_alive(pid) for pid in workers):  # they notice within a few heartbeats, and stop
            assert time.monotonic() - t0 < 15, "the workers kept running without their coordinator"
            time.sleep(0.2)
    finally:
        run.stop(proc)
    records = trial_records(study)
    assert not [r.number for r in records if r.state == TrialState.RUNNING]
    # Their trials were recorded as interrupted: not counted, nothing to retry. A worker notices the coordinator's
    # death within a heartbeat, so on a loaded machine a trial may finish in that window (or between the test's
    # last look and the kill): it then counts as any finished trial. The one that had run 1 epoch of 40 cannot.
    states = [records[t.number] for t in (a, b)]
    assert all(r.interrupted != r.counts_towards_budget for r in states), states
    assert all(r.state == TrialState.COMPLETE for r in states if r.counts_towards_budget), states
    assert any(r.interrupted for r in states), states
    assert "the coordinator (`promptsearch run`" in (run.out / "worker-0.log").read_text()
    again = run.start()  # the same command continues the study
    try:
        assert again.wait(timeout=600) == 0, run.output()
    finally:
        run.stop(again)
    records = _check_budget(study, target=4)
    assert all(r.retry_of is None for r in records)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_a_killed_coordinator_stops_its_workers_and_the_same_command_continues(
    tiny_model: Path, tmp_path: Path, seed: int
) -> None:
    _scenario_coordinator_killed(tiny_model, tmp_path, None, "kill", seed)


@pytest.mark.slow
@needs_postgres
@pytest.mark.parametrize("seed", [4, 5])
def test_a_killed_coordinator_on_postgresql(tiny_model: Path, tmp_path: Path, seed: int) -> None:
    name = f"kill-{uuid.uuid4().hex[:8]}"
    try:
        _scenario_coordinator_killed(tiny_model, tmp_path, PG, name, seed)
    finally:
        optuna.delete_study(study_name=name, storage=PG)


@pytest.mark.slow
def test_restarts_used_up_stop_the_run_incomplete_and_the_same_command_finishes(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(6)
    run = Run(_space(tiny_model, tmp_path), tmp_path / "run", "kill", None, "--max-restarts", "0")
    proc = run.start()
    try:
        study = run.study(proc)
        killed = {_kill_mid_trial(run, proc, study, index, rng): index for index in (0, 1)}
        assert proc.wait(timeout=300) == EXIT_INCOMPLETE, run.output()
    finally:
        run.stop(proc)
    said = run.output()
    missing = re.search(r"study 'kill' is incomplete: (\d) of 4 trials counted \((\d) missing\), so no final", said)
    assert missing is not None and int(missing[1]) + int(missing[2]) == 4, said
    for index in (0, 1):
        line = (
            f"worker {index} died once (SIGKILL), and was not restarted again (--max-restarts 0); "
            f"its output: {run.out / f'worker-{index}.log'}"
        )
        assert line in said
    assert "run the same command again to continue the study" in said
    records = trial_records(study)
    assert not [r.number for r in records if r.state == TrialState.RUNNING]  # failed before the run returned
    _check_killed(records, killed, (run.out / "report.md").read_text())
    # no report claims completion: every format says incomplete, and nothing was exported
    assert "**Incomplete study:**" in (run.out / "report.md").read_text()
    assert '<p class="incomplete">' in (run.out / "report.html").read_text()
    assert json.loads((run.out / "report.json").read_text())["incomplete"].startswith(f"{missing[1]} of 4 trials")
    assert not (run.out / "best_prompt.yaml").exists()
    assert main(["report", "--out", str(run.out), "--device", "cpu"]) == 0
    assert "incomplete study: " in capsys.readouterr().out
    again = run.start()
    try:
        assert again.wait(timeout=600) == 0, run.output()
    finally:
        run.stop(again)
    _check_budget(study, target=4)
    assert json.loads((run.out / "report.json").read_text())["incomplete"] is None
    assert (run.out / "best_prompt.yaml").is_file()
