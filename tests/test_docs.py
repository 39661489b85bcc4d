"""The documentation: README.md and docs/ build, link and run as written.

- The key reference in docs/space-file.md equals a fresh generation from the schema.
- Every ```yaml block validates: a whole space (marked ``<!-- space -->``) with its data, a fragment merged into
  a minimal space, or a fragment of a shipped space (``<!-- fragment of search_spaces/NAME.yaml -->``).
- Every block marked ``<!-- runnable -->`` runs (as a slow test) in a scratch folder
  with copies of search_spaces/ whose models are a tiny BERT (and each space a command writes is made tiny the
  same way before the next command).
- Relative links of README.md point at files and headings that exist; mkdocs builds the site with ``--strict``.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny import build_tiny_bert

from promptsearch.io.data import load_task_data
from promptsearch.space.reference import BEGIN, END, key_docs, render_reference, update_page
from promptsearch.space.search_space import load_space
from promptsearch.study.checks import check_space_data

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 250

# The minimal space a fragment is merged into (next to a copy of the SST-2 16-shot split).
BASE_SPACE: dict[str, Any] = {
    "name": "fragment",
    "task": {"data": {"dir": "sst2"}, "labels": ["negative", "positive"], "splits": {"test": None}},
    "prompt": {"template": "{text} It was {label}."},
}


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page, with the HTML comment on the line before it (its marker), if any."""

    page: Path
    line: int
    lang: str
    marker: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(pages: list[Path] = PAGES) -> list[Block]:
    found: list[Block] = []
    for page in pages:
        lines = page.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            opening = re.match(r"^(\s*)```(\w+)\s*$", lines[i])
            if not opening:
                i += 1
                continue
            indent, lang = opening.groups()
            previous = lines[i - 1].strip() if i else ""
            marker = previous[4:-3].strip() if previous.startswith("<!--") and previous.endswith("-->") else ""
            body: list[str] = []
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                body.append(lines[j][len(indent) :])
                j += 1
            found.append(Block(page, i + 1, lang, marker, "\n".join(body) + "\n"))
            i = j + 1
    return found


BLOCKS = blocks()
YAML_BLOCKS = [b for b in BLOCKS if b.lang == "yaml"]
RUNNABLE = [b for b in BLOCKS if b.marker == "runnable"]


def test_the_examples_are_found() -> None:
    assert len(YAML_BLOCKS) >= 5
    assert {b.lang for b in RUNNABLE} == {"bash", "python"}
    assert any(b.page.name == "README.md" for b in RUNNABLE)
    # a marker the tests do not know would silently exempt its block
    known = ("", "space", "runnable", "fragment of a space")
    for block in BLOCKS:
        assert block.marker in known or block.marker.startswith("fragment of search_spaces/"), block.id


# --- the generated key reference ------------------------------------------------------------------


def test_the_key_reference_is_the_schema_of_today() -> None:
    import difflib

    page = DOCS / "space-file.md"
    text = page.read_text(encoding="utf-8")
    start, stop = text.find(BEGIN), text.find(END)
    diff = "\n".join(difflib.unified_diff(text[start:stop].splitlines(), render_reference().splitlines(), n=0))
    assert not update_page(page, check=True), (
        f"docs/space-file.md is out of date: run python -m promptsearch.space.reference docs/space-file.md\n{diff}"
    )
    assert render_reference() in text


def test_the_key_reference_lists_no_plug_in() -> None:
    from promptsearch.space.registry import HEADS

    with HEADS.temporary():
        HEADS.register("a_plug_in_head", object())  # as a plug-in loaded before the docs are generated
        assert "a_plug_in_head" in HEADS.names()
        assert "a_plug_in_head" not in render_reference()
        assert "`classification`" in render_reference()


def test_every_key_of_the_space_file_is_described() -> None:
    docs = key_docs()
    paths = [d.path for d in docs]
    for key in ("name", "task.labels", "model.head", "prompt.instruction.auto.n", "train.lora.r", "search.seed"):
        assert key in paths
    assert len(paths) == len(set(paths))
    assert [d.path for d in docs if not d.description] == []


def test_the_reference_generator_refuses_a_page_without_its_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# a page\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected the lines"):
        update_page(page)
    assert page.read_text(encoding="utf-8") == "# a page\n"


# --- YAML blocks ----------------------------------------------------------------------------------


def _merge(base: Any, fragment: Any) -> Any:
    if isinstance(base, dict) and isinstance(fragment, dict):
        merged = dict(base)
        for key, value in fragment.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return copy.deepcopy(fragment)


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[b.id for b in YAML_BLOCKS])
def test_every_yaml_block_validates(block: Block, tmp_path: Path) -> None:
    fragment = yaml.safe_load(block.text)
    assert isinstance(fragment, dict), f"{block.id}: expected a mapping"
    if block.marker == "space":
        work = tmp_path / "search_spaces"
        work.mkdir()
        (tmp_path / "data").symlink_to(REPO / "data")  # the page's paths start at search_spaces/, as shipped
        path = work / "space.yaml"
        path.write_text(block.text, encoding="utf-8")
        space = load_space(path)
        check_space_data(space, load_task_data(space.spec.task, space.base_dir))
        return
    if block.marker.startswith("fragment of search_spaces/"):
        shipped = block.marker.removeprefix("fragment of ")
        path = tmp_path / shipped  # at the same depth under a link to data/, so its relative paths hold
        path.parent.mkdir(parents=True)
        (tmp_path / "data").symlink_to(REPO / "data")
        base = yaml.safe_load((REPO / shipped).read_text(encoding="utf-8"))
        path.write_text(yaml.safe_dump(_merge(base, fragment), sort_keys=False), encoding="utf-8")
        load_space(path)
        return
    shutil.copytree(REPO / "data" / "sst2" / "16-13", tmp_path / "sst2")
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_merge(BASE_SPACE, fragment), sort_keys=False), encoding="utf-8")
    load_space(path)


