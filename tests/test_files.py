"""Special files: a FIFO, a device, a folder or a link to one is never read from or written over (hypothesis)."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptsearch.cli import main
from promptsearch.errors import ConfigError, DataError
from promptsearch.files import describe, readable_file, writable_file
from promptsearch.inference.batch import _Writer, iter_input
from promptsearch.io.export import atomic_write_text

KINDS = ["fifo", "device", "folder", "link-to-fifo", "link-to-device", "broken-link"]


def make(kind: str, where: Path, name: str) -> Path:
    path = where / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/null")  # a character device; creating one needs mknod, a link to one is the risk
    elif kind == "folder":
        path.mkdir()
    elif kind == "link-to-fifo":
        os.mkfifo(where / f"{name}.target")
        path.symlink_to(where / f"{name}.target")
    elif kind == "link-to-device":
        path.symlink_to("/dev/zero")
    elif kind == "broken-link":
        path.symlink_to(where / "nowhere")
    return path


def snapshot(path: Path) -> tuple[bool, int]:
    """Whether ``path`` is a link, and the kind of what it points to: what a write must leave unchanged."""
    try:
        mode = stat.S_IFMT(path.stat().st_mode)
    except FileNotFoundError:
        mode = -1
    return path.is_symlink(), mode


@contextmanager
def no_hang(seconds: int = 20) -> Iterator[None]:
    """Fail instead of blocking forever (a FIFO opened for reading waits for a writer)."""

    def alarm(*_: object) -> None:
        raise TimeoutError("blocked on a special file")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


fresh = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fresh
@given(kind=st.sampled_from(KINDS), suffix=st.sampled_from([".yaml", ".jsonl", ".csv", ".md", ""]))
def test_writes_never_replace_a_special_file(tmp_path: Path, kind: str, suffix: str) -> None:
    where = Path(os.path.realpath(tmp_path)) / f"w{len(list(tmp_path.iterdir()))}"
    where.mkdir()
    target = make(kind, where, f"out{suffix}")
    before = snapshot(target)
    with pytest.raises(ConfigError, match=r"folder|expected the path of a regular file"):
        atomic_write_text(target, "x\n")
    if suffix in (".jsonl", ".csv"):
        with pytest.raises(ConfigError, match=r"folder|expected the path of a regular file"):
            _Writer(target, ["a", "b"], None)
    assert snapshot(target) == before


@fresh
@given(kind=st.sampled_from(KINDS), command=st.sampled_from(["validate", "run", "worker", "render"]))
def test_a_special_space_file_is_one_message_not_a_hang(
    tmp_path: Path, kind: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    where = Path(os.path.realpath(tmp_path)) / f"s{len(list(tmp_path.iterdir()))}"
    where.mkdir()
    space = make(kind, where, "space.yaml")
    extra = ["--storage", f"sqlite:///{where}/study.db", "--study-name", "s"] if command == "worker" else []
    with no_hang():
        code = main([command, str(space), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and str(space) in err


@fresh
@given(kind=st.sampled_from(KINDS))
def test_a_special_input_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    where = Path(os.path.realpath(tmp_path)) / f"i{len(list(tmp_path.iterdir()))}"
    where.mkdir()
    path = make(kind, where, "rows.jsonl")
    with no_hang(), pytest.raises(DataError) as info:
        list(iter_input(path))
    assert describe(path) in str(info.value)


def test_describe_and_the_checks() -> None:
    assert describe(Path("/dev/null")) == "a character device"
    assert describe(Path("/")) == "a folder"
    with pytest.raises(ConfigError, match="a character device"):
        writable_file("/dev/null", "-o")
    with pytest.raises(ConfigError, match="a character device"):
        readable_file("/dev/null", "--input")


def test_a_link_to_a_regular_file_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.md"
    real.write_text("old\n")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


@fresh
@given(
    kind=st.sampled_from(KINDS),
    split=st.sampled_from(["train", "dev", "test"]),
    declared=st.sampled_from(["files", "dir"]),
)
def test_a_special_data_file_is_named_as_what_it_is_never_read(
    tmp_path: Path, kind: str, split: str, declared: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A split's file given in ``task.data.files`` or found in ``task.data.dir`` that is a FIFO, a device, a
    folder or a link (to one, or broken) is refused by ``validate`` with what it is: no hang, no 'does not exist'."""
    from tiny import SST2

    where = Path(os.path.realpath(tmp_path)) / f"d{len(list(tmp_path.iterdir()))}"
    data = where / "data"
    data.mkdir(parents=True)
    for name in ("train", "dev", "test"):
        if name != split:
            (data / f"{name}.jsonl").write_text((SST2 / "16-13" / "train.jsonl").read_text(encoding="utf-8"))
    special = make(kind, data, f"{split}.jsonl")
    files = ", ".join(f"{n}: {data / f'{n}.jsonl'}" for n in ("train", "dev", "test"))
    source = f"  data:\n    dir: {data}\n" if declared == "dir" else "  data:\n    files: {" + files + "}\n"
    space = where / "space.yaml"
    rest = "  labels: [negative, positive]\nprompt:\n  template: '{text} It was {label}.'\n"
    space.write_text(f"name: s\ntask:\n{source}{rest}", encoding="utf-8")
    with no_hang():
        code = main(["validate", str(space)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and str(special) in err
    assert describe(special) in err and "does not exist" not in err
