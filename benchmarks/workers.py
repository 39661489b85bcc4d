"""Trials per hour with 1 and with N worker processes on the same machine, side by side, and with the
workers' OpenMP threads waiting passively (what ``--workers`` sets) or spinning (OpenMP's default, ``ACTIVE``).

    python benchmarks/workers.py --space search_spaces/sst2.yaml --n-trials 6 --workers 1 2 --omp PASSIVE ACTIVE
    python benchmarks/workers.py --space search_spaces/sst2.yaml --budget light --n-trials 4 --omp PASSIVE ACTIVE

Each run is a fresh study (in a temporary folder) with no final evaluation; the figure is finished
trials (baseline included) per hour of wall time, model loading and process start included.
Writes ``workers.json`` and ``workers.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from promptsearch.api import search
from promptsearch.versions import versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", action="append", required=True, help="space file (repeatable)")
    parser.add_argument("--n-trials", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--omp", nargs="+", default=["PASSIVE"], help="OMP_WAIT_POLICY values to compare")
    parser.add_argument("--budget", default=None, help="search.budget for every run (light, medium, heavy)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows = []
    for space, workers, omp in ((s, w, o) for s in args.space for w in args.workers for o in args.omp):
        if workers == 1 and omp != args.omp[0]:
            continue  # one process: no worker settings apply
        os.environ["OMP_WAIT_POLICY"] = omp  # the workers keep what the environment says
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = search(space, n_trials=args.n_trials, out=Path(tmp) / "run", final_seeds=0,
                            device=args.device, workers=workers, budget=args.budget)  # fmt: skip
            seconds = time.perf_counter() - t0
        done = result.report.trials
        finished = done.complete + done.pruned + done.fail
        rows.append({"space": space, "workers": workers, "omp": omp, "trials": finished, "seconds": round(seconds, 1),
                     "trials_per_hour": round(3600 * finished / seconds, 1), "pruned": done.pruned})  # fmt: skip
        print(rows[-1], flush=True)
    outcome = {"rows": rows, "n_trials": args.n_trials, "budget": args.budget, "machine": platform.platform(),
               "cpu_count": os.cpu_count(),
               "versions": versions(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "workers.json").write_text(json.dumps(outcome, indent=2) + "\n")
    lines = ["| space | workers | OMP_WAIT_POLICY | trials | seconds | trials/hour |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['space']} | {r['workers']} | {r['omp'] if r['workers'] > 1 else '-'} | {r['trials']} "
                     f"| {r['seconds']} | {r['trials_per_hour']} |")  # fmt: skip
    (args.out / "workers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
