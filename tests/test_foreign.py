"""What is not ours is never changed nor trusted (issue #22, items 6 to 8).

Read-only commands (``report``, ``export``, ``worker`` joining, a warm start from a study, ``predict``, ``validate``)
pointed at databases, journals and folders that hold no promptsearch study or model refuse them with one message and
leave every byte as it was; ``run`` refuses a storage that cannot persist. A saved model is loaded only when it is
complete and consistent: generated damage (a file removed, truncated, edited or added, a pickle for weights, a
manifest that contradicts the prompt config) makes ``predict`` exit 2 with nothing labelled. A bad test split fails
``validate`` (and ``run``, before any training) naming the file, the row and the field.

The PostgreSQL tests use the server at 127.0.0.1:5432 (database ``test``) in a schema of their own, dropped
afterwards; they skip, saying why, when no server is reachable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import fuzz
from tiny import postgres_reachable, save_tiny_model, tiny_data, tiny_space_text

import promptsearch
from promptsearch.api import search
from promptsearch.cli import main
from promptsearch.errors import ConfigError
from promptsearch.inference.manifest import MANIFEST_FILE, Manifest, verify_folder
from promptsearch.inference.predict import Predictor
from promptsearch.study.storage import OPTUNA_TABLES, make_storage

PG = "postgresql://root@127.0.0.1:5432/test"
needs_postgres = pytest.mark.skipif(
    not postgres_reachable(), reason="no PostgreSQL server at 127.0.0.1:5432 (database test, user root)"
)


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (folders as None) with its bytes: what must not change."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in-process; it must exit 2 with one message and no traceback. Returns stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err and "error:" in err, (argv, err)
    return err


# --- databases and journals that are not ours ------------------------------------------------------------------------

names = st.one_of(
    st.sampled_from([*OPTUNA_TABLES, "trial_params", "alembic_version", "users", "orders", "settings"]),
    st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda n: not n.startswith("sqlite")),
)
cells = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)


@st.composite
def tables(draw: st.DrawFn) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Tables of some application: names (Optuna's among them at times), columns and rows."""
    out = {}
    for name in draw(st.lists(names, max_size=4, unique=True)):
        columns = draw(
            st.lists(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True), min_size=1, max_size=3, unique=True)
        )
        rows = draw(st.lists(st.tuples(*[cells] * len(columns)), max_size=4))
        out[name] = (columns, rows)
    return out


@st.composite
def foreign_files(draw: st.DrawFn) -> tuple[str, Any]:
    """A file a user might point --storage at: an application's SQLite database (rollback journal or WAL), an
    empty file, random bytes, or text."""
    kind = draw(st.sampled_from(["sqlite", "sqlite-wal", "empty", "bytes", "text"]))
    if kind.startswith("sqlite"):
        return kind, draw(tables())
    if kind == "bytes":
        return kind, draw(st.binary(min_size=1, max_size=300))
    if kind == "text":
        return kind, draw(st.text(min_size=1, max_size=300))
    return kind, None


def _write_foreign(path: Path, kind: str, content: Any) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "bytes":
        path.write_bytes(content)
    elif kind == "text":
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    else:
        db = sqlite3.connect(path)
        if kind == "sqlite-wal":
            db.execute("PRAGMA journal_mode=wal")
        for name, (columns, rows) in content.items():
            quoted = ", ".join(f'"{c}"' for c in columns)
            db.execute(f'CREATE TABLE "{name}" ({quoted})')
            db.executemany(f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(columns))})', rows)
        db.commit()
        db.close()


def _read_only_commands(url: str, folder: Path, space: Path, out: Path) -> list[list[str]]:
    """Every command that reads a study, pointed at ``url`` (and at ``folder`` as a run folder)."""
    return [
        ["report", "--storage", url, "--study-name", "s", "--out", str(out / "report")],
        ["export", "--storage", url, "--study-name", "s", "-o", str(out / "best.yaml")],
        ["report", "--out", str(folder)],
        ["export", "--out", str(folder)],
        ["worker", "--storage", url, "--study-name", "s", "--device", "cpu"],
        ["run", str(space), "--warm-start-study", url, "s", "--out", str(out / "run")],
    ]


