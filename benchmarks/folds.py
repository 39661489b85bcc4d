"""How many folds and how many finalists: the trial-scoring protocol and the race, chosen by measurement.

For each task and LM-BFF split seed, the same configs of the task's shipped space (``search_spaces/fewshot``,
its MiniLM fine-tuning arm: the configs whose choice the number of folds and the race can change; an in-context
config's leave-one-out score does not depend on the folds, and the race rescores it identically) are drawn once
(a random sampler, fixed seed) and scored by every protocol with promptsearch's own code (``Protocol.score``,
``racing.race``, ``final.evaluate_config``), so the protocols are compared on the same configs:

- ``dev``: the old protocol: train on train, the best epoch on the 32 dev rows; the final model on train;
- ``cv2`` / ``cv4``: K-fold cross-validation over train ∪ dev (one epoch for all folds), the final model on all
  labelled rows at that epoch.

Each protocol's pick is then made without a race (the highest search value, the baseline included) and with a
race of the top ``F`` finalists and the baseline on fresh seeds (promptsearch's rule, ``racing.race``), for every
``F`` in ``--finalists``. Reported per protocol and ``F``, mean ± std over seeds: the pick's test score, the
selection regret (the best test score among the configs, each trained as that protocol's final model, minus
the pick's), how often the pick beat the baseline on test, and the cost in training runs.

    python benchmarks/folds.py --data-dir ../shared/data --tasks sst2,mr,subj --seeds 13,21,42 \\
        --configs 6 --max-test 500 --resume

``--smoke`` runs it on a tiny random BERT (seconds; for CI).
"""

from __future__ import annotations

import copy
import json
import math
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

from _common import bench_parser, quiet, record_header, tiny_bert, write_results  # noqa: E402
from fewshot import TASKS, _seed_data  # noqa: E402

PROTOCOLS: dict[str, dict[str, Any]] = {
    "dev": {"mode": "dev"},
    "cv2": {"mode": "cv", "folds": 2, "seeds": 1},
    "cv4": {"mode": "cv", "folds": 4, "seeds": 1},
}
TRIAL_SEED = 100_003  # a config's training seed: its index times this (as Objective.seed_for spreads trials)


def _space(task: str, seed_data: dict[str, Any], protocol: str, encoder: str | None, epochs: int | None) -> Any:
    """The task's shipped space, MiniLM's fine-tuning arm alone, scored by ``protocol``."""
    from promptsearch import Space

    raw = yaml.safe_load(TASKS[task].space.read_text(encoding="utf-8"))
    raw["name"] = f"folds-{task}"
    raw["task"].pop("few_shot", None)
    raw["task"].pop("data", None)
    raw["task"].update(copy.deepcopy(seed_data))
    minilm = next(m for m in raw["model"] if m["head"] == "classification")
    raw["train"] = minilm["train"]  # a single model: its train section is the space's
    minilm = {k: v for k, v in minilm.items() if k not in ("id", "train")}
    if encoder is not None:
        minilm["name"] = encoder
    if epochs is not None:
        raw["train"]["epochs"] = epochs
        raw["baseline"]["epochs"] = epochs
    raw["model"] = minilm
    for key in ("calibration", "chat"):  # the causal arm's settings
        raw["prompt"].pop(key, None)
    raw["baseline"] = {k: v for k, v in raw["baseline"].items() if k != "model"}
    raw["search"]["evaluation"] = PROTOCOLS[protocol]
    return Space.from_dict(raw, path=REPO / "search_spaces" / "fewshot" / "bench.yaml")


def _configs(space: Any, n: int, seed: int) -> list[Any]:
    """The baseline, then ``n`` configs drawn by a seeded random sampler (distinct)."""
    import optuna

    from promptsearch.space.sampling import baseline_config, sample_config

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out, seen = [baseline_config(space)], set()
    while len(out) < n + 1:
        config = sample_config(study.ask(), space)
        key = config.model_dump_json()
        if key not in seen:
            seen.add(key)
            out.append(config)
    return out


def _runner(space: Any, device: str) -> Any:
    from promptsearch.io.data import load_task_data
    from promptsearch.models.device import resolve_device
    from promptsearch.models.runtime import ModelRuntime
    from promptsearch.study.objective import TrialRunner

    data = load_task_data(space.spec.task, space.base_dir)
    runtime = ModelRuntime(space.spec.model, list(space.spec.task.labels), resolve_device(device))
    return TrialRunner(space=space, data=data, runtime=runtime)


