"""Create or resume the Optuna study of a space, and run the remaining trials.

The first trial of a new study is the enqueued plain fine-tuning baseline. ``n_trials`` counts the
sampled trials; trials that were interrupted (Ctrl-C) or abandoned (a crash left them RUNNING) do
not count, so running the same command again finishes the job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from promptsearch.errors import ConfigError
from promptsearch.files import describe, readable_file
from promptsearch.redact import mask_url, scrub
from promptsearch.space.config import SEED_MAX  # NumPy's RandomState, which seeds Optuna's samplers
from promptsearch.space.registry import SAMPLERS
from promptsearch.space.search_space import SearchSpace
from promptsearch.space.spec import pruner_class
from promptsearch.study.objective import Objective, TrialRunner
from promptsearch.study.pareto import objective_directions, objective_names
from promptsearch.study.records import (
    StoredSpace,
    TrialRecord,
    counts_towards_budget,
    enqueue_baseline,
    enqueue_retry,
    mark_stale,
    store_objectives,
    store_space,
    stored_space,
)

__all__ = [
    "SEED_MAX",
    "StorageURL",
    "check_existing",
    "check_seed",
    "default_out_dir",
    "make_storage",
    "open_study",
    "parse_storage_url",
    "recover_stale",
    "run_trials",
]

logger = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 10.0
MAX_HEARTBEAT = 86400.0  # a day; Optuna turns the interval and the grace period (3x) into whole seconds
_STORAGE_SCHEMES = (
    "sqlite",
    "postgresql",
    "postgresql+psycopg2",
    "postgresql+psycopg",
    "mysql",
    "mysql+pymysql",
)


def check_seed(seed: int, name: str) -> int:
    """``seed`` if a sampler takes it; else a :class:`ConfigError` naming ``name`` and the range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{name} must be an integer from 0 to {SEED_MAX} (2**32 - 1), but got {seed!r}")
    return seed


def default_out_dir(space: SearchSpace) -> Path:
    return Path("runs") / space.name


@dataclass(frozen=True)
class StorageURL:
    """A storage URL as every command reads it: its scheme, its file (SQLite, journal) and how to show it."""

    url: str
    scheme: str
    file: Path | None  # the SQLite or journal file; None for a database server
    shown: str  # the URL with its password masked, for messages
    query: Mapping[str, Any] = field(default_factory=dict)  # SQLAlchemy's reading of ``?key=value``


def _shown(url: str) -> str:
    return scrub(mask_url(url), url)


