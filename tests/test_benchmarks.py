"""Each benchmark script runs once in its smoke mode (tiny models, seconds), so the scripts cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_heads_benchmark_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "heads.py"), "--smoke", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 7  # header + 6 cases
    assert any(line.startswith("| smollm2 zero-shot, chat | none | - | - |") for line in rows)
