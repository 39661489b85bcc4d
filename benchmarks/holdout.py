"""Does the search's pick hold on test? A shipped space over several LM-BFF split seeds, two protocols side by side.

For each task and split seed the space (``--space``, default the demo's) runs twice on the same data, in memory:

- ``new``: the space as shipped: cross-validated trial scores (leave-one-out in context), the finalists'
  race, the final model on all labelled rows;
- ``old``: ``search.evaluation: {mode: dev}`` and ``search.finalists: 0``: one dev split, the best trial by its
  dev score (promptsearch before this change).

Each reports the chosen trial's test score, the baseline's (the same plain fine-tuning config, retrained the
same way), the paired-bootstrap verdict, and the wall time; the table gives mean ± std over seeds and how
often the pick beat its own baseline (verdict ``better``).

    python benchmarks/holdout.py --data-dir ../shared/data --tasks sst2 --seeds 13,21,42 --max-test 500 --resume

``--smoke`` runs the protocol on tiny random models (seconds; for CI).
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import bench_parser, cap_lines, quiet, record_header, tiny_bert, tiny_causal, write_results  # noqa: E402

KSHOT = {"sst2": "SST-2", "mr": "mr", "subj": "subj", "rte": "RTE", "mrpc": "MRPC", "cola": "CoLA"}
PROTOCOLS = {
    "new": {},
    "old": {"evaluation": {"mode": "dev"}, "finalists": 0},
}


def _space(raw: dict[str, Any], protocol: str, data_dir: Path, test: Path) -> dict[str, Any]:
    space = copy.deepcopy(raw)
    space["task"]["data"] = {"dir": str(data_dir), "files": {"test": str(test)}}
    search = space.setdefault("search", {})
    search.update(PROTOCOLS[protocol])
    return space


def run_one(raw: dict[str, Any], protocol: str, data_dir: Path, test: Path) -> dict[str, Any]:
    from promptsearch import ExperimentalWarning, Space, Study

    t0 = time.perf_counter()
    space = Space.from_dict(_space(raw, protocol, data_dir, test), path=REPO / "search_spaces" / "bench.yaml")
    study = Study(space, device="cpu").optimize()
    final = study.final_evaluation() or {}
    chosen = study.best_trial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        race = [f.model_dump() for f in study.finalists]
    return {
        "chosen": chosen.number if chosen else None,
        "chosen_model": chosen.config.model if chosen and chosen.config else None,
        "chosen_trains": chosen.config.train.trains if chosen and chosen.config else None,
        "search_value": chosen.dev if chosen else None,
        "test": final["best"]["test"]["mean"],
        "baseline_test": final["baseline"]["test"]["mean"],
        "verdict": final.get("verdict", {}).get("label"),
        "delta_ci": [final.get("verdict", {}).get("ci_low"), final.get("verdict", {}).get("ci_high")],
        "race": race,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _ms(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def table(record: dict[str, Any]) -> str:
    lines = [
        f"Space `{record['space']}`; LM-BFF 16-shot split seeds {record['seeds']}; test: {record['max_test']} rows "
        "(a seeded sample of the task's LM-BFF test file). Test accuracy ×100, mean ± std over the seeds run; "
        "'better' counts the runs whose paired-bootstrap verdict (chosen vs its own baseline) was better.",
        "",
        "| task | protocol | runs | chosen: test | baseline: test | better | chose in context | seconds / run |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task in record["tasks"]:
        for protocol in PROTOCOLS:
            runs = [v for k, v in record["runs"].items() if k.startswith(f"{task}/") and k.endswith(f"/{protocol}")]
            if not runs:
                continue
            better = sum(r["verdict"] == "better" for r in runs)
            context = sum(r["chosen_trains"] is False for r in runs)
            secs = statistics.fmean(r["seconds"] for r in runs)
            lines.append(
                f"| {task} | {protocol} | {len(runs)} | {_ms([r['test'] for r in runs])} | "
                f"{_ms([r['baseline_test'] for r in runs])} | {better}/{len(runs)} | {context}/{len(runs)} | "
                f"{secs:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="tiny random models, one seed, 2 trials, 16 test rows")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--space", type=Path, default=REPO / "search_spaces" / "sst2-demo.yaml")
    parser.add_argument("--tasks", default="sst2")
    parser.add_argument("--seeds", default="13,21,42,87,100")
    parser.add_argument("--protocols", default="new,old")
    parser.add_argument("--max-test", type=int, default=500)
    parser.add_argument("--resume", action="store_true", help="keep the runs of an earlier holdout.json")
    args = parser.parse_args(argv)
    quiet(args.threads)
    args.data_dir = args.data_dir.resolve()
    tasks, seeds = args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    protocols = args.protocols.split(",")
    raw = yaml.safe_load(args.space.read_text(encoding="utf-8"))
    name = "holdout"
    record = record_header(name, threads=args.threads, device="cpu")
    record.update(space=str(args.space.relative_to(REPO)), tasks=tasks, seeds=seeds, max_test=args.max_test, runs={})
    path = args.out / f"{name}.json"
    if args.resume and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if (old.get("space"), old.get("max_test")) == (record["space"], args.max_test):
            record["runs"] = old.get("runs", {})
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.smoke:
            models = {"smollm2": tiny_causal(tmp), "default": tiny_bert(tmp)}
            for model in raw["model"]:
                model["name"] = models.get(model["name"], model["name"])
                model.get("train", {}).update({"epochs": 1} if "epochs" in model.get("train", {}) else {})
            raw["search"]["n_trials"] = 2
            raw["baseline"]["epochs"] = 1
            args.max_test = record["max_test"] = 16
            args.data_dir = REPO / "data"
        for task in tasks:
            for seed in seeds:
                if args.smoke:
                    data_dir, source = REPO / "data" / task / "16-13", REPO / "data" / task / "test-500.jsonl"
                else:
                    data_dir = args.data_dir / "k-shot" / KSHOT[task] / f"16-{seed}"
                    source = args.data_dir / "k-shot" / KSHOT[task] / "test.jsonl"
                test = cap_lines(source, args.max_test, tmp / f"{task}-test.jsonl")
                for protocol in protocols:
                    key = f"{task}/{seed}/{protocol}"
                    if key in record["runs"]:
                        continue
                    record["runs"][key] = run_one(raw, protocol, data_dir, test)
                    r = record["runs"][key]
                    print(f"{key}: chosen {r['test']:.3f} vs baseline {r['baseline_test']:.3f} ({r['verdict']}), "
                          f"{r['seconds']:.0f} s", flush=True)  # fmt: skip
                    write_results(args.out, name, record, table(record), title="Does the pick hold on test?")
    print(table(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