# --- links ----------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (mkdocs) gives a heading."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[-\s]+", "-", text).strip("-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, flags=re.M)}


def test_the_links_of_the_readme_point_at_files_and_headings_that_exist() -> None:
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"^[a-z]+://", link)]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        target, _, anchor = link.partition("#")
        path = REPO / target if target else readme
        assert path.exists(), f"README.md links to {link}, but {path.relative_to(REPO)} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"README.md links to {link}, but {target or 'README.md'} has no #{anchor}"


def test_the_readme_is_short_and_starts_with_the_two_set_up_commands() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"
    first = next(b for b in BLOCKS if b.page.name == "README.md")
    assert first.text.split()[:2] == ["make", "demo"]
    assert "make test" in first.text


def test_every_page_is_in_the_mkdocs_nav() -> None:
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        assert f": {page.name}" in config, f"{page.name} is missing from the nav of mkdocs.yml"


def test_the_site_builds_with_strict_link_checks(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (requirements.lock pins it; make docs installs it)")
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "space-file.html").exists()


# --- runnable examples ----------------------------------------------------------------------------

TINY_TRAIN = {"method": "full", "epochs": 1, "batch_size": 8, "learning_rate": 1.0e-3}
TINY_SEARCH = {
    "seed": 0,
    "n_trials": 2,
    "pruner": {"type": "none"},
    "evaluation": {"mode": "dev"},
    "finalists": 1,
    "final_seeds": 1,
}


def _tiny(doc: dict[str, Any], model: Path) -> dict[str, Any]:
    """A space over the tiny BERT (classification head), trained one epoch, two trials, one final seed."""
    doc = dict(doc)
    doc["model"] = {"name": str(model), "max_length": 128}
    doc["train"] = dict(TINY_TRAIN)
    doc["search"] = dict(TINY_SEARCH)
    doc["baseline"] = {"epochs": 1, "learning_rate": 1.0e-3}
    prompt = dict(doc.get("prompt") or {})
    for key in ("calibration", "chat"):  # in-context settings: the tiny model trains
        prompt.pop(key, None)
    for key in ("instruction", "label_words"):  # generated candidates need an mlm or causal model
        value = prompt.get(key)
        if isinstance(value, dict):
            prompt[key] = {k: v for k, v in value.items() if k != "auto"} or None
        elif isinstance(value, list):
            prompt[key] = [v for v in value if not (isinstance(v, dict) and "auto" in v)]
    prompt = {k: v for k, v in prompt.items() if v is not None}
    doc["prompt"] = prompt
    return doc


def _is_space(doc: Any) -> bool:
    return isinstance(doc, dict) and {"name", "task", "prompt"} <= set(doc)


def _tiny_spaces(files: list[Path], model: Path, done: dict[Path, bytes]) -> None:
    for path in files:
        raw = path.read_bytes()
        if done.get(path) == raw:
            continue
        doc = yaml.safe_load(raw)
        if _is_space(doc):
            path.write_text(yaml.safe_dump(_tiny(doc, model), sort_keys=False), encoding="utf-8")
        done[path] = path.read_bytes()


def _commands(script: str) -> list[str]:
    """A shell block as its commands: one per line, backslash continuations joined, comments kept for bash."""
    commands: list[str] = []
    pending = ""
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _work(tmp_path: Path, model: Path) -> tuple[Path, dict[str, str], dict[Path, bytes]]:
    """A scratch folder like a clone: data/ (linked), search_spaces/ (tiny copies), promptsearch on the PATH."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").symlink_to(REPO / "data")
    shutil.copytree(REPO / "search_spaces", work / "search_spaces")
    done: dict[Path, bytes] = {}
    _tiny_spaces(sorted((work / "search_spaces").rglob("*.yaml")), model, done)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "promptsearch"
    shim.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -c "from promptsearch.cli import main; raise SystemExit(main())" "$@"\n',
        encoding="utf-8",
    )
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    return work, env, done


def _has_command(name: str) -> bool:
    from promptsearch.cli import app

    return any((c.name or getattr(c.callback, "__name__", "")) == name for c in app.registered_commands)


def _run_block(block: Block, tmp_path: Path, model: Path) -> None:
    if "promptsearch init" in block.text and not _has_command("init"):
        pytest.skip("promptsearch init is not in this build yet")
    work, env, done = _work(tmp_path, model)
    if block.lang == "python":
        script = work / "example.py"
        script.write_text(block.text, encoding="utf-8")
        steps = [f'"{sys.executable}" example.py']
    else:
        steps = _commands(block.text)
    for step in steps:
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", step],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"{block.id}: `{step}` exited {result.returncode}:\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, f"{block.id}: `{step}`:\n{result.stderr[-3000:]}"
        _tiny_spaces(sorted(work.glob("*.yaml")), model, done)  # a space the command wrote runs tiny too


@pytest.mark.slow  # each runs commands end to end, tiny as the models are
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_runnable_example(block: Block, tmp_path: Path, tiny_model: Path) -> None:
    _run_block(block, tmp_path, tiny_model)
