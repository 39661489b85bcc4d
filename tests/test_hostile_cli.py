"""Hostile command-line values and paths: seeds, run folders, warm starts, unreadable files, hand-edited
exports, and storage URLs (issue #18, classes 5, 6 and 8). Each gives one message and exit code 2, before
any work, and nothing is created that the command did not mean to create."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import fuzz, scalars
from tiny import save_tiny_model, tiny_data, tiny_space_text

import promptsearch
from promptsearch.api import search
from promptsearch.cli import SEED_MAX, main
from promptsearch.errors import ConfigError
from promptsearch.files import creatable_folder
from promptsearch.io.data import Example
from promptsearch.io.export import export_to_space, load_prompt_config
from promptsearch.prompts.render import PromptRenderer
from promptsearch.space import config
from promptsearch.study import storage
from promptsearch.study.storage import make_storage, parse_storage_url
from promptsearch.study.workers import worker_seed

SECRET_FREE = st.characters(codec="utf-8", exclude_characters="@*\x00", exclude_categories=("Cs",))


def _flat(text: str) -> str:
    """Output with the line breaks and frame of typer's error panel taken out (it wraps at 80 columns)."""
    return re.sub(r"[\s│╭╮╰╯─]+", "", text)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- seeds -------------------------------------------------------------------------------------------------------

outside = st.one_of(st.integers(max_value=-1), st.integers(min_value=SEED_MAX + 1))


def test_the_clis_seed_range_is_the_samplers() -> None:
    assert SEED_MAX == storage.SEED_MAX == config.SEED_MAX == 2**32 - 1  # one constant, read everywhere


@fuzz(20)
@given(seed=outside, command=st.sampled_from(["render", "run"]))
def test_a_seed_outside_numpys_range_is_one_message_before_any_work(
    seed: int, command: str, tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    extra = ["--out", str(out)] if command == "run" else []
    assert main([command, str(tiny_space), "--seed", str(seed), *extra]) == 2
    err = _flat(capsys.readouterr().err)
    assert f"Invalidvaluefor'--seed':expectedanintegerfrom0to{SEED_MAX}" in err
    assert f"butgot{seed}" in err and "Traceback" not in err
    assert not out.exists()


@fuzz(20)
@given(seed=outside)
def test_the_api_refuses_such_a_seed_before_the_storage_exists(seed: int, tiny_space: Path, tmp_path: Path) -> None:
    db = tmp_path / f"seed{seed}.db"
    with pytest.raises(ConfigError, match=re.escape(f"--seed must be an integer from 0 to {SEED_MAX}")):
        promptsearch.Study(tiny_space, storage=f"sqlite:///{db}", seed=seed)
    assert not db.exists()


@fuzz(100)
@given(seed=st.integers(0, SEED_MAX), index=st.integers(0, 10**30))
def test_every_workers_seed_is_a_seed_the_sampler_takes(seed: int, index: int) -> None:
    assert 0 <= worker_seed(seed, index) <= SEED_MAX
    assert worker_seed(seed, 0) == seed


@pytest.mark.parametrize("value", ["inf", "nan", "1e308", "86401", "0"])
def test_a_heartbeat_optuna_cannot_count_in_seconds_is_one_message(
    value: str, tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(tiny_space), "--heartbeat", value, "--out", str(out), "--n-trials", "0"]) == 2
    err = capsys.readouterr().err
    assert "--heartbeat" in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="--heartbeat must be a positive number of seconds up to 86400"):
        make_storage(f"sqlite:///{tmp_path / 'x.db'}", heartbeat=float(value) * 3)
    assert not (tmp_path / "x.db").exists()


# --- folders that cannot be made ---------------------------------------------------------------------------------

names = st.sampled_from(["a", "b", "c", "..", ".", "x" * 300])
kinds = st.sampled_from(["folder", "file", "fifo", "link to a", "link to b", "broken link"])


