"""Several worker processes on one study: storage choice, launching, and joining from any machine.

Workers meet in the study's storage: every worker runs :func:`promptsearch.study.storage.run_trials`
against the same study. SQLite takes one writer, so several workers on one host use a journal
file (``journal:///…/study.journal``) and several hosts use PostgreSQL. ``run --workers N`` is the
coordinator of the workers it starts (:class:`WorkerLauncher`): it restarts one that dies
(:mod:`promptsearch.study.supervise`), and they stop when it is gone (:func:`watch_coordinator`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from promptsearch.errors import ConfigError
from promptsearch.space.config import SEED_MAX

__all__ = [
    "COORDINATOR_ENV",
    "WorkerLauncher",
    "choose_storage",
    "existing_storage",
    "watch_coordinator",
    "worker_seed",
    "worker_threads_env",
]

logger = logging.getLogger(__name__)


def worker_seed(seed: int, index: int) -> int:
    """Each worker's sampler seed: worker 0 keeps the study seed, the others get their own (in numpy's range)."""
    return (seed + 7919 * index) % (SEED_MAX + 1)


def existing_storage(out_dir: Path) -> str | None:
    """The storage URL of the study already in a run folder (its journal or SQLite file), if any."""
    journal, db = out_dir / "study.journal", out_dir / "study.db"
    if journal.is_file():
        return f"journal://{journal.resolve()}"
    if db.is_file():
        return f"sqlite:///{db.resolve()}"
    return None


def choose_storage(out_dir: Path, storage: str | None, workers: int) -> str:
    """The storage URL for a run: the given one (checked), else the run folder's journal or SQLite file."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, but got {workers}")
    if storage is not None:
        if workers > 1 and storage.startswith("sqlite"):
            raise ConfigError(
                f"--workers {workers} with a SQLite storage: SQLite takes one writer at a time and would fail "
                "with 'database is locked'; use --storage journal:///path/study.journal (one host) or "
                "postgresql://user@host/db (many hosts), or leave --storage out"
            )
        return storage
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: this is a file; give a folder for the run")
    found = existing_storage(out_dir)
    if found is not None:
        if workers > 1 and found.startswith("sqlite"):
            raise ConfigError(
                f"--workers {workers}: the study in {out_dir / 'study.db'} is SQLite, which takes one writer; "
                "continue it with --workers 1, or start a new run folder (--out DIR) where several workers "
                "share a journal file"
            )
        return found
    if workers > 1:
        return f"journal://{(out_dir / 'study.journal').resolve()}"
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


COORDINATOR_ENV = "PROMPTSEARCH_COORDINATOR_PID"  # set for the workers that ``run --workers N`` starts


@dataclass(frozen=True)
class WorkerLauncher:
    """Starts (and restarts) the ``promptsearch worker`` processes of ``run --workers N``.

    Worker ``i`` appends its output to ``worker-<i>.log`` in the run folder, after a line saying when it started,
    so the output of a worker that died stays there. The storage URL travels in the environment
    (PROMPTSEARCH_STORAGE), not on the command line, so a password never shows in the process list. On a
    machine with several GPUs each worker gets its own (CUDA_VISIBLE_DEVICES); on CPU the cores are split between
    the workers, and their OpenMP threads wait passively (:func:`worker_threads_env`) unless the environment
    says otherwise. Each worker knows its coordinator (PROMPTSEARCH_COORDINATOR_PID) and stops when it is
    gone (:func:`watch_coordinator`).
    """

    space_file: Path
    storage: str
    study_name: str
    workers: int
    n_trials: int
    device: str | None
    out_dir: Path
    heartbeat: float
    budget: str | None = None  # the space's search.budget, which the workers apply to the file as run did

    def log(self, index: int) -> Path:
        return self.out_dir / f"worker-{index}.log"

    def command(self, index: int, *, timeout: float | None = None) -> list[str]:
        """The command line of worker ``index`` (the storage URL travels in the environment instead)."""
        cmd = [
            sys.executable, "-m", "promptsearch.cli", "worker", str(self.space_file),
            "--study-name", self.study_name, "--n-trials", str(self.n_trials), "--worker-index", str(index),
            "--device", self.device or "auto", "--heartbeat", str(self.heartbeat),
        ]  # fmt: skip
        if timeout is not None:
            cmd += ["--timeout", str(max(1.0, timeout))]
        if self.budget is not None:
            cmd += ["--budget", self.budget]
        return cmd

    def start(self, index: int, *, timeout: float | None = None) -> subprocess.Popen[bytes]:
        """Start worker ``index``; ``timeout``: the seconds left to start trials in (None: no limit)."""
        gpus = _cuda_devices() if self.device in (None, "auto", "cuda") else 0
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        env = {**os.environ, "PROMPTSEARCH_STORAGE": self.storage, "PROMPTSEARCH_TORCH_THREADS": str(threads)}
        env.update({k: v for k, v in worker_threads_env(threads).items() if k not in os.environ})
        env[COORDINATOR_ENV] = str(os.getpid())
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
        cmd = self.command(index, timeout=timeout)
        with self.log(index).open("ab") as fh:
            fh.write(f"--- worker {index} started at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            fh.flush()
            return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)


def watch_coordinator(interval: float) -> threading.Thread | None:
    """In a worker started by ``run --workers N``: stop when the coordinator is gone (killed, even by SIGKILL).

    Every ``interval`` seconds the worker compares its parent process with the coordinator that started it; once
    the coordinator is gone the worker stops as Ctrl-C stops it: its running trial is recorded as interrupted
    (it does not count) and the process exits with code 130. Nobody would restart it, run the final evaluation
    or write the report, and a worker left running would compete with the workers of the next ``run``. The
    same command then continues the study. Returns the watching thread (None for a worker started by hand).
    """
    raw = os.environ.get(COORDINATOR_ENV, "")
    if not raw.isdigit():
        return None
    coordinator = int(raw)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and threading.current_thread() is threading.main_thread():
        # started in the background of a script, which ignores Ctrl-C: the stop below is a SIGINT all the same
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch() -> None:
        while os.getppid() == coordinator:
            time.sleep(interval)
        logger.warning(
            "the coordinator (`promptsearch run`, pid %d) is gone; stopping this worker: its running trial is "
            "recorded as interrupted and does not count; run the same command again to continue the study",
            coordinator,
        )
        # a real SIGINT, as Ctrl-C sends: it also wakes a main thread that sleeps or waits on the storage
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=watch, name="watch-coordinator", daemon=True)
    thread.start()
    return thread


def worker_threads_env(threads: int) -> dict[str, str]:
    """Thread settings for one of several worker processes on a host: its share of the cores, and OpenMP
    threads that sleep when idle. OpenMP's default is to spin for a while after each parallel region, which
    on an oversubscribed machine burns the cores the other workers need (benchmarks/workers.py measures it).
    A variable the user already set is kept (the caller skips those)."""
    share = str(max(1, threads))
    return {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share}


def _cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0
