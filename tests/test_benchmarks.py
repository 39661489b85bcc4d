"""Each benchmark script runs once in its smoke mode (tiny models, seconds), so the scripts cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _smoke(script: str) -> list[str]:
    """Run ``benchmarks/<script> --smoke`` and return the rows of the table it prints."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--smoke", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]


@pytest.mark.slow
def test_holdout_benchmark_smoke(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "holdout.py"), "--smoke", "--threads", "1", "--seeds", "13",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| sst2 ")]
    assert [row.split("|")[2].strip() for row in rows] == ["new", "old"]
    record = json.loads((tmp_path / "holdout.json").read_text())
    new, old = record["runs"]["sst2/13/new"], record["runs"]["sst2/13/old"]
    assert new["verdict"] in ("better", "no clear difference", "worse") and old["race"] == []
    assert new["race"] and all(f["std_error"] is not None for f in new["race"])


@pytest.mark.slow
def test_heads_benchmark_smoke() -> None:
    rows = _smoke("heads.py")
    assert len(rows) == 7  # header + 6 cases
    assert any(line.startswith("| smollm2 zero-shot, chat | none | - | - |") for line in rows)


@pytest.mark.slow
def test_profile_trial_benchmark_smoke() -> None:
    rows = {cells[0]: cells for cells in ([c.strip() for c in r.split("|")[1:-1]] for r in _smoke("profile_trial.py"))}
    assert set(rows) == {"case", "2 fixed", "2 similar"}
    for case in ("2 fixed", "2 similar"):
        wall, forward = float(rows[case][1]), float(rows[case][2])
        assert 0 < forward <= wall  # the model's forward passes were found and are part of the trial


@pytest.mark.slow
def test_throughput_benchmark_smoke() -> None:
    cases = ["loo, 0 demonstrations", "loo, 2 per query (random)", "loo, 2 fixed", "final, 4 fixed"]
    tables: dict[str, list[list[str]]] = {}  # each case has a row in the timing table, then in the tokens table
    for row in _smoke("throughput.py"):
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        tables.setdefault(cells[0], []).append(cells)
    assert [name for name in tables if name in cases] == cases
    assert all(tables[name][0][8] == "yes" for name in cases)  # the same predictions on every path
    before, new = (float(x) for x in tables["final, 4 fixed"][1][5].split("/"))  # tokens read per prompt
    assert new < before / 2  # one demonstration set for all: its tokens are read once


@pytest.mark.slow
def test_throughput_search_benchmark_smoke(tmp_path: Path) -> None:
    """Whole in-context searches on the old and the new path, interleaved; --resume runs none again."""
    command = [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--search", "--smoke", "--threads", "1",
               "--out", str(tmp_path), "--resume"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("search: sampler seed 1, ") == 2  # old, then new
    record = json.loads((tmp_path / "throughput.json").read_text())
    runs = record["search"]["runs"]
    assert list(runs) == ["1/old", "1/new"]
    for run in runs.values():
        assert run["trials"] == 3 and run["trials_per_hour"] > 0 and 0 <= run["test_accuracy"] <= 1
        assert set(run["tokens_per_trial"]) == {"prefix", "query", "label_words"}
    assert "fixed" not in runs["1/old"]["selections"]  # the old space chose demonstrations per query
    assert "Trials per hour, new against old" in (tmp_path / "throughput.md").read_text()
    again = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0 and "search: sampler seed" not in again.stderr  # both runs kept
    assert json.loads((tmp_path / "throughput.json").read_text())["search"]["runs"] == runs


@pytest.mark.slow
def test_overhead_benchmark_smoke() -> None:
    rows = _smoke("overhead.py")
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["promptsearch", "bare", "trainer"]


@pytest.mark.slow
def test_folds_benchmark_smoke() -> None:
    rows = _smoke("folds.py")
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows[1:]]
    # every protocol with and without a race, for the task and the average over tasks
    assert {(c[0], c[1], c[2]) for c in cells} == {
        (task, protocol, n) for task in ("sst2", "all") for protocol in ("dev", "cv2", "cv4") for n in ("0", "1", "3")
    }
    runs = {(c[1], c[2]): float(c[-1]) for c in cells if c[0] == "all"}
    assert runs[("cv4", "0")] == 2 * runs[("cv2", "0")]  # twice the folds, twice the training runs
    assert runs[("cv4", "3")] > runs[("cv4", "1")] > runs[("cv4", "0")]  # a bigger race costs more


@pytest.mark.slow
def test_budget_benchmark_smoke() -> None:
    rows = _smoke("budget.py")
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows[1:]]
    # light's folds, finalists and final seeds; the 2 trials the smoke space writes win over light's 8
    assert [c[:5] for c in cells] == [["light", "2", "2", "1", "2"]]
    assert cells[0][5].split(" / ")[0] == "3"  # the baseline and both sampled trials complete
    assert float(cells[0][8]) > 0  # the wall time is recorded


@pytest.mark.slow
def test_pruning_benchmark_smoke() -> None:
    rows = _smoke("pruning.py")
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["median", "successive_halving", "hyperband", "none"]


@pytest.mark.slow
def test_candidates_benchmark_smoke() -> None:
    rows = _smoke("candidates.py")
    zero_shot = [row for row in rows if row.split("|")[2].strip() in ("none", "contextual", "mean")]
    assert [row.split("|")[2].strip() for row in zero_shot] == ["none", "contextual", "mean"] * 2
    assert [
        row.split("|")[1].strip() for row in rows if row.split("|")[1].strip() in ("generated", "hand-written")
    ] == [
        "generated",
        "hand-written",
    ]


@pytest.mark.slow
def test_precision_benchmark_smoke() -> None:
    rows = _smoke("precision.py")
    assert [tuple(c.strip() for c in row.split("|")[1:3]) for row in rows[1:]] == [
        ("minilm", "fp32"),
        ("minilm", "bf16"),
        ("smollm2", "fp32"),
        ("smollm2", "bf16"),
    ]


@pytest.mark.slow
def test_fewshot_benchmark_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "fewshot.py"), "--smoke", "--threads", "1",
         "--tasks", "sst2,mr,subj,rte,mrpc,agnews"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]  # it also exits 1 if any method failed
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| method | SST-2 | MR | SUBJ | RTE | MRPC | AG News | average |")
    methods = ["finetune", "hpo", "setfit", "smollm2 zero-shot", "promptsearch", "promptsearch embedding"]
    assert [row.split("|")[1].strip() for row in rows[1:7]] == methods
    assert all("n/a" not in row for row in rows[1:7])
    assert "## Targets (issue 15), over SST-2, MR, SUBJ: 3 runs" in done.stdout
    tasks = ["SST-2", "MR", "SUBJ", "RTE", "MRPC", "AG News"]
    per_task = [row.split("|")[1].strip() for row in rows[8:14]]  # after the targets table's header
    assert per_task == tasks
    embedding = done.stdout.split("## Embedding methods vs SetFit")[1]
    found = [line.split("|")[1].strip() for line in embedding.splitlines() if line.startswith("| ")]
    assert found[1:] == tasks  # after the header


@pytest.mark.slow
def test_gpu_search_benchmark_smoke() -> None:
    rows = _smoke("gpu_search.py")  # on the CPU in smoke mode
    assert rows[0].startswith("| device | trials | wall (s) | trials/hour | train TFLOP/s |")
    assert rows[1].startswith("| cpu | 3 |")  # 2 sampled trials + the baseline


def test_gpu_script_fails_clearly_without_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: gpu.sh would run the benchmarks")
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh")], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "gpu.sh: no CUDA device" in done.stderr