def _make(root: Path, entries: list[tuple[list[str], str]]) -> None:
    for parts, kind in entries:
        path = root.joinpath(*parts)
        if not path.parent.is_dir() or os.path.lexists(path):
            continue
        if kind == "folder":
            path.mkdir()
        elif kind == "file":
            path.write_text("user data\n")
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(root / ("missing" if kind == "broken link" else kind[-1]))


@fuzz(120)
@given(
    entries=st.lists(st.tuples(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3), kinds), max_size=8),
    target=st.lists(names, min_size=1, max_size=4),
)
def test_a_folder_is_accepted_exactly_when_mkdir_can_make_it_and_the_check_makes_nothing(
    entries: list[tuple[list[str], str]], target: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make(root, entries)
        path = root.joinpath(*target)
        before = _tree(root)
        try:
            creatable_folder(path, "--out")
            accepted = True
        except ConfigError as exc:
            assert str(exc).startswith(f"--out {path}: ") and "give" in str(exc)
            accepted = False
        assert _tree(root) == before
        try:
            path.mkdir(parents=True, exist_ok=True)  # what run, report and --save-model do
            made = path.is_dir()
        except OSError:
            made = False
        assert accepted == made, (sorted(before), target)


@pytest.fixture(scope="module")
def study_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder: the baseline only, no final evaluation (nothing is trained again)."""
    root = tmp_path_factory.mktemp("hostile-study")
    space = root / "tiny.yaml"
    space.write_text(tiny_space_text(tiny_model, tiny_data(root / "data"), n_trials=1), encoding="utf-8")
    search(space, out=root / "run", device="cpu", n_trials=0, final_seeds=0)
    return root / "run"


def _blocked(tmp_path: Path) -> dict[str, Path]:
    afile = tmp_path / "afile"
    afile.write_text("user data\n")
    return {"under a file": afile / "run", "a file": afile, "a name too long": tmp_path / ("x" * 300)}


@pytest.mark.parametrize("case", ["under a file", "a file", "a name too long"])
def test_run_out_that_cannot_be_made_is_refused_before_the_study_exists(
    case: str, tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _blocked(tmp_path)[case]
    db = tmp_path / "elsewhere.db"
    argv = ["run", str(tiny_space), "--out", str(out), "--storage", f"sqlite:///{db}", "--n-trials", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: " in err and re.search("give (another|a shorter) path", err) and "Traceback" not in err
    assert not db.exists()  # checked before the study was created
    assert (tmp_path / "afile").read_text() == "user data\n"


@pytest.mark.parametrize("case", ["under a file", "a file", "a name too long"])
@pytest.mark.parametrize("command", ["report", "export"])
def test_report_and_export_out_that_cannot_be_made(
    case: str, command: str, study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _blocked(tmp_path)[case]
    url = f"sqlite:///{study_dir / 'study.db'}"
    assert main([command, "--out", str(out), "--storage", url, "--study-name", "tiny"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: " in err and re.search("give (another|a shorter) path", err) and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "user data\n"


@pytest.mark.parametrize("command", ["run", "train"])
def test_save_model_where_no_folder_can_be_made_is_refused_before_training(
    command: str, tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("user data\n")
    db = tmp_path / "s.db"
    extra = ["--storage", f"sqlite:///{db}", "--out", str(tmp_path / "run")] if command == "run" else []
    assert main([command, str(tiny_space), "--save-model", str(afile / "model"), *extra]) == 2
    err = capsys.readouterr().err
    assert f"--save-model {afile / 'model'}: " in err and "is a regular file" in err
    assert not db.exists() and not (tmp_path / "run").exists()


# --- --warm-start given something else than an exported best prompt ------------------------------------------------


def _not_an_export(tmp_path: Path, kind: str, tiny_space: Path) -> Path:
    path = tmp_path / kind.replace(" ", "_")
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "a run folder":
        path.mkdir()
        (path / "best_prompt.yaml").write_text("format: promptsearch/best-prompt@1\n")
    elif kind == "a search space":
        shutil.copy(tiny_space, path)
    elif kind == "a damaged export":
        path.write_text("format: promptsearch/best-prompt@1\nname: [unclosed\n")
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    return path


@pytest.mark.parametrize(
    "kind", ["folder", "fifo", "missing", "a run folder", "a search space", "a damaged export", "binary"]
)
def test_warm_start_from_anything_but_an_export_is_one_message(
    kind: str, tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _not_an_export(tmp_path, kind, tiny_space)
    out = tmp_path / "run"
    assert main(["run", str(tiny_space), "--warm-start", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["folder", "missing", "a search space", "fifo"])
def test_warm_start_study_from_anything_but_a_study_is_one_message(
    kind: str, tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _not_an_export(tmp_path, kind, tiny_space)
    out = tmp_path / "run"
    for url in (f"sqlite:///{path}", f"journal://{path}"):
        assert main(["run", str(tiny_space), "--warm-start-study", url, "tiny", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--storage" in err and str(path) in err and "Traceback" not in err
    assert not out.exists()
    assert path.exists() == (kind != "missing")


# --- storage URLs: no password in a path or a message; every command reads them alike -----------------------------

users = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=8)
passwords = st.text(SECRET_FREE, min_size=6, max_size=16).filter(lambda p: p.strip() == p and "/" not in p[:1])


def _url(kind: str, user: str, password: str, root: Path) -> str:
    return {
        "sqlite": f"sqlite://{user}:{password}@/{root}/db/study.db",
        "sqlite host": f"sqlite://{user}:{password}@localhost/{root}/db/study.db",
        "journal": f"journal://{user}:{password}@host/{root}/j/study.journal",
        "journal relative": f"journal://{user}:{password}@host/j/study.journal",
    }[kind]


@fuzz(30)
@given(
    user=users,
    password=passwords,
    kind=st.sampled_from(["sqlite", "sqlite host", "journal", "journal relative"]),
    command=st.sampled_from(["run", "report", "export", "worker", "warm-start-study"]),
)
def test_a_password_in_a_file_url_is_refused_masked_and_never_becomes_a_folder(
    user: str,
    password: str,
    kind: str,
    command: str,
    tiny_space: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = _url(kind, user, password, tmp_path)
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    argv = {
        "run": ["run", str(tiny_space), "--storage", url, "--out", "run"],
        "report": ["report", "--storage", url, "--study-name", "tiny", "--out", "run"],
        "export": ["export", "--storage", url, "--study-name", "tiny", "--out", "run"],
        "worker": ["worker", "--storage", url, "--study-name", "tiny"],
        "warm-start-study": ["run", str(tiny_space), "--warm-start-study", url, "tiny", "--out", "run"],
    }[command]
    assert main(argv) == 2
    printed = capsys.readouterr()
    assert password not in printed.out + printed.err
    assert "takes no user, password, host or port" in printed.err and ":***@" in printed.err
    assert _tree(tmp_path) == before  # no folder at all, so none named after the password


def test_sqlite_urls_that_name_no_file_are_refused() -> None:
    for url, why in [
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite://localhost/x.db", "takes no user, password, host or port"),
        ("sqlite://:1/x.db", "takes no user, password, host or port"),
        ("sqlite://u:p@h:notaport/x.db", "not a valid database URL"),
        ("journal://", "no file"),
        ("journal://host:99/x.journal", "takes no user, password, host or port"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(why)):
            parse_storage_url(url)


def test_the_file_of_a_url_is_the_file_sqlalchemy_opens(tmp_path: Path) -> None:
    assert parse_storage_url("sqlite:///runs/x/study.db?timeout=30").file == Path("runs/x/study.db")
    assert parse_storage_url(f"sqlite:///{tmp_path}/a%20b.db").file == tmp_path / "a b.db"
    assert parse_storage_url(f"journal://{tmp_path}/x.journal").file == tmp_path / "x.journal"
    assert parse_storage_url("journal://runs/x.journal").file == Path("runs/x.journal")
    assert parse_storage_url("postgresql://u:pw@h/db").file is None


queries = st.dictionaries(
    st.sampled_from(["timeout", "check_same_thread", "cached_statements", "detect_types", "isolation_level", "x"]),
    st.one_of(st.integers(0, 100).map(str), st.sampled_from(["true", "false", "1.5", "", "SERIALIZABLE", "abc"])),
    max_size=3,
)


@pytest.mark.filterwarnings("ignore:Query string argument")  # SQLAlchemy warns of the keys pysqlite ignores
@fuzz(25)
@given(query=queries)
def test_every_command_reads_a_query_string_alike(query: dict[str, str], study_dir: Path) -> None:
    """run opens with create=True; report, export, worker and warm start with create=False: same outcome."""
    from urllib.parse import urlencode

    url = f"sqlite:///{study_dir / 'study.db'}" + (f"?{urlencode(query)}" if query else "")
    outcomes = []
    for create in (True, False):
        try:
            make_storage(url, create=create).get_all_studies()
            outcomes.append("opened")
        except ConfigError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    if set(query) <= {"timeout"} and all(v.isdigit() for v in query.values()):
        assert outcomes[0] == "opened"


def test_run_report_and_export_take_the_same_timeout_url(
    study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{study_dir / 'study.db'}?timeout=30"
    space = study_dir.parent / "tiny.yaml"
    out = tmp_path / "out"
    common = ["--storage", url, "--study-name", "tiny", "--out", str(out)]
    assert main(["run", str(space), *common, "--n-trials", "0", "--final-seeds", "0", "--device", "cpu"]) == 0
    assert main(["report", *common, "--final-seeds", "0"]) == 0
    assert main(["export", *common, "-o", str(tmp_path / "best.yaml")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert not Path(f"{study_dir / 'study.db'}?timeout=30").exists()
    assert load_prompt_config(tmp_path / "best.yaml").name == "tiny"


# --- hand-edited best_prompt.yaml ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model whose best_prompt.yaml holds a template and a demonstration pool."""
    return save_tiny_model(tmp_path_factory.mktemp("hostile-model"), tiny_model)


def _leaves(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        if prefix[:1] == ("demonstration_pool",) and len(prefix) == 1 and key > 2:
            break  # three rows stand for all of them
        yield from _leaves(value, (*prefix, key))


def _edit(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if how == "drop":
        del parent[key]
    elif how == "add key" and isinstance(parent[key], dict):
        parent[key][value if isinstance(value, str) else str(value)] = "added by hand"
    else:
        parent[key] = value
    return doc


EDITS = [  # (where, how, value), the key the message names
    (("demonstration_pool", 0), "add key", "sentence", "demonstration_pool.0.sentence: unknown key"),
    (("demonstration_pool", 0, "label"), "set", "neutral", "demonstration_pool.0.label: label 'neutral' is not"),
    (("demonstration_pool", 0, "text"), "drop", None, "demonstration_pool.0.text: required key is missing"),
    (("demonstration_pool", 1, "text"), "set", 3, "demonstration_pool.1.text: Input should be a valid string"),
    (("demonstration_pool", 1, "text"), "set", "   ", "demonstration_pool.1.text: text field 'text' must be a non-emp"),
    (("demonstration_pool", 1, "text"), "set", "ok \ud800", "demonstration_pool.1.text: text field 'text' holds a"),
    (("task", "labels"), "set", ["negative", "neutral"], ".label: label 'positive' is not in task.labels"),
    (("prompt", "label_words"), "set", {"negative": "terrible"}, "prompt.label_words"),
    (("calibration",), "set", {"method": "mean", "offsets": [0.1]}, "calibration.method: 'mean', but prompt"),
    (("model", "trust_remote_code"), "set", "yes", "model.trust_remote_code: Input should be a valid boolean"),
    (("train", "epochs"), "set", 2.0, "train.epochs: Input should be a valid integer"),
    (("prompt", "template"), "set", "{text} It was.", "prompt.template: a template needs exactly one {label}"),
    (("prompt", "demonstrations", "selection"), "set", "nearest", "prompt.demonstrations.selection"),
]


@pytest.mark.parametrize(("path", "how", "value", "named"), EDITS, ids=[".".join(map(str, e[0])) for e in EDITS])
def test_a_hand_edit_that_breaks_the_export_names_the_file_and_key(
    path: tuple[Any, ...], how: str, value: Any, named: str, model_dir: Path, tmp_path: Path
) -> None:
    doc = yaml.safe_load((model_dir / "best_prompt.yaml").read_text(encoding="utf-8"))
    edited = tmp_path / "best_prompt.yaml"
    edited.write_text(yaml.safe_dump(_edit(doc, path, how, value)), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_prompt_config(edited)
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"{edited}: ") and named in first, first
    assert str(info.value).endswith("export it again.")


def _usable(export: promptsearch.PromptExport) -> None:
    """What run, train and predict do with an export that loaded: none of it may fail."""
    export_to_space(export, allow_plain=True)
    task = export.task
    pool = [
        Example(fields={f: row[f] for f in task.text_fields}, label=row[task.label_field])
        for row in export.demonstration_pool
    ]  # as predict builds it
    assert all(example.label in task.labels for example in pool)
    renderer = PromptRenderer(export.prompt, pool, slot="[MASK]")
    query = Example(fields=dict.fromkeys(task.text_fields, "a fine film"), label=task.labels[0])
    assert renderer.render(query).text


@fuzz(80)
@given(data=st.data())
def test_hand_edited_exports_load_only_when_usable(model_dir: Path, tmp_path: Path, data: st.DataObject) -> None:
    doc = yaml.safe_load((model_dir / "best_prompt.yaml").read_text(encoding="utf-8"))
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(list(_leaves(doc))))
        how = data.draw(st.sampled_from(["drop", "set", "add key"]))
        value = data.draw(
            st.one_of(scalars, st.sampled_from(["neutral", "positive", "label", "text", [], {}, ["a", "b"], -1]))
        )
        doc = _edit(doc, path, how, value)
    edited = tmp_path / "best_prompt.yaml"
    edited.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        export = load_prompt_config(edited)
    except ConfigError as exc:
        assert str(exc).startswith(f"{edited}: "), str(exc)
        return
    _usable(export)


def test_predict_with_a_pool_of_unknown_labels_is_one_message(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = tmp_path / "model"
    shutil.copytree(model_dir, edited)
    prompt = edited / "best_prompt.yaml"
    doc = yaml.safe_load(prompt.read_text(encoding="utf-8"))
    doc["demonstration_pool"][0]["label"] = "neutral"
    prompt.write_text(yaml.safe_dump(doc), encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a fine film"}\n', encoding="utf-8")
    assert main(["predict", str(edited), "--input", str(rows), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{prompt}: demonstration_pool.0.label: label 'neutral' is not in task.labels" in err
    assert "Traceback" not in err


# --- files this user may not read -----------------------------------------------------------------------------------


def _unprivileged() -> tuple[list[str], dict[str, Any]] | None:
    """How to run a process that file permissions apply to: as is (not root), as root without the capabilities
    that bypass them (setpriv), or as nobody when the interpreter is readable by nobody; None: no way here."""
    if os.geteuid() != 0:
        return [], {}
    if shutil.which("setpriv"):
        return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"], {}
    probe = subprocess.run([sys.executable, "-c", "import promptsearch"], user=65534, group=65534, capture_output=True)
    if probe.returncode == 0:
        return [], {"user": 65534, "group": 65534, "extra_groups": []}
    return None


DRIVER = """
import contextlib, io, json, sys, traceback
from promptsearch.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException:
            traceback.print_exc(file=err)
            code = "raised"
    results.append({"code": code, "err": err.getvalue()})
print(json.dumps(results))
"""


@pytest.fixture
def world_readable() -> Iterator[Path]:
    """A folder every user may enter (pytest's own temporary folders are the owner's only)."""
    root = Path(tempfile.mkdtemp(prefix="promptsearch-perm-"))
    root.chmod(0o755)
    yield root
    for folder, folders, files in os.walk(root):  # top-down: a folder is opened before it is entered
        for name in folders:
            Path(folder, name).chmod(0o755)
        for name in files:
            Path(folder, name).chmod(0o644)
    shutil.rmtree(root)


def test_files_this_user_may_not_read_or_write_are_one_message_each(
    tiny_model: Path, model_dir: Path, study_dir: Path, world_readable: Path
) -> None:
    how = _unprivileged()
    if how is None:
        pytest.skip("running as root, without setpriv, and nobody cannot run this interpreter")
    prefix, kwargs = how
    root = world_readable
    shutil.copytree(tiny_model, root / "tiny")
    shutil.copytree(model_dir, root / "model")
    shutil.copy(study_dir / "study.db", root / "study.db")
    shutil.copy(study_dir / "study.db", root / "open.db")
    space = root / "space.yaml"
    space.write_text(tiny_space_text(root / "tiny", tiny_data(root / "data"), n_trials=1), encoding="utf-8")
    locked_space = root / "locked.yaml"
    shutil.copy(space, locked_space)
    shutil.copytree(root / "data", root / "locked-data")
    shutil.copytree(root / "data", root / "locked-dir")
    (root / "data-file.yaml").write_text(space.read_text().replace(str(root / "data"), str(root / "locked-data")))
    (root / "data-dir.yaml").write_text(space.read_text().replace(str(root / "data"), str(root / "locked-dir")))
    export = root / "best_prompt.yaml"
    shutil.copy(root / "model" / "best_prompt.yaml", export)
    shutil.copytree(root / "model", root / "model-locked-prompt")
    shutil.copytree(root / "model", root / "model-locked-weights")
    rows = root / "rows.jsonl"
    rows.write_text('{"text": "a fine film"}\n', encoding="utf-8")
    shutil.copy(rows, root / "locked-rows.jsonl")
    journal = root / "study.journal"
    storage.make_storage(f"journal://{journal}")  # an empty journal file
    (root / "readonly").mkdir()
    locked = [
        locked_space,
        root / "locked-data" / "train.jsonl",
        export,
        root / "model-locked-prompt" / "best_prompt.yaml",
        root / "model-locked-weights" / "model.safetensors",
        root / "locked-rows.jsonl",
        root / "study.db",
        journal,
    ]
    for path in locked:
        path.chmod(0)
    (root / "locked-dir").chmod(0)
    (root / "readonly").chmod(0o555)
    predict = ["predict", "--device", "cpu", "--input"]
    cases: list[tuple[list[str], str]] = [
        (["validate", str(locked_space)], str(locked_space)),
        (["validate", str(root / "data-file.yaml")], str(root / "locked-data" / "train.jsonl")),
        (["validate", str(root / "data-dir.yaml")], str(root / "locked-dir")),
        (["validate", str(export)], str(export)),
        (["run", str(space), "--warm-start", str(export), "--out", str(root / "r1")], str(export)),
        ([*predict, str(rows), str(root / "model-locked-prompt")], "best_prompt.yaml"),
        ([*predict, str(rows), str(root / "model-locked-weights")], f"may not read {locked[4]}"),
        ([*predict, str(root / "locked-rows.jsonl"), str(root / "model")], "locked-rows.jsonl"),
        (["report", "--storage", f"sqlite:///{root / 'study.db'}", "--out", str(root / "r2")], "study.db"),
        (["report", "--storage", f"journal://{journal}", "--out", str(root / "r3")], "study.journal"),
        (["run", str(space), "--out", str(root / "readonly" / "run"), "--n-trials", "0"], "readonly"),
        (["export", "--storage", f"sqlite:///{root / 'open.db'}", "-o", str(root / "readonly" / "x.yaml")], "readonly"),
    ]
    env = {**os.environ, "HOME": str(root), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [*prefix, sys.executable, "-c", DRIVER, json.dumps([argv for argv, _ in cases])],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=300,
        **kwargs,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for (argv, named), result in zip(cases, results, strict=True):
        assert result["code"] == 2, (argv, result)
        assert "Traceback" not in result["err"], (argv, result)
        assert _flat(named) in _flat(result["err"]), (argv, result)
    assert not (root / "r1").exists() and not (root / "readonly" / "run").exists()
