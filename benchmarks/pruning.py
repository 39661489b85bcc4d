"""Pruning savings: the same space, sampler seed and trial count with each pruner and with none.

For each pruner (median, successive halving, Hyperband, each with promptsearch's default options,
and none) and each ``--seeds`` sampler seed, one search of ``--n-trials`` sampled trials (the
baseline not counted) runs to the end. Then the best sampled trial's config (the baseline does not
depend on the pruner, so it is left out) is trained again with the final-evaluation seed and scored
on test. Reported per pruner: epochs trained in total, wall time, best dev score and that test
score, and the savings against no pruning, averaged over the seeds.

    python benchmarks/pruning.py --space search_spaces/sst2.yaml --n-trials 8 --seeds 0 --out benchmarks/results

``--smoke`` runs it on a tiny random BERT with 3 trials (seconds; for CI).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import bench_parser, quiet, record_header, smoke_space, write_results  # noqa: E402

PRUNERS = ["median", "successive_halving", "hyperband", "none"]  # each with promptsearch's default options


def _run(space_file: Path, raw: dict[str, Any], pruner: str, seed: int, n_trials: int) -> dict:
    """One search with ``pruner`` and sampler ``seed``, in memory (nothing is written)."""
    import optuna

    from promptsearch import Space, Study

    raw = json.loads(json.dumps(raw))
    raw["name"] = f"{raw['name']}-{pruner}-{seed}"
    raw.setdefault("search", {})
    raw["search"].update({"pruner": {"type": pruner}, "seed": seed, "n_trials": n_trials, "final_seeds": 1})
    space = Space.from_dict(raw, path=space_file)  # relative data paths start at the real file
    t0 = time.perf_counter()
    study = Study(space, device="cpu").optimize()  # test: see _test_score
    seconds = time.perf_counter() - t0
    trials = [t for t in study.optuna_study.trials if not t.user_attrs.get("baseline")]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    best = max(complete, key=lambda t: float(t.value or 0.0)) if complete else None
    return {
        "seconds": round(seconds, 2),
        "epochs": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "best_dev": best.value if best else None,
        "best_trial": best.number if best else None,
        "best_params": dict(best.params) if best else None,
        "space": space,
        "best": best,
    }


def _test_score(run: dict[str, Any]) -> float | None:
    """Train the run's best sampled config again with the final-evaluation seed; its test score."""
    import warnings

    from promptsearch import ExperimentalWarning, evaluate
    from promptsearch.study.final import SEED_OFFSET
    from promptsearch.study.records import trial_config

    space, best = run.pop("space"), run.pop("best")
    if best is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return evaluate(space, trial_config(best), device="cpu", seed=SEED_OFFSET).test


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="a tiny random BERT, 3 trials of 3 epochs")
    parser.add_argument("--space", type=Path, default=REPO / "search_spaces" / "sst2.yaml")
    parser.add_argument("--n-trials", type=int, default=8, help="sampled trials per search")
    parser.add_argument("--seeds", default="0", help="comma-separated sampler seeds (the runs are averaged)")
    parser.add_argument("--pruners", default=",".join(PRUNERS), help="comma-separated pruners to compare (and none)")
    args = parser.parse_args(argv)

    from promptsearch.space.spec import PRUNER_DEFAULTS, PrunerSpec

    quiet(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    pruners = [p.strip() for p in args.pruners.split(",") if p.strip()]
    unknown = sorted(set(pruners) - set(PRUNERS))
    if unknown:
        parser.error(f"--pruners: unknown {unknown}; choose from {', '.join(PRUNERS)}")
    if "none" not in pruners:
        pruners.append("none")  # the reference of every saving
    raw = yaml.safe_load(args.space.read_text(encoding="utf-8"))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in pruners}
    with tempfile.TemporaryDirectory() as tmp_name:
        if args.smoke:
            raw = smoke_space(raw, Path(tmp_name), epochs=3)
            args.n_trials, seeds = 3, seeds[:1]
        for seed in seeds:
            for name in pruners:
                print(f"seed {seed}: {name} ...", file=sys.stderr, flush=True)
                run = _run(args.space.resolve(), raw, name, seed, args.n_trials)
                run["best_test"] = _test_score(run)
                results[name].append(run)
                print(f"  {json.dumps(run)}", file=sys.stderr, flush=True)

    def mean(name: str, key: str) -> float | None:
        values = [r[key] for r in results[name] if r[key] is not None]
        return statistics.fmean(values) if values else None

    none_epochs, none_seconds, none_test = mean("none", "epochs"), mean("none", "seconds"), mean("none", "best_test")
    rows = []
    for name in pruners:
        epochs, seconds, test = mean(name, "epochs"), mean(name, "seconds"), mean(name, "best_test")
        rows.append(
            {
                "pruner": name,
                "epochs": epochs,
                "epochs_vs_none": round(epochs / none_epochs, 3) if epochs is not None and none_epochs else None,
                "seconds": seconds,
                "seconds_vs_none": round(seconds / none_seconds, 3) if seconds is not None and none_seconds else None,
                "pruned": mean(name, "pruned"),
                "best_dev": mean(name, "best_dev"),
                "best_test": test,
                "test_vs_none_points": round(100 * (test - none_test), 2) if test is not None and none_test else None,
            }
        )

    def fmt(x: Any, scale: float = 1.0, digits: int = 2) -> str:
        return "-" if x is None else f"{x * scale:.{digits}f}"

    table = "| pruner | epochs trained | vs none | wall s | vs none | pruned trials | best dev | best test |"
    table += " test - none |\n"
    table += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for r in rows:
        table += (
            f"| {r['pruner']} | {fmt(r['epochs'], digits=1)} | {fmt(r['epochs_vs_none'])} | "
            f"{fmt(r['seconds'], digits=0)} | "
            f"{fmt(r['seconds_vs_none'])} | {fmt(r['pruned'], digits=1)} | {fmt(r['best_dev'], 100)} | "
            f"{fmt(r['best_test'], 100)} | {fmt(r['test_vs_none_points'])} |\n"
        )
    default = PrunerSpec().type
    options = ", ".join(f"{k} {v}" for k, v in PRUNER_DEFAULTS.get(default, {}).items())
    chosen = next((r for r in rows if r["pruner"] == default), None)
    table += (
        f"\n{args.space.name}, {args.n_trials} sampled trials (+ baseline) per search, sampler seeds {seeds} "
        f"(means over them), CPU, {args.threads} threads. Best dev and best test are those of the best sampled "
        "trial (the baseline, the same with every pruner, is left out); its test score comes from training its "
        "config again with the final-evaluation seed. Options of the pruners: promptsearch's defaults "
        f"(successive halving and Hyperband: {options or 'Optuna defaults'}; median: Optuna defaults).\n"
    )
    if chosen is not None:
        table += (
            f"\nDefault pruner ({default}) against none: {fmt(chosen['epochs_vs_none'])} x the epochs, "
            f"{fmt(chosen['seconds_vs_none'])} x the wall time, best test {fmt(chosen['test_vs_none_points'])} "
            "points.\n"
        )
    print(table)
    if not args.smoke:
        record = {
            **record_header("pruning", threads=args.threads, device="cpu"),
            "budget": {"space": str(args.space), "n_trials": args.n_trials, "seeds": seeds, "pruners": pruners},
            "summary": rows,
            "runs": results,
        }
        write_results(args.out, "pruning", record, table, title="Pruning savings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
