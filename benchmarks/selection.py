"""How to score an in-context trial: one dev split (32 rows) against leave-one-out over train ∪ dev (64 rows).

For each task and LM-BFF split seed, the same ``--configs`` in-context prompts (sampled once, with a fixed seed,
from a SmolLM2 causal-head space: instruction, template, label words, number and choice of demonstrations,
calibration) are scored three ways:

- ``dev32``: the old protocol: demonstrations from the 32 train rows, scored on the 32 dev rows;
- ``loo64``: every labelled row (train ∪ dev, 64 rows) scored, its demonstrations drawn from the other 63;
- ``test``: the test rows (capped by ``--max-test``), demonstrations drawn from all 64 labelled rows, as the final
  model would use them.

For each criterion the benchmark picks the config with the highest score (ties to fewer demonstrations) and
reports the pick's test score, the **selection regret** (best test score among the configs minus the pick's) and
the Spearman correlation between the criterion and test over the configs, each as mean ± std over seeds.

    python benchmarks/selection.py --data-dir ../shared/data --tasks sst2,mr,subj --seeds 13,21,42,87,100 \\
        --configs 12 --max-test 300 --out benchmarks/results --resume

``--smoke`` runs on a tiny random causal model built offline (seconds; for CI).
"""

from __future__ import annotations

import argparse
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

from _common import cap_lines, quiet, record_header  # noqa: E402
from fewshot import TASKS  # noqa: E402

CRITERIA = ("dev32", "loo64")


def _space(task: str, data_dir: Path, test: Path, model: str) -> dict[str, Any]:
    base = yaml.safe_load(TASKS[task].space.read_text(encoding="utf-8"))["task"]
    c = TASKS[task].causal
    return {
        "name": f"selection-{task}",
        "task": {
            **{k: v for k, v in base.items() if k not in ("data", "few_shot")},
            "data": {"dir": str(data_dir), "files": {"test": str(test)}},
        },
        "model": {"name": model, "head": "causal", "max_length": 512, "multi_token": "sum"},
        "prompt": {
            "instruction": {"none": "", "task": c.instruction},
            "template": c.templates,
            "label_words": c.words,
            "demonstrations": {"count": [0, 2, 4], "selection": ["balanced", "similar"], "separator": "\n\n"},
            "calibration": ["none", "mean"],
            "chat": False,
        },
        "train": {"method": "none"},
        "search": {"seed": 0, "pruner": {"type": "none"}},
    }


def _configs(space: Any, n: int) -> list[Any]:
    """``n`` distinct in-context configs drawn at random (seed 0), the same for every task seed."""
    import optuna

    from promptsearch.space.sampling import sample_config

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out: list[Any] = []
    seen: set[str] = set()
    for _ in range(20 * n):
        trial = study.ask()
        config = sample_config(trial, space)
        study.tell(trial, 0.0)
        key = config.prompt.model_dump_json()
        if key not in seen:
            seen.add(key)
            out.append(config)
        if len(out) == n:
            break
    return out


