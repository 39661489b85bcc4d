"""Several worker processes on one study: storage choice, launching, and joining from any machine.

Optuna's storages are the coordinator: every worker runs :func:`promptsearch.study.storage.run_trials`
against the same study. SQLite takes one writer, so several workers on one host use a journal
file (``journal:///…/study.journal``) and several hosts use PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from promptsearch.errors import ConfigError

__all__ = ["choose_storage", "existing_storage", "launch_workers", "worker_seed"]

logger = logging.getLogger(__name__)


def worker_seed(seed: int, index: int) -> int:
    """Each worker's sampler seed: worker 0 keeps the study seed, the others get their own (within 0 .. 2**32 - 1)."""
    return (seed + 7919 * index) % 2**32


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


def launch_workers(
    space_file: Path,
    storage: str,
    study_name: str,
    *,
    workers: int,
    n_trials: int,
    device: str | None,
    out_dir: Path,
    heartbeat: float,
    timeout: float | None = None,
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``workers`` ``promptsearch worker`` processes; their output goes to ``worker-<i>.log``.

    The storage URL travels in the environment (PROMPTSEARCH_STORAGE), not on the command line, so a
    password never shows in the process list. On a machine with several GPUs each worker gets its
    own (CUDA_VISIBLE_DEVICES); on CPU the cores are split between the workers.
    """
    gpus = _cuda_devices() if device in (None, "auto", "cuda") else 0
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = []
    for index in range(workers):
        env = {**os.environ, "PROMPTSEARCH_STORAGE": storage, "PROMPTSEARCH_TORCH_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
        cmd = [
            sys.executable, "-m", "promptsearch.cli", "worker", str(space_file),
            "--study-name", study_name, "--n-trials", str(n_trials), "--worker-index", str(index),
            "--device", device or "auto", "--heartbeat", str(heartbeat),
        ]  # fmt: skip
        if timeout is not None:
            cmd += ["--timeout", str(timeout)]
        log = out_dir / f"worker-{index}.log"
        with log.open("wb") as fh:
            procs.append((subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT), log))
    return procs


def _cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0