@fuzz(30)
@given(file=foreign_files())
def test_read_only_commands_leave_a_foreign_database_unchanged(
    file: tuple[str, Any], tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    folder, out = root / "app", root / "out"
    folder.mkdir()
    _write_foreign(folder / "study.db", *file)
    before = _snapshot(folder)
    for argv in _read_only_commands(f"sqlite:///{folder / 'study.db'}", folder, tiny_space, out):
        err = _refused(argv, capsys)
        assert str(folder / "study.db") in err or str(folder) in err, (argv, err)
    assert _snapshot(folder) == before  # no byte changed, no -wal, -shm or -journal file left
    assert not out.exists()


def test_a_database_with_tables_of_other_names_is_refused_with_what_it_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_foreign(tmp_path / "app.db", "sqlite", {"users": (["id", "name"], [(1, "ada")])})
    err = _refused(["report", "--storage", f"sqlite:///{tmp_path / 'app.db'}", "--out", str(tmp_path / "r")], capsys)
    assert "expected the storage of a promptsearch study (Optuna's tables), but this database holds something else" in (
        err.replace("\n", " ")
    )
    assert "its tables: users" in err and "changed nothing" in err
    _write_foreign(tmp_path / "part.db", "sqlite", {"studies": (["id"], [(1,)])})
    err = _refused(["export", "--storage", f"sqlite:///{tmp_path / 'part.db'}", "-o", str(tmp_path / "x.yaml")], capsys)
    assert "Optuna cannot open it without changing it" in " ".join(err.split())


journal_lines = st.lists(
    st.one_of(
        st.binary(max_size=60),
        st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=3).map(
            lambda d: json.dumps(d).encode()
        ),
        st.sampled_from([b'{"op_code": 0}', b'{"op_code": 99, "worker_id": "x"}', b"[]", b"null"]),
    ),
    max_size=5,
)