def score_protocol(space: Any, configs: list[Any], finalists: int, device: str) -> dict[str, Any]:
    """Every config's search score, the top ``finalists`` and the baseline's race scores, every config's test."""
    from optuna.trial import TrialState

    from promptsearch.study.final import evaluate_config
    from promptsearch.study.finalists import RACE_SEED
    from promptsearch.study.protocol import Protocol
    from promptsearch.study.records import TrialRecord

    runner = _runner(space, device)
    protocol = Protocol(runner)
    rounds = 1 if protocol.evaluation.cross_validated else 2  # as race_finalists: mode dev races two seeds
    out: list[dict[str, Any]] = []
    for i, config in enumerate(configs):
        t0 = time.perf_counter()
        score = protocol.score(config, seed=TRIAL_SEED * (i + 1))
        searched = time.perf_counter() - t0
        record = TrialRecord(number=i, state=TrialState.COMPLETE, values=(score.value,), params={}, config=config,
                             best_epoch=score.epoch, is_baseline=i == 0)  # fmt: skip
        final, _, _ = evaluate_config(protocol, record, config, 1)
        out.append({"value": score.value, "epoch": score.epoch, "runs": score.runs, "test": final["test"]["mean"],
                    "search_seconds": round(searched, 2), "race": []})  # fmt: skip
    ranked = sorted(range(1, len(configs)), key=lambda i: (-out[i]["value"], i))[:finalists]
    for i in [*ranked, 0]:
        for round_ in range(rounds):  # the same seeds for every finalist of a round (race_finalists)
            score = protocol.score(configs[i], seed=RACE_SEED + 100 * round_)
            out[i]["race"].extend(score.fold_values)
    return {"configs": out, "rounds": rounds}


def picks(scored: dict[str, Any], finalists: list[int]) -> dict[str, int]:
    """The pick of each selection rule: ``F0`` the highest search value (the baseline included), ``F<n>`` the
    race of the top n and the baseline (promptsearch's rule)."""
    from promptsearch.study.racing import Candidate, Cost, race, select_finalists

    configs = scored["configs"]
    out = {"F0": max(range(len(configs)), key=lambda i: (configs[i]["value"], -i))}
    candidates = [
        Candidate(trial=i, cost=Cost(trains=True, prompt_tokens=0.0), search_value=c["value"], is_baseline=i == 0)
        for i, c in enumerate(configs)
    ]
    for n in finalists:
        if n == 0:
            continue
        chosen = select_finalists(candidates[1:], n, baseline=candidates[0])
        per_round = len(configs[0]["race"]) // scored["rounds"]

        def evaluate(candidate: Candidate, round_: int, per_round: int = per_round) -> list[float]:
            return configs[candidate.trial]["race"][round_ * per_round : (round_ + 1) * per_round]

        out[f"F{n}"] = race(chosen, evaluate, rounds=scored["rounds"]).winner.candidate.trial
    return out


def _ms(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.fmean(values):.1f} ± {scale * std:.1f}"


