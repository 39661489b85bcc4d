"""Cost of the budget presets: one run of a shipped space per preset (search.budget), timed end to end.

For each preset of ``--budgets``, the space file (default ``search_spaces/sst2.yaml``) loses the keys a preset
sets (``search.n_trials``, ``search.evaluation.folds``, ``search.finalists``, ``search.final_seeds``), so that
the preset decides them, and runs as ``promptsearch run SPACE --budget NAME`` runs it: the search, the finalists'
race, the final evaluation on test, the report and the export, in a fresh run folder (deleted afterwards).
Reported per preset: what it set, the trials (complete, pruned, failed), the wall seconds of the search (trials
and race), of the final evaluation and of the whole run, and the test score of the chosen config and of the
baseline (means over the final seeds).

    python benchmarks/budget.py --budgets light,medium,heavy --threads 2 --out benchmarks/results --resume
    python benchmarks/budget.py --device cuda --out benchmarks/results      # one GPU: budget-cuda.json/.md

The results are written after every preset; ``--resume`` keeps the presets an earlier run of the same space,
device and threads already measured, and runs the rest.

``--smoke`` runs the light preset with 2 sampled trials (written in the space: a written key wins) on a tiny
random BERT, 1 epoch, test capped at 32 rows (seconds; for CI). It writes nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import bench_parser, cap_lines, quiet, record_header, smoke_space, write_results  # noqa: E402

SMOKE_TRIALS = 2
SMOKE_TEST_ROWS = 32


def _preset_space(raw: dict[str, Any], budget: str) -> dict[str, Any]:
    """``raw`` without the keys a preset sets, and with ``search.budget: budget``."""
    written = raw.get("search") or {}
    search = {k: v for k, v in written.items() if k not in ("n_trials", "finalists", "final_seeds", "evaluation")}
    evaluation = {k: v for k, v in (written.get("evaluation") or {}).items() if k != "folds"}
    if evaluation.get("mode") == "dev":
        raise SystemExit("the space scores trials on the dev split (mode: dev), where folds do not apply; use cv")
    if evaluation:
        search["evaluation"] = evaluation
    search["budget"] = budget
    return {**raw, "name": f"{raw['name']}-{budget}", "search": search}


def _smoke(raw: dict[str, Any], space_file: Path, tmp: Path) -> dict[str, Any]:
    raw = smoke_space(raw, tmp, epochs=1)
    files = raw["task"]["data"].setdefault("files", {})
    test = files.get("test")
    if test is not None:
        source = (space_file.parent / test).resolve()
        files["test"] = str(cap_lines(source, SMOKE_TEST_ROWS, tmp / "test.jsonl"))
    return raw


def _run(raw: dict[str, Any], space_file: Path, out: Path, device: str) -> dict[str, Any]:
    """One run of the preset's space, as ``promptsearch run`` runs it; its timings and scores."""
    from promptsearch import Space
    from promptsearch.api import search

    space = Space.from_dict(raw, path=space_file)  # relative data paths start at the real file
    searched = space.spec.search
    t0 = time.perf_counter()
    result = search(space, out=out, device=device)
    wall = time.perf_counter() - t0
    report = result.report
    best, base = report.best, report.baseline
    return {
        "budget": searched.budget,
        "n_trials": searched.n_trials,
        "folds": searched.evaluation.folds,
        "finalists": searched.finalists,
        "final_seeds": searched.final_seeds,
        "trials": report.trials.model_dump(),
        "seconds_search": report.seconds.search,
        "seconds_final": report.seconds.final_evaluation,
        "seconds_wall": round(wall, 2),
        "chosen_trial": best.trial if best else None,
        "chosen_is_baseline": bool(best and best.config.baseline),
        "chosen_test": best.test.mean if best and best.test else None,
        "baseline_test": base.test.mean if base and base.test else None,
        "verdict": report.verdict.label if report.verdict else None,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    def fmt(x: Any, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if x is None else f"{x * scale:.{digits}f}"

    lines = [
        "| budget | trials | folds | finalists | final seeds | trials complete / pruned / failed | search s | "
        "final s | wall s | chosen test | baseline test | verdict |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        t = r["trials"]
        lines.append(
            f"| {r['budget']} | {r['n_trials']} | {r['folds']} | {r['finalists']} | {r['final_seeds']} | "
            f"{t['complete']} / {t['pruned']} / {t['fail']} | {fmt(r['seconds_search'], digits=0)} | "
            f"{fmt(r['seconds_final'], digits=0)} | {fmt(r['seconds_wall'], digits=0)} | "
            f"{fmt(r['chosen_test'], 100)} | {fmt(r['baseline_test'], 100)} | {r['verdict'] or '-'} |"
        )
    return "\n".join(lines) + "\n"


def _earlier(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of an earlier results file with the same settings (none if they differ)."""
    if not path.is_file():
        return []
    import json

    record = json.loads(path.read_text(encoding="utf-8"))
    return list(record.get("runs", [])) if record.get("settings") == settings else []


def _markdown(args: Any, rows: list[dict[str, Any]], device: str) -> str:
    return _table(rows) + (
        f"\n{args.space.name}, each preset's keys unset in the file so that the preset decides them; device "
        f"{device}, {args.threads} CPU threads. Wall s: the whole run (search, race, final evaluation on test, "
        "report and export); search s: the trials and the race.\n"
    )


def _write(args: Any, rows: list[dict[str, Any]], settings: dict[str, Any], device: str, kind: str) -> None:
    from promptsearch.space.budget import BUDGETS

    record = {
        **record_header("budget", threads=args.threads, device=device),
        "settings": settings,
        "space": str(args.space),
        "presets": {r["budget"]: vars(BUDGETS[r["budget"]]) for r in rows},
        "runs": rows,
    }
    write_results(args.out, f"budget-{kind}", record, _markdown(args, rows, device),
                  title=f"Cost of the budget presets ({kind})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(
        __doc__, smoke=f"the light preset, {SMOKE_TRIALS} trials, a tiny random BERT, 1 epoch", device="cpu"
    )
    parser.add_argument("--space", type=Path, default=REPO / "search_spaces" / "sst2.yaml")
    parser.add_argument("--budgets", default="light,medium,heavy", help="comma-separated presets to run")
    parser.add_argument("--resume", action="store_true", help="keep the presets already in --out, run the rest")
    args = parser.parse_args(argv)

    from promptsearch.models.device import resolve_device
    from promptsearch.space.budget import BUDGETS

    quiet(args.threads)
    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    unknown = sorted(set(budgets) - set(BUDGETS))
    if unknown or not budgets:
        parser.error(f"--budgets: unknown {unknown}; choose from {', '.join(BUDGETS)}")
    device = str(resolve_device(args.device))
    space_file = args.space.resolve()
    raw = yaml.safe_load(space_file.read_text(encoding="utf-8"))
    kind = device.split(":")[0]
    settings = {"space": os.path.relpath(space_file, REPO), "device": device, "threads": args.threads}
    rows = [] if args.smoke or not args.resume else _earlier(args.out / f"budget-{kind}.json", settings)
    done = {r["budget"] for r in rows}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.smoke:
            raw, budgets = _smoke(raw, space_file, tmp), ["light"]
        for budget in budgets:
            if budget in done:
                print(f"{budget}: kept from {args.out / f'budget-{kind}.json'}", file=sys.stderr, flush=True)
                continue
            space = _preset_space(raw, budget)
            if args.smoke:
                space["search"]["n_trials"] = SMOKE_TRIALS
            print(f"{budget} ...", file=sys.stderr, flush=True)
            row = _run(space, space_file, tmp / budget, device)
            print(f"  {row}", file=sys.stderr, flush=True)
            rows.append(row)
            if not args.smoke:  # after every preset, so that --resume keeps it
                _write(args, rows, settings, device, kind)
    print(_markdown(args, rows, device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