@fuzz(25)
@given(lines=journal_lines, newline=st.booleans())
def test_read_only_commands_leave_a_foreign_journal_unchanged(
    lines: list[bytes], newline: bool, tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    folder, out = root / "app", root / "out"
    folder.mkdir()
    (folder / "study.journal").write_bytes(b"\n".join(lines) + (b"\n" if newline else b""))
    before = _snapshot(folder)
    for argv in _read_only_commands(f"journal://{folder / 'study.journal'}", folder, tiny_space, out):
        _refused(argv, capsys)
    assert _snapshot(folder) == before  # no lock file either
    assert not out.exists()


@fuzz(6)
@given(content=tables())
@needs_postgres
def test_read_only_commands_leave_a_foreign_postgresql_schema_unchanged(
    content: dict[str, tuple[list[str], list[tuple[Any, ...]]]],
    tiny_space: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import psycopg

    schema = f"foreign_{uuid.uuid4().hex[:12]}"
    url = f"{PG}?options=-csearch_path%3D{schema}"  # the application's schema, as a user would name it
    with psycopg.connect(host="127.0.0.1", port=5432, dbname="test", user="root", autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{schema}"')
        try:
            for name, (columns, rows) in content.items():
                quoted = ", ".join(f'"{c}" text' for c in columns)
                db.execute(f'CREATE TABLE "{schema}"."{name}" ({quoted})')
                for row in rows:
                    values = [None if v is None else repr(v) for v in row]
                    db.execute(f'INSERT INTO "{schema}"."{name}" VALUES ({", ".join(["%s"] * len(row))})', values)

            def dump() -> list[Any]:
                found = db.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,)
                ).fetchall()
                return [
                    (t, sorted(map(str, db.execute(f'SELECT * FROM "{schema}"."{t}"').fetchall()))) for (t,) in found
                ]

            before = dump()
            out = tmp_path / "out"
            commands = [
                *_read_only_commands(url, tmp_path / "no-run", tiny_space, out)[:2],
                ["worker", "--storage", url, "--study-name", "s", "--device", "cpu"],
                ["run", str(tiny_space), "--warm-start-study", url, "s", "--out", str(out / "run")],
            ]
            for argv in commands:
                err = _refused(argv, capsys)
                assert "password" not in err
            assert dump() == before
            assert not out.exists()
        finally:
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="module")
def study_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder: the baseline and one trial, no final evaluation."""
    root = tmp_path_factory.mktemp("foreign-study")
    space = root / "tiny.yaml"
    space.write_text(tiny_space_text(tiny_model, tiny_data(root / "data"), n_trials=1), encoding="utf-8")
    search(space, out=root / "run", device="cpu", n_trials=1, final_seeds=0)
    return root / "run"


def test_export_reads_a_study_without_writing_to_it(study_dir: Path, tmp_path: Path) -> None:
    before = (study_dir / "study.db").read_bytes()
    promptsearch.export_best(out=study_dir, output=tmp_path / "best.yaml")
    assert promptsearch.load_prompt_config(tmp_path / "best.yaml").name == "tiny"
    assert (study_dir / "study.db").read_bytes() == before
    assert sorted(p.name for p in study_dir.glob("study.db*")) == ["study.db"]


def test_a_read_only_open_refuses_every_write(study_dir: Path, tmp_path: Path) -> None:
    """What export and a warm start read through: the database itself refuses a write, so none can slip through."""
    import optuna

    copy = tmp_path / "study.db"
    shutil.copyfile(study_dir / "study.db", copy)
    store = make_storage(f"sqlite:///{copy}", create=False, read_only=True)
    study = optuna.load_study(study_name="tiny", storage=store)
    with pytest.raises(optuna.exceptions.StorageInternalError) as info:
        study.set_user_attr("x", 1)
    assert "attempt to write a readonly database" in str(info.value.__cause__)
    assert copy.read_bytes() == (study_dir / "study.db").read_bytes()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///:memory:?cache=shared",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:study.db?mode=memory&uri=true",
        "sqlite:///study.db?uri=true",
    ],
)
def test_run_refuses_a_storage_that_cannot_persist_or_is_not_the_file_named(
    url: str, tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    err = _refused(["run", str(tiny_space), "--storage", url, "--out", str(tmp_path / "run")], capsys)
    flat = " ".join(err.split())
    assert "cannot be resumed" in flat
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("*study.db*"))


# --- folders that are not ours ---------------------------------------------------------------------------------------

file_names = st.one_of(
    st.sampled_from(
        [
            "study.db",
            "study.journal",
            "best_prompt.yaml",
            MANIFEST_FILE,
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "report.md",
            "notes.txt",
        ]
    ),
    st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True).filter(lambda n: n != "sub"),
)
file_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"{}", b'{"files": []}', b"format: promptsearch/best-prompt@1\n", b"SQLite format 3\x00"]),
)


@fuzz(25)
@given(files=st.dictionaries(file_names, file_bytes, min_size=1, max_size=6), sub=st.booleans())
def test_read_only_commands_leave_a_foreign_folder_unchanged(
    files: dict[str, bytes], sub: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    folder = root / "theirs"
    for name, content in files.items():
        path = folder / ("sub" if sub and name.startswith("n") else "") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    rows = root / "rows.jsonl"
    rows.write_text('{"text": "a fine film"}\n', encoding="utf-8")
    before = _snapshot(folder)
    commands = [
        ["report", "--out", str(folder)],
        ["export", "--out", str(folder)],
        ["predict", str(folder), "--input", str(rows), "--output", str(root / "pred.jsonl"), "--device", "cpu"],
        ["validate", str(folder)],
        *(["validate", str(folder / name)] for name in files if not (sub and name.startswith("n"))),
    ]
    for argv in commands:
        _refused(argv, capsys)
    assert _snapshot(folder) == before
    assert not (root / "pred.jsonl").exists()


# --- saved models: complete and consistent, or refused ------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model whose prompt has a demonstration pool."""
    return save_tiny_model(tmp_path_factory.mktemp("foreign-model"), tiny_model, max_length=64, test_rows=8)


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a fine film"}\n{"text": "a dull mess"}\n', encoding="utf-8")
    return path


def _predict(model: Path, rows: Path, out: Path) -> list[str]:
    return ["predict", str(model), "--input", str(rows), "--output", str(out), "--device", "cpu"]


def test_a_save_records_every_file_with_its_size_and_hash_and_what_the_model_is(saved: Path) -> None:
    manifest = Manifest.model_validate_json((saved / MANIFEST_FILE).read_bytes())
    assert manifest.hashed and manifest.format == "promptsearch/model@2"
    assert isinstance(manifest.files, dict)
    on_disk = {p.name for p in saved.iterdir()} - {MANIFEST_FILE}
    assert set(manifest.files) == on_disk
    for name, digest in manifest.files.items():
        data = (saved / name).read_bytes()
        assert digest.size == len(data) and digest.sha256 == hashlib.sha256(data).hexdigest()
    export = promptsearch.load_prompt_config(saved / "best_prompt.yaml")
    assert manifest.labels == export.task.labels and manifest.head == export.model.head == "classification"
    assert manifest.model == export.model.name