def parse_storage_url(url: str) -> StorageURL:
    """Read a ``--storage`` URL the one way all commands do (``run``, ``worker``, ``report``, ``export``, warm start).

    SQLite URLs are read by SQLAlchemy's own parser, which ``RDBStorage`` uses too, so the file checked
    here is the file opened there: ``sqlite:///runs/x/study.db?timeout=30`` is the file
    ``runs/x/study.db`` with a 30 s lock timeout. ``journal:///abs/path`` and ``journal://rel/path``
    name a journal file. Neither takes a user, password, host or port: such a URL is refused (with the
    password masked) before any folder is made, so no folder is ever named after a password.
    """
    shown = _shown(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "journal":
        return StorageURL(url, scheme, _journal_file(url, shown), shown)
    if scheme not in _STORAGE_SCHEMES:
        raise ConfigError(
            f"--storage '{shown}': expected a database URL such as sqlite:///runs/x/study.db, "
            "postgresql://user@host:5432/db or journal:///runs/x/study.journal, but found "
            + (f"the scheme '{scheme}'" if scheme else "no scheme")
        )
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError or ValueError (a port that is no number)
        first = scrub(str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__, url)
        raise ConfigError(f"--storage '{shown}': not a valid database URL ({first}); check its syntax") from None
    if scheme != "sqlite":
        return StorageURL(url, scheme, None, shown, dict(parsed.query))
    if parsed.username is not None or parsed.password is not None or parsed.host or parsed.port:
        raise ConfigError(
            f"--storage '{shown}': a SQLite URL names a file and takes no user, password, host or port; "
            "give sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigError(
            f"--storage '{shown}': an in-memory study is lost when the run ends and cannot be resumed; "
            "give a file, e.g. sqlite:///runs/x/study.db"
        )
    if "uri" in parsed.query:  # SQLite would read the path as a URI: another file, or memory (mode=memory)
        raise ConfigError(
            f"--storage '{shown}': SQLite URI file names (?uri=...) are not supported: the file promptsearch checks "
            "would not be the one SQLite opens, and mode=memory would keep the study in memory, where it cannot "
            "be resumed; give the file as sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return StorageURL(url, scheme, Path(parsed.database), shown, dict(parsed.query))


def _journal_file(url: str, shown: str) -> Path:
    """The file of ``journal://PATH``; a first part that looks like ``user:password@host:port`` is refused."""
    path = url.removeprefix("journal://")
    first = "" if path.startswith("/") else path.split("/", 1)[0]
    if "@" in first or ":" in first:
        raise ConfigError(
            f"--storage '{shown}': a journal URL names a file and takes no user, password, host or port; "
            "give journal:///absolute/path.journal or journal://relative/path.journal"
        )
    if not path:
        raise ConfigError(f"--storage '{shown}': no file; give journal:///absolute/path.journal")
    return Path(path)


def _check_file(location: StorageURL, *, create: bool) -> None:
    """The SQLite or journal file: an existing one must be a regular file this user may read; a new one needs
    ``create``, and then its folder is made (the storage creates the file)."""
    assert location.file is not None
    flag = f"--storage '{location.shown}'"
    kind = describe(location.file)
    if kind != "missing" and not kind.startswith("unreadable"):
        readable_file(location.file, flag)  # a folder, a FIFO, a device ... is refused, never opened
        return
    if not create:
        what = "journal" if location.scheme == "journal" else "database"
        found = "no such" if kind == "missing" else f"{kind}:"
        raise ConfigError(f"{flag}: {found} {what} file; check the path")
    try:
        location.file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot create the folder {location.file.parent}: {exc.strerror or exc}") from None


def make_storage(
    url: str, *, heartbeat: float = HEARTBEAT_SECONDS, create: bool = True, read_only: bool = False
) -> optuna.storages.BaseStorage:
    """The Optuna storage for ``url``, with a clear error for URLs it cannot use.

    ``sqlite:///``, ``postgresql://`` and ``mysql://`` URLs are RDB storages with heartbeats: a trial
    whose worker died is marked failed after ``3 x heartbeat`` seconds and retried once (Optuna's
    retry callback). ``journal:///path`` is a journal file (several processes on one host); it has no
    heartbeat, so :func:`fail_stale_journal_trials` does the same job. Every command reads the URL with
    :func:`parse_storage_url`.

    Only ``create=True`` (``run``) may make a storage: Optuna adds its tables to any database it opens.
    With ``create=False`` (``report``, ``export``, ``worker``, a warm start) the storage must exist and
    hold Optuna's tables: it is first opened read-only, so a database that holds something else is
    refused and left exactly as it was (:func:`check_existing`). ``read_only=True`` returns that
    read-only storage itself, for commands that only read.
    """
    location = parse_storage_url(url)
    if not 0 < heartbeat <= MAX_HEARTBEAT:  # also refuses NaN
        raise ConfigError(
            f"--heartbeat must be a positive number of seconds up to {MAX_HEARTBEAT:g}, but got {heartbeat}"
        )
    if location.file is not None:
        _check_file(location, create=create and not read_only)
    if location.scheme == "journal":
        return _journal_storage(location)  # opening a journal only reads it
    if read_only:
        return check_existing(location)
    if not create:
        check_existing(location).engine.dispose()  # what this open reads, the read-write one reads alike
    engine_kwargs: dict[str, Any] = {}
    if location.scheme == "sqlite" and "timeout" not in location.query:
        engine_kwargs = {"connect_args": {"timeout": 60}}  # a URL's own ?timeout= wins
    try:
        return _rdb_storage(location, engine_kwargs, heartbeat=heartbeat)
    except ConfigError:
        raise
    except Exception as exc:  # SQLAlchemy raises many types for unreachable or bad databases
        raise ConfigError(
            f"--storage '{location.shown}': cannot open the database: {_first_line(exc, location.url)}"
        ) from None


def _rdb_storage(
    location: StorageURL, engine_kwargs: dict[str, Any], *, heartbeat: float | None = None
) -> optuna.storages.RDBStorage:
    """Optuna's ``RDBStorage`` for ``location`` (with heartbeats when given); a missing driver is one message."""
    options: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if heartbeat is not None:
                options = {
                    "heartbeat_interval": max(1, round(heartbeat)),
                    "grace_period": max(2, round(3 * heartbeat)),
                    "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                }
            return optuna.storages.RDBStorage(location.url, engine_kwargs=engine_kwargs, **options)
    except ImportError as exc:
        raise ConfigError(
            f"--storage '{location.shown}': the database driver is not installed "
            f"({scrub(str(exc), location.url)}); for PostgreSQL: pip install 'promptsearch[postgres]'"
        ) from None


def _first_line(exc: BaseException, url: str) -> str:
    text = str(exc).strip()
    return scrub(text.splitlines()[0][:300] if text else type(exc).__name__, url)


# Tables every Optuna RDB storage has; a database with none of them holds no study, promptsearch's or any other
OPTUNA_TABLES = ("studies", "trials", "version_info")
_SQLITE_HEADER = b"SQLite format 3\x00"


def _read_only_engine_kwargs(location: StorageURL) -> dict[str, Any]:
    """Engine options under which the database itself refuses every write (and SQLite creates no file)."""
    if location.scheme == "sqlite":
        from sqlalchemy.engine import make_url

        url = make_url(location.url)
        # the driver's options as SQLAlchemy reads them from the URL (?timeout=, ...), so both opens behave alike
        cargs, cparams = url.get_dialect()().create_connect_args(url)
        if "timeout" not in location.query:
            cparams["timeout"] = 60
        cparams.setdefault("check_same_thread", False)  # as SQLAlchemy sets for a file
        file = Path(cargs[0]).absolute()
        params = "mode=ro"
        if _wal_without_log(file):
            params += "&immutable=1"  # a read-only open of a WAL database would leave -wal and -shm files behind
        uri = f"file:{quote(str(file))}?{params}"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, **cparams)

        return {"creator": connect}
    if location.scheme.startswith("postgresql"):
        own = str(location.query.get("options", "")).strip()  # e.g. -csearch_path=... given in the URL
        return {"connect_args": {"options": f"{own} -c default_transaction_read_only=on".strip()}}
    if location.scheme.startswith("mysql"):
        return {"connect_args": {"init_command": "SET SESSION TRANSACTION READ ONLY"}}
    raise AssertionError(location.scheme)


def _wal_without_log(file: Path) -> bool:
    """Whether ``file`` is a SQLite database in WAL mode with no ``-wal`` file (so no writer has it open)."""
    try:
        with file.open("rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    return header.startswith(_SQLITE_HEADER) and header[18:20] == b"\x02\x02" and not Path(f"{file}-wal").exists()


def check_existing(location: StorageURL) -> optuna.storages.RDBStorage:
    """The existing Optuna storage at ``location``, opened read-only; anything else is refused, unchanged.

    Optuna's ``RDBStorage`` creates its tables and version rows in whatever database it opens. Here the
    database is opened so that it refuses writes itself (SQLite ``mode=ro``, PostgreSQL
    ``default_transaction_read_only``, MySQL ``READ ONLY`` sessions): a database with none of Optuna's
    tables (someone else's application database, a file that is no database) is refused with what it
    holds, and one that Optuna would have to change to open (part of its tables, another Optuna
    version's schema) is refused by that read-only open. Either way nothing in it changes.
    """
    import sqlalchemy

    shown = location.shown
    unchanged = "promptsearch changed nothing in it"
    try:
        kwargs = _read_only_engine_kwargs(location)
        engine = sqlalchemy.create_engine(location.url, **kwargs)
        try:
            tables = sorted(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except ImportError as exc:
        raise ConfigError(
            f"--storage '{shown}': the database driver is not installed ({scrub(str(exc), location.url)}); "
            "for PostgreSQL: pip install 'promptsearch[postgres]'"
        ) from None
    except Exception as exc:  # a bad option, not a database, unreachable, access refused: as the read-write open says
        raise ConfigError(f"--storage '{shown}': cannot open the database: {_first_line(exc, location.url)}") from None
    ours = [t for t in tables if t in OPTUNA_TABLES]
    if not ours:
        found = f"its tables: {', '.join(tables[:10])}{' ...' if len(tables) > 10 else ''}" if tables else "no tables"
        raise ConfigError(
            f"--storage '{shown}': expected the storage of a promptsearch study (Optuna's tables), but this "
            f"database holds something else ({found}); {unchanged}. Give the --storage of a promptsearch run"
        )
    try:
        return _rdb_storage(location, kwargs)
    except ConfigError:
        raise
    except Exception as exc:  # the database refused a write Optuna needed, or Optuna refused the schema
        raise ConfigError(
            f"--storage '{shown}': this database holds tables with Optuna's names ({', '.join(ours)}), but Optuna "
            f"cannot open it without changing it ({_first_line(exc, location.url)}): part of its tables are missing, "
            f"or it has another Optuna version's schema (`optuna storage upgrade` upgrades one); {unchanged}"
        ) from None


JOURNAL_LOCK_GRACE_S = 10


def _journal_storage(location: StorageURL) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(location.file)
    # A worker killed while it held the lock leaves the lock file behind; the others wait grace_period seconds
    # before they take it over. Optuna's 30 s stalls every worker after each such death; a journal write holds
    # the lock for milliseconds, so 10 s still leaves a slow shared disk a wide margin.
    lock = JournalFileOpenLock(path, grace_period=JOURNAL_LOCK_GRACE_S)
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=lock))
    except OSError as exc:
        raise ConfigError(
            f"--storage '{location.shown}': cannot open the journal file: {exc.strerror or exc}"
        ) from None
    except Exception as exc:  # a damaged journal: Optuna fails replaying its log
        raise ConfigError(
            f"--storage '{location.shown}': cannot read the journal file: {_first_line(exc, location.url)}"
        ) from None


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler named by ``search.sampler`` (:data:`promptsearch.space.registry.SAMPLERS`)."""
    search = space.spec.search
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler: optuna.samplers.BaseSampler = SAMPLERS[search.sampler](seed, search.n_trials or 20)
        return sampler


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    if len(objective_names(space.spec.search)) > 1:
        return optuna.pruners.NopPruner()  # Optuna cannot prune multi-objective studies
    pruner = space.spec.search.pruner
    made: optuna.pruners.BasePruner = pruner_class(pruner.type)(**pruner.arguments())
    return made


def space_fingerprint(space: SearchSpace) -> str:
    """What trials depend on: the space minus the budget (n_trials/timeout/final seeds may change on resume).

    ``search.budget`` is left out too: what it sets is in the resolved keys, and a space that writes no budget
    keeps the fingerprint it had before the key existed."""
    spec = space.spec.model_dump(mode="json")
    for key in ("budget", "n_trials", "timeout", "final_seeds", "recommend_within"):
        spec["search"].pop(key, None)
    if spec["search"].get("objectives") is None:  # single-objective spaces keep the fingerprint they had
        spec["search"].pop("objectives", None)
    spec.pop("description", None)
    for model in spec["model"] if isinstance(spec["model"], list) else [spec["model"]]:
        model.pop("precision", None)  # how the hardware computes, like the device: a resumed study may change it
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _budget_hint(stored_text: str | None, space: SearchSpace) -> str:
    """When the stored space ran another ``search.budget`` than ``space`` names: which, and the flag to give."""
    try:
        raw = yaml.safe_load(stored_text or "") or {}
        search = raw.get("search") or {}
        before = search.get("budget") if isinstance(search, dict) else None
    except (yaml.YAMLError, AttributeError):
        return ""
    now = space.spec.search.budget
    if before == now:
        return ""
    return (
        f" (it ran with search.budget {before or 'unset (medium)'}, this space has {now or 'unset (medium)'}: "
        "resume with the budget it ran with, in the file or with --budget)"
    )


def open_study(
    space: SearchSpace,
    storage: str | None,
    study_name: str,
    *,
    data_fingerprint: str | None,
    seed: int | None = None,
    create: bool = True,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> optuna.Study:
    """Load the study, or create it (storing the space and enqueueing the baseline); no storage: in memory."""
    shown = _shown(storage) if storage is not None else "memory"
    sampler_seed = space.spec.search.seed if seed is None else seed
    check_seed(sampler_seed, "--seed" if seed is not None else "search.seed")
    if storage is None:
        store: optuna.storages.BaseStorage = optuna.storages.InMemoryStorage()
    else:
        store = make_storage(storage, heartbeat=heartbeat, create=create)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    exists = study_name in names
    if not exists and not create:
        raise ConfigError(f"--study-name '{study_name}': no such study in {shown}; studies there: {names or 'none'}")
    objectives = objective_names(space.spec.search)
    study = optuna.create_study(
        storage=store,
        study_name=study_name,
        sampler=make_sampler(space, sampler_seed),
        pruner=make_pruner(space),
        directions=objective_directions(space.spec.search),
        load_if_exists=True,
    )
    fingerprint = space_fingerprint(space)
    stored = stored_space(study)
    if stored is None and study.trials:
        raise ConfigError(
            f"study '{study_name}' in {shown} was not created by promptsearch (it has trials but no "
            "stored search space); use another --study-name"
        )
    if stored is None:
        store_space(
            study,
            StoredSpace(
                name=space.name,
                file=str(space.path) if space.path else None,
                text=space.text,
                fingerprint=fingerprint,
                data_fingerprint=data_fingerprint,
            ),
        )
        if not study.trials:
            enqueue_baseline(study)
    else:
        if stored.fingerprint != fingerprint:
            raise ConfigError(
                f"study '{study_name}' in {shown} was created from a different search space "
                f"({stored.file}){_budget_hint(stored.text, space)}; resume it with that file, or start a new "
                "study with --study-name NAME or --out DIR"
            )
        if data_fingerprint and stored.data_fingerprint not in (None, data_fingerprint):
            raise ConfigError(
                f"study '{study_name}' was run on different train/dev data (fingerprint "
                f"{str(stored.data_fingerprint)[:12]}, now {data_fingerprint[:12]}); restore the data or "
                "start a new study with --study-name NAME or --out DIR"
            )
    if len(objectives) > 1:  # also on resume: recommend_within may change without changing the trials
        store_objectives(study, objectives, space.spec.search.recommend_within)
    return study


def stored_space_text(study: optuna.Study) -> str | None:
    stored = stored_space(study)
    return stored.text if stored is not None else None


def fail_stale_journal_trials(study: optuna.Study, grace: float) -> list[int]:
    """Journal storages have no heartbeat: fail RUNNING trials whose ``heartbeat`` attribute is older
    than ``grace`` seconds, and enqueue each once more (as Optuna's retry callback does for RDB)."""
    from optuna.exceptions import UpdateFinishedTrialError

    storage = study._storage
    now = time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start.timestamp() if t.datetime_start else now
        beat = TrialRecord.from_trial(t).heartbeat
        if now - float(started if beat is None else beat) <= grace:
            continue
        try:
            mark_stale(study, t)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (UpdateFinishedTrialError, RuntimeError):
            continue  # its worker finished it, or another worker failed it first
        failed.append(t.number)
        logger.warning("trial %d stopped sending heartbeats; marked failed", t.number)
        enqueue_retry(study, t)
    return failed


def recover_stale(study: optuna.Study, heartbeat: float) -> None:
    """Fail the trials whose worker stopped sending heartbeats, and retry each once."""
    if isinstance(study._storage, optuna.storages.JournalStorage):
        fail_stale_journal_trials(study, 3 * heartbeat)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # RDB heartbeats; the retry callback re-enqueues


def run_trials(
    runner: TrialRunner,
    study: optuna.Study,
    *,
    n_trials: int,
    timeout: float | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    on_epoch: Callable[[int, int, float], None] | None = None,
    heartbeat: float = HEARTBEAT_SECONDS,
    poll: float = 1.0,
) -> int:
    """Run trials until ``n_trials`` sampled trials (+ the baseline) have finished; return how many ran.

    Safe with several workers on one study: a worker waits while others finish the last trials,
    takes over trials whose worker died (after the heartbeat grace period), and a trial started
    beyond the budget by a race is dropped (marked ``surplus``, not counted).
    """
    target = n_trials + 1
    # the heartbeat attribute: the journal's stale check, and "no heartbeat for N s" when a worker died
    objective = Objective(runner, on_epoch=on_epoch, target=target, heartbeat=heartbeat)
    started = time.monotonic()
    ran = 0
    stalled_since: float | None = None
    while True:
        recover_stale(study, heartbeat)
        trials = study.get_trials(deepcopy=False)
        done = sum(1 for t in trials if counts_towards_budget(t))
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
        if done >= target or (timeout is not None and time.monotonic() - started >= timeout):
            break
        if waiting == 0 and done + running >= target:
            # Other workers are finishing the budget. Wait; if nothing moves for a long time (trials left
            # RUNNING by a crash before heartbeats existed), run one more rather than wait forever.
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since < 6 * heartbeat:
                time.sleep(poll)
                continue
            logger.warning("%d running trial(s) show no progress; starting another trial", running)
        stalled_since = None
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=list(callbacks))
        ran += 1
    return ran