def summarise(runs: dict[str, Any], finalists: list[int]) -> list[dict[str, Any]]:
    rows = []
    tasks = sorted({r["task"] for r in runs.values()}, key=list(TASKS).index)
    for task in [*tasks, "all"]:
        for protocol in PROTOCOLS:
            for n in finalists:
                rule = f"F{n}"
                tests, regrets, better, costs = [], [], [], []
                for run in runs.values():
                    if (task != "all" and run["task"] != task) or protocol not in run["protocols"]:
                        continue
                    scored = run["protocols"][protocol]
                    configs = scored["configs"]
                    pick = scored["picks"][rule]
                    test = configs[pick]["test"]
                    tests.append(test)
                    regrets.append(max(c["test"] for c in configs) - test)
                    better.append(test > configs[0]["test"])
                    runs_per = sum(max(c["runs"], 1) for c in configs)
                    race = (
                        0 if n == 0 else (min(n, len(configs) - 1) + 1) * max(configs[0]["runs"], 1) * scored["rounds"]
                    )
                    costs.append(runs_per + race)
                if tests:
                    rows.append({"task": task, "protocol": protocol, "finalists": n, "n": len(tests),
                                 "test": _ms(tests), "regret": _ms(regrets),
                                 "median_regret": round(100 * statistics.median(regrets), 1),
                                 "beats_baseline": f"{sum(better)}/{len(better)}",
                                 "training_runs": round(statistics.fmean(costs), 1)})  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | protocol | finalists | runs | pick: test | regret | median regret | beats baseline | training runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['protocol']} | {r['finalists']} | {r['n']} | {r['test']} | {r['regret']} | "
            f"{r['median_regret']} | {r['beats_baseline']} | {r['training_runs']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="a tiny random BERT, one seed, 2 configs, 1 epoch", device="cpu")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    parser.add_argument("--tasks", default="sst2,mr,subj")
    parser.add_argument("--seeds", default="13,21,42")
    parser.add_argument("--configs", type=int, default=6, help="configs drawn per (task, seed), baseline not counted")
    parser.add_argument("--finalists", default="0,1,3", help="race sizes to compare (0: no race)")
    parser.add_argument("--max-test", type=int, default=500)
    parser.add_argument("--resume", action="store_true", help="keep the (task, seed) runs already in --out")
    parser.add_argument("--merge", type=Path, nargs="+", help="join these folders' folds.json into --out")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    quiet(args.threads)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; expected some of {list(TASKS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.data_dir = args.data_dir.resolve()  # the spaces' paths are relative to their own folder
    finalists = sorted({int(f) for f in args.finalists.split(",") if f} | {0})
    encoder, epochs, n_configs = None, None, args.configs
    tmp_root = tempfile.TemporaryDirectory()
    tmp = Path(tmp_root.name)
    if args.smoke:
        encoder, epochs, n_configs, seeds, tasks = tiny_bert(tmp), 1, 2, seeds[:1], tasks[:1]
        args.max_test = 32
    out_json = args.out / "folds.json"
    record = record_header("folds", threads=args.threads, device=args.device)
    record.update({"configs": n_configs, "finalists": finalists, "max_test": args.max_test, "runs": {}})
    if args.resume and out_json.is_file():
        record["runs"] = json.loads(out_json.read_text(encoding="utf-8")).get("runs", {})
    for seed in seeds:  # seed-major: every task has a seed before any has two (a long run may be cut)
        for task in tasks:
            key = f"{task}/{seed}"
            if key in record["runs"]:
                continue
            t0 = time.perf_counter()
            seed_data = _seed_data(TASKS[task], args.data_dir, seed, args.max_test or None, tmp)
            run: dict[str, Any] = {"task": task, "seed": seed, "protocols": {}}
            for protocol in PROTOCOLS:
                space = _space(task, seed_data, protocol, encoder, epochs)
                configs = _configs(space, n_configs, seed=seed)
                scored = score_protocol(space, configs, max(finalists), args.device)
                scored["picks"] = picks(scored, finalists)
                run["protocols"][protocol] = scored
                print(f"{key} {protocol}: picks {scored['picks']}, tests "
                      f"{[round(c['test'], 3) for c in scored['configs']]}", flush=True)  # fmt: skip
            run["seconds"] = round(time.perf_counter() - t0, 1)
            run["configs"] = [c.model_dump(mode="json") for c in configs]
            record["runs"][key] = run
            rows = summarise(record["runs"], finalists)
            record["summary"] = rows
            if not args.smoke:
                write_results(args.out, "folds", record, _markdown(record, rows), title="Folds and finalists")
    rows = summarise(record["runs"], finalists)
    print(table(rows))
    if args.smoke:
        assert all(not math.isnan(c["test"]) for r in record["runs"].values() for p in r["protocols"].values()
                   for c in p["configs"])  # fmt: skip
    return 0


def merge(folders: list[Path], out: Path) -> int:
    """Join the runs of several ``folds.json`` (one process per task and seed on a GPU machine) into ``out``."""
    record: dict[str, Any] | None = None
    for folder in folders:
        path = folder / "folds.json"
        if not path.is_file():
            print(f"--merge: {path} is missing; skipped", file=sys.stderr)
            continue
        part = json.loads(path.read_text(encoding="utf-8"))
        if record is None:
            record = part
        else:
            record["runs"].update(part["runs"])
    if record is None:
        print("--merge: no folds.json found", file=sys.stderr)
        return 2
    finalists = record["finalists"]
    record["runs"] = dict(sorted(record["runs"].items()))
    rows = summarise(record["runs"], finalists)
    record["summary"] = rows
    write_results(out, "folds", record, _markdown(record, rows), title="Folds and finalists")
    print(table(rows))
    return 0


def _markdown(record: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    seeds = sorted({r["seed"] for r in record["runs"].values()})
    return (
        f"Configs: the baseline and {record['configs']} drawn per (task, seed) from the MiniLM fine-tuning arm of "
        f"`search_spaces/fewshot/<task>.yaml` (random sampler, seeded by the split seed), each scored by every "
        f"protocol. Split seeds {seeds}; test: {record['max_test']} rows. Test accuracy ×100, mean ± std over "
        "(task, seed) runs. Regret: the best test score among the configs (each trained as that protocol's final "
        "model) minus the pick's. Training runs: per (task, seed), search and race together (in-context configs "
        "are not part of this comparison). Machine: "
        f"{record.get('machine', '')}.\n\n" + table(rows)
    )


if __name__ == "__main__":
    raise SystemExit(main())