def test_an_intact_save_predicts(saved: Path, rows: Path, tmp_path: Path) -> None:
    assert main(_predict(saved, rows, tmp_path / "out.jsonl")) == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def _rewrite_manifest(folder: Path, edit: Any) -> None:
    path = folder / MANIFEST_FILE
    doc = json.loads(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _rehash(folder: Path, name: str) -> None:
    """Make the manifest agree with a file changed on purpose (a forged but self-consistent folder)."""
    data = (folder / name).read_bytes()

    def edit(doc: dict[str, Any]) -> None:
        doc["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    _rewrite_manifest(folder, edit)


@st.composite
def damages(draw: st.DrawFn, listed: list[str]) -> tuple[str, str, Any]:
    """One damage to a saved model: (how, which file, detail)."""
    how = draw(
        st.sampled_from(
            ["remove", "truncate", "flip", "append", "add", "pickle", "unlist", "rehash", "relabel", "rehead"]
        )
    )
    if how == "add":
        name = draw(st.sampled_from(["pytorch_model.bin", "vocab.txt", "extra.txt", "special_tokens_map.json"]))
        return how, name, draw(st.binary(min_size=1, max_size=50))
    if how in ("remove", "truncate"):
        return how, draw(st.sampled_from([*listed, MANIFEST_FILE])), draw(st.floats(0, 0.99))
    if how in ("flip", "append"):
        return how, draw(st.sampled_from(listed)), (draw(st.floats(0, 0.999)), draw(st.integers(1, 255)))
    return how, draw(st.sampled_from(listed)), None


def _damage(folder: Path, how: str, name: str, detail: Any) -> None:
    path = folder / name
    if how == "remove":
        path.unlink()
    elif how == "truncate":
        data = path.read_bytes()
        keep = len(data.rstrip()) - 1 if name == MANIFEST_FILE else len(data)  # JSON ends where its brace does
        path.write_bytes(data[: int(detail * max(keep, 0))])
    elif how == "flip":
        data = bytearray(path.read_bytes())
        where = int(detail[0] * len(data))
        data[where] ^= detail[1]
        path.write_bytes(bytes(data))
    elif how in ("append", "add"):
        with path.open("ab") as fh:
            fh.write(detail if how == "add" else bytes([detail[1]]))
    elif how == "pickle":  # weights a pickle, and the manifest forged to agree
        import torch

        torch.save({"weight": torch.zeros(2)}, folder / "model.safetensors")
        _rehash(folder, "model.safetensors")
    elif how == "unlist":  # the file removed and its entry too: the required ones are missed
        path.unlink()
        _rewrite_manifest(folder, lambda doc: doc["files"].pop(name))
    elif how == "rehash":  # the recorded hash is another one
        _rewrite_manifest(folder, lambda doc: doc["files"][name].update(sha256="0" * 64))
    elif how == "relabel":
        _rewrite_manifest(folder, lambda doc: doc.update(labels=list(reversed(doc["labels"]))))
    elif how == "rehead":
        _rewrite_manifest(folder, lambda doc: doc.update(head="mlm"))


@fuzz(40)
@given(data=st.data())
def test_predict_refuses_a_damaged_save_and_labels_nothing(
    data: st.DataObject, saved: Path, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = sorted(p.name for p in saved.iterdir() if p.name != MANIFEST_FILE)
    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "model"
    shutil.copytree(saved, folder)
    for how, name, detail in data.draw(st.lists(damages(listed), min_size=1, max_size=2, unique_by=lambda d: d[1])):
        edits_manifest = how in ("pickle", "unlist", "rehash", "relabel", "rehead")
        if (how == "add" or (folder / name).exists()) and (not edits_manifest or (folder / MANIFEST_FILE).exists()):
            _damage(folder, how, name, detail)
    out = folder.parent / "out.jsonl"
    err = _refused(_predict(folder, rows, out), capsys)
    assert str(folder) in err
    assert not out.exists()
    with pytest.raises(ConfigError):
        promptsearch.load(folder, device="cpu")


def test_a_tokenizer_without_its_vocabulary_is_refused_even_when_the_manifest_agrees(
    saved: Path, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Today's fallback would turn every word into [UNK] and label the file with exit 0."""
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    (folder / "tokenizer.json").unlink()
    _rewrite_manifest(folder, lambda doc: doc["files"].pop("tokenizer.json"))
    err = _refused(_predict(folder, rows, tmp_path / "out.jsonl"), capsys)
    assert "the tokenizer has no vocabulary beyond its 5 special tokens" in " ".join(err.split())
    assert not (tmp_path / "out.jsonl").exists()


def test_the_message_names_each_missing_or_truncated_file(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    (folder / "tokenizer.json").unlink()
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ConfigError) as info:
        verify_folder(folder)
    assert str(info.value).startswith(
        f"{folder}: the saved model is incomplete or changed since it was saved: "
        f"model.safetensors is shorter than saved (100 of {size} bytes: truncated or edited); "
        "tokenizer.json is missing; save it again"
    )


# --- saves by earlier versions: names only ---------------------------------------------------------------------------


@pytest.fixture
def old_save(saved: Path, tmp_path: Path) -> Path:
    """The save as an earlier version wrote it: the manifest lists the file names only."""
    folder = tmp_path / "old"
    shutil.copytree(saved, folder)
    names = sorted(json.loads((folder / MANIFEST_FILE).read_text())["files"])
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": names}), encoding="utf-8")
    return folder


def test_an_earlier_save_loads_with_a_warning_and_saving_it_again_adds_the_hashes(
    old_save: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="promptsearch.inference.manifest"):
        model = promptsearch.load(old_save, device="cpu")
    assert "lists no sizes or hashes, so a changed file cannot be detected; save it again" in caplog.text
    again = model.save(tmp_path / "again")
    assert verify_folder(again).hashed
    assert model.predict(["a fine film"]) == promptsearch.load(again, device="cpu").predict(["a fine film"])


def test_an_earlier_save_with_pickled_weights_is_refused_without_a_traceback(
    old_save: Path, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    torch.save({"weight": torch.zeros(2)}, old_save / "model.safetensors")
    err = _refused(_predict(old_save, rows, tmp_path / "out.jsonl"), capsys)
    assert "model.safetensors is not a safetensors file (it looks like a pickle)" in " ".join(err.split())
    listed = json.loads((old_save / MANIFEST_FILE).read_text())["files"]
    torch.save({"weight": torch.zeros(2)}, old_save / "pytorch_model.bin")
    (old_save / MANIFEST_FILE).write_text(json.dumps({"files": [*listed, "pytorch_model.bin"]}), encoding="utf-8")
    err = _refused(_predict(old_save, rows, tmp_path / "out.jsonl"), capsys)
    assert "pytorch_model.bin is a pickle, which can run code when loaded" in " ".join(err.split())
    assert not (tmp_path / "out.jsonl").exists()


def test_an_earlier_save_whose_labels_were_reordered_is_refused(
    old_save: Path, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The classification head's outputs are in config.json's order; swapped labels would swap every prediction."""
    prompt = old_save / "best_prompt.yaml"
    doc = yaml.safe_load(prompt.read_text(encoding="utf-8"))
    doc["task"]["labels"] = ["positive", "negative"]
    prompt.write_text(yaml.safe_dump(doc), encoding="utf-8")
    err = _refused(_predict(old_save, rows, tmp_path / "out.jsonl"), capsys)
    assert (
        "task.labels is ['positive', 'negative'], but the model's classification head was saved with the classes "
        "['negative', 'positive']" in " ".join(err.split())
    )


# --- exports that contradict themselves ------------------------------------------------------------------------------


def _edits() -> Iterator[tuple[str, Any, str]]:
    yield (
        "the same label twice",
        lambda d: d["task"].update(labels=["negative", "positive", "positive"]),
        ("task.labels: names must be unique"),
    )
    yield (
        "label words for a label not in the task",
        lambda d: d["prompt"]["label_words"].update(neutral="fine"),
        ("prompt.label_words"),
    )
    yield (
        "fewer demonstrations than the count",
        lambda d: d.update(demonstration_pool=[]),
        ("demonstration_pool: 0 row(s), but prompt.demonstrations.count is 1"),
    )
    yield (
        "a pool with a count of 0",
        lambda d: d["prompt"]["demonstrations"].update(count=0),
        ("but prompt.demonstrations.count is 0, so no prompt would use them"),
    )
    yield (
        "the label as a text field",
        lambda d: d["task"].update(text_fields=["text", "label"]),
        ("task.label_field: 'label' is also in task.text_fields"),
    )
    yield (
        "a demonstration of another label",
        lambda d: d["demonstration_pool"][0].update(label="neutral"),
        ("demonstration_pool.0.label: label 'neutral' is not in task.labels"),
    )


EDITS = list(_edits())


@pytest.mark.parametrize(("what", "edit", "named"), EDITS, ids=[e[0] for e in EDITS])
def test_an_export_that_contradicts_itself_is_refused_by_predict(
    what: str, edit: Any, named: str, saved: Path, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    prompt = folder / "best_prompt.yaml"
    doc = yaml.safe_load(prompt.read_text(encoding="utf-8"))
    edit(doc)
    prompt.write_text(yaml.safe_dump(doc), encoding="utf-8")
    err = _refused(_predict(folder, rows, tmp_path / "out.jsonl"), capsys)
    assert f"{prompt}: " in err and named in " ".join(err.split()), err
    assert not (tmp_path / "out.jsonl").exists()


def test_a_consistent_edit_of_the_export_is_refused_by_its_hash(
    saved: Path, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    prompt = folder / "best_prompt.yaml"
    prompt.write_text(prompt.read_text(encoding="utf-8").replace("It was", "It saw"), encoding="utf-8")
    err = _refused(_predict(folder, rows, tmp_path / "out.jsonl"), capsys)
    assert "best_prompt.yaml changed since the save" in " ".join(err.split())


def test_a_predictor_checks_the_folder_too(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    (folder / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"config\.json is missing"):
        Predictor(folder, device="cpu")


# --- the test split is read before the search -------------------------------------------------------------------------


def _bad_row(kind: str) -> bytes:
    return {
        "missing text": json.dumps({"label": "positive"}).encode(),
        "empty text": json.dumps({"text": "  ", "label": "positive"}).encode(),
        "text a number": json.dumps({"text": 3, "label": "positive"}).encode(),
        "undeclared label": json.dumps({"text": "fine", "label": "neutral"}).encode(),
        "no label": json.dumps({"text": "fine"}).encode(),
        "not UTF-8": b'{"text": "caf\xe9", "label": "positive"}',
    }[kind]


NAMED = {  # what the message names besides the file and the row
    "missing text": "text field 'text'",
    "empty text": "text field 'text'",
    "text a number": "text field 'text'",
    "undeclared label": "field 'label'",
    "no label": "label field 'label'",
    "not UTF-8": "not UTF-8",
}


@fuzz(15)
@given(kind=st.sampled_from(sorted(NAMED)), row=st.integers(0, 7))
def test_a_bad_test_split_fails_validate_naming_the_file_row_and_field(
    kind: str, row: int, tiny_space: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiny import SST2

    test = tiny_space.parent / "data" / "test.jsonl"
    lines = (SST2 / "test.jsonl").read_bytes().splitlines()[:8]  # a fresh file for each example
    lines[row] = _bad_row(kind)
    test.write_bytes(b"\n".join(lines) + b"\n")
    err = " ".join(_refused(["validate", str(tiny_space)], capsys).split())
    assert str(test) in err
    assert f"row {row + 1}" in err or f"line {row + 1}" in err, err
    assert NAMED[kind] in err, err


def test_run_and_train_refuse_a_bad_test_split_before_any_training(
    tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = tiny_space.parent / "data" / "test.jsonl"
    test.write_bytes(test.read_bytes() + _bad_row("undeclared label") + b"\n")
    out = tmp_path / "run"
    err = _refused(["run", str(tiny_space), "--out", str(out), "--device", "cpu"], capsys)
    assert str(test) in err and "'neutral'" in err
    assert not (out / "study.db").exists()  # refused before the study exists, so before any trial
    export = tmp_path / "one.yaml"
    space = yaml.safe_load(tiny_space.read_text(encoding="utf-8"))
    space["prompt"] = {
        "template": "{text} It was {label}.",
        "label_words": {"negative": "terrible", "positive": "great"},
    }
    space["train"] = {"learning_rate": 3.0e-3, "epochs": 1, "batch_size": 8}
    space["task"]["data"]["dir"] = str(tiny_space.parent / "data")
    export.write_text(yaml.safe_dump(space), encoding="utf-8")
    err = _refused(["train", str(export), "--device", "cpu", "--save-model", str(tmp_path / "model")], capsys)
    assert str(test) in err
    assert not (tmp_path / "model").exists()


def test_a_model_folder_whose_safetensors_file_is_a_pickle_is_one_message(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``model.name`` a local folder whose ``model.safetensors`` holds a pickle (torch.save): refused with one
    message by ``run`` before any trial, never unpickled, no traceback."""
    import torch

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    torch.save({"weight": torch.zeros(2)}, model / "model.safetensors")
    space = tmp_path / "space.yaml"
    space.write_text(tiny_space_text(model, tiny_data(tmp_path / "data"), n_trials=1), encoding="utf-8")
    assert main(["run", str(space), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"model.name: could not load '{model}'" in err