def _spearman(x: list[float], y: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def run_split(task: str, seed: int, args: argparse.Namespace, tmp: Path, model: str) -> dict[str, Any]:
    from promptsearch.io.data import TaskData, load_task_data
    from promptsearch.models.device import resolve_device
    from promptsearch.models.runtime import ModelRuntime
    from promptsearch.space.search_space import parse_space
    from promptsearch.study.objective import TrialRunner

    kshot = TASKS[task].kshot
    data_dir = args.data_dir / "k-shot" / kshot / f"16-{seed}"
    test = cap_lines(args.data_dir / "k-shot" / kshot / "test.jsonl", args.max_test, tmp / f"{task}-test.jsonl")
    raw = _space(task, data_dir, test, model)
    space = parse_space(yaml.safe_dump(raw, allow_unicode=True), path=REPO / "search_spaces" / "bench.yaml")
    data = load_task_data(space.spec.task, space.base_dir)
    labelled = [*data.train, *data.dev]
    runtime = ModelRuntime(space.spec.model, space.spec.task.labels, resolve_device("cpu"))
    dev_runner = TrialRunner(space=space, data=data, runtime=runtime)
    # leave-one-out: the pool is every labelled row; a selector never shows a query its own row
    loo = TaskData(train=labelled, dev=labelled, _test=data.test)
    loo_runner = TrialRunner(space=space, data=loo, runtime=runtime)
    rows = []
    t0 = time.perf_counter()
    for config in _configs(space, args.configs):
        dev32, _ = dev_runner.fit(config, seed=0)
        loo64, _ = loo_runner.fit(config, seed=0)
        rows.append(
            {
                "params": json.loads(config.prompt.model_dump_json()),
                "demos": config.prompt.demonstrations.count,
                "dev32": dev32.best_score,
                "loo64": loo64.best_score,
                "test": loo_runner.evaluate(config, "test"),
            }
        )
    outcome: dict[str, Any] = {"configs": rows, "seconds": round(time.perf_counter() - t0, 1)}
    best_test = max(r["test"] for r in rows)
    for criterion in CRITERIA:
        pick = max(rows, key=lambda r, c=criterion: (r[c], -r["demos"]))
        outcome[criterion] = {
            "test": pick["test"],
            "regret": best_test - pick["test"],
            "spearman": _spearman([r[criterion] for r in rows], [r["test"] for r in rows]),
        }
    return outcome


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def write_table(record: dict[str, Any], out: Path) -> None:
    lines = [
        "# Scoring in-context trials: dev split (32 rows) against leave-one-out over train ∪ dev (64 rows)",
        "",
        f"SmolLM2-135M-Instruct, causal head, {record['configs']} in-context configs per split (the same for "
        f"every seed), test capped at {record['max_test']} rows; seeds {record['seeds']}. Test %, regret in "
        "points (best test among the configs minus the pick's), Spearman ρ of the criterion with test; "
        "mean ± std over seeds.",
        "",
        "| task | criterion | pick's test | regret | Spearman ρ | runs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task in record["tasks"]:
        runs = [v for k, v in record["runs"].items() if k.startswith(f"{task}/")]
        for criterion in CRITERIA:
            rhos = [r[criterion]["spearman"] for r in runs if r[criterion]["spearman"] is not None]
            rho = f"{statistics.fmean(rhos):.2f}" if rhos else "–"
            lines.append(
                f"| {task} | {criterion} | {_mean_std([r[criterion]['test'] for r in runs])} | "
                f"{_mean_std([r[criterion]['regret'] for r in runs])} | {rho} | {len(runs)} |"
            )
    (out / "selection.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--tasks", default="sst2,mr,subj")
    parser.add_argument("--seeds", default="13,21,42,87,100")
    parser.add_argument("--configs", type=int, default=12)
    parser.add_argument("--max-test", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--resume", action="store_true", help="keep the runs of an earlier selection.json")
    parser.add_argument("--smoke", action="store_true", help="a tiny random causal model, 2 configs, 8 test rows")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    if args.smoke:
        args.configs, args.max_test = 2, 8
    quiet(args.threads)
    tasks, seeds = args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "selection.json"
    record = record_header("selection", threads=args.threads, device="cpu")
    record.update(tasks=tasks, seeds=seeds, configs=args.configs, max_test=args.max_test, runs={})
    if args.resume and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if (old.get("configs"), old.get("max_test")) == (args.configs, args.max_test):
            record["runs"] = old.get("runs", {})
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model = "smollm2"
        if args.smoke:
            sys.path.insert(0, str(REPO / "tests"))
            from tiny import build_tiny_causal

            model = str(build_tiny_causal(tmp / "lm"))
        for task in tasks:
            for seed in seeds:
                key = f"{task}/{seed}"
                if key in record["runs"]:
                    continue
                record["runs"][key] = run_split(task, seed, args, tmp, model)
                print(f"{key}: " + ", ".join(f"{c} -> {record['runs'][key][c]['test']:.3f}" for c in CRITERIA))
                path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
                write_table(record, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
