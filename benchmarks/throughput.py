"""In-context scoring throughput: every prompt read whole (the old path) vs a shared prefix read once (the new).

Both paths run in one process on the same model, alternating within each repeat, and score the same encoded
prompts (``predict_scores(..., reuse_prefix=False)`` is the old path, the default is the new one):

- ``loo``: an in-context trial's scoring of the SST-2 16-shot labelled rows (train and dev, 64 rows) as the
  protocol does it: fold by fold (4 stratified folds), each row with demonstrations from all the other rows
  (leave-one-out), with 0 and 2 demonstrations, chosen per query (``random``) or one set for all (``fixed``).
- ``final``: the final evaluation of one SmolLM2 config on the SST-2 test rows (LM-BFF's 872, or ``--max-test``)
  with 4 demonstrations from the labelled rows, ``selection: fixed``: the time and whether the predictions are
  identical.

For each case: seconds (min / median / max over ``--repeats``), the speed-up of the medians, the largest
difference of a class score between the paths, and the tokens the model reads per prompt, broken down into the
shared prefix (read once per scoring call on the new path: its share per prompt), the query's own tokens and the
label words fed after the prompt (a single-token word adds none). Tokenizing is not timed (a trial tokenizes
once per prompt config, on both paths).

    nice python benchmarks/throughput.py --data-dir ../shared/data --repeats 3 --out benchmarks/results --resume

``--smoke`` runs every case on a tiny random Llama built offline (seconds; for CI).

``--search`` measures whole searches instead: the in-context SmolLM2 search on SST-2 16-shot
(``search_spaces/sst2-smollm2.yaml`` with ``train.method: none``), ``--trials`` sampled trials per run, on two paths
with the same search seed (folds, demonstration sets) and sampler seed, for each of ``--seeds`` sampler seeds,
interleaved (seed 1 old, seed 1 new, seed 2 old, ...) so that the machine's load hits both alike:

- ``old``: the space as it was before (demonstrations chosen per query: random, balanced or similar), every prompt
  read whole (:func:`promptsearch.models.trainer.prompts_read_whole`);
- ``new``: the shipped space (``selection: [fixed, similar]`` with searched sets) on the default path (the prefix
  that a scoring call's prompts share read once).

Both runs skip what is not the trials' own work and is the same on both paths: the baseline trains 0 epochs and
no finalists are raced. Per run: trials per hour (the trials' own seconds, from Optuna's start and end times; the
model load and the final evaluation are not counted), the chosen config's test accuracy (``--max-test`` rows of the
space's test file, ``selection`` of the config as chosen), and the tokens a trial reads, broken down into the shared
prefix, the queries' own tokens and the label words fed after them (over the folds it scored).

    nice -n 10 python benchmarks/throughput.py --search --trials 12 --seeds 1,2,3 --max-test 500 --resume
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import bench_parser, cap_lines, quiet, record_header, tiny_causal, write_results  # noqa: E402

TITLE = "Throughput: a shared prompt prefix read once"
LABELS = ["negative", "positive"]
INSTRUCTION = "Classify the sentiment of the review as positive or negative."  # as in search_spaces/sst2-smollm2
TEMPLATE = "Review: {text}\nSentiment: {label}"
WORDS = {"negative": "negative", "positive": "positive"}
# name, demonstrations, selection, scored rows
CASES = [
    ("loo, 0 demonstrations", 0, "random", "loo"),
    ("loo, 2 per query (random)", 2, "random", "loo"),
    ("loo, 2 fixed", 2, "fixed", "loo"),
    ("final, 4 fixed", 4, "fixed", "final"),
]


def read_rows(path: Path, limit: int | None = None) -> list[Any]:
    from promptsearch.io.data import Example

    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    return [Example(fields={"text": r["text"]}, label=r["label"], row=i) for i, r in enumerate(map(json.loads, lines))]


def sst2_files(data_dir: Path) -> tuple[Path, Path]:
    """The 16-shot folder (seed 13) and the test file: LM-BFF's 872 rows where ``data_dir`` has them."""
    for shots, test in (
        (data_dir / "k-shot" / "SST-2" / "16-13", data_dir / "k-shot" / "SST-2" / "test.jsonl"),
        (data_dir / "sst2" / "16-13", data_dir / "sst2" / "test.jsonl"),  # the repository's copy
    ):
        if shots.is_dir() and test.is_file():
            return shots, test
    raise SystemExit(f"no SST-2 16-shot folder and test file under {data_dir}")


def token_breakdown(encoded: Any) -> dict[str, float]:
    """Tokens read per prompt of one scoring call on each path: the shared prefix (every row that has it reads it
    on the old path, the call reads it once on the new), the query's own tokens, the label words fed after it."""
    from promptsearch.models.features import shared_prefix

    found = shared_prefix(encoded.input_ids)
    length = len(found.ids) if found is not None else 0
    members = len(found.rows) if found is not None else 0
    n = len(encoded)
    own = sum(encoded.lengths) - length * members
    label = len(encoded.tokens.ids) * (encoded.tokens.longest - 1) if encoded.tokens is not None else 0
    return {
        "prefix_old": length * members / n,
        "prefix_new": length / n,
        "query": own / n,
        "label_words": float(label),
        "total_old": (length * members + own) / n + label,
        "total_new": (length + own) / n + label,
    }


PATHS = ("before", "buckets", "new")


def score_before(runtime: Any, encoded: Any) -> Any:
    """The path before this work: batches of 64 rows in length order, every prompt read whole."""
    import numpy as np
    import torch

    from promptsearch.models.device import autocast
    from promptsearch.models.trainer import EVAL_BATCH_SIZE, batches, scores

    runtime.model.eval()
    out = np.zeros((len(encoded), len(encoded.tokens.ids)), dtype=np.float32)
    pad_id = int(runtime.tokenizer.pad_token_id)
    with torch.inference_mode(), autocast(runtime.device, runtime.precision):
        for idx in batches(encoded.lengths, EVAL_BATCH_SIZE, None):
            out[idx] = scores(runtime.model, encoded, idx, runtime.device, pad_id).float().cpu().numpy()
    return out


def fed_tokens(encoded: Any, path: str, device: Any) -> int:
    """Prompt tokens the model is fed on ``path``, padding included (the label words' pass is the same on all)."""
    from promptsearch.models.features import shared_prefix
    from promptsearch.models.trainer import EVAL_BATCH_SIZE, MAX_PADDING_CPU, batches, length_batches

    lengths = encoded.lengths
    if path == "before":
        return sum(len(b) * max(lengths[i] for i in b) for b in batches(lengths, EVAL_BATCH_SIZE, None))
    padding = MAX_PADDING_CPU if device.type == "cpu" else None
    found = shared_prefix(encoded.input_ids) if path == "new" else None
    after = set(found.rows) if found is not None else set()
    whole = [i for i in range(len(encoded)) if i not in after]
    fed = sum(len(b) * max(lengths[i] for i in b) for b in length_batches(whole, lengths, EVAL_BATCH_SIZE,
                                                                           max_padding=padding))  # fmt: skip
    if found is not None:
        own = [n - len(found.ids) for n in lengths]
        batched = length_batches(found.rows, own, EVAL_BATCH_SIZE, max_padding=padding)
        fed += len(found.ids) + sum(len(b) * max(own[i] for i in b) for b in batched)
    return fed


def run_case(
    runtime: Any, demos: int, selection: str, which: str, labelled: list[Any], test: list[Any], repeats: int
) -> dict[str, Any]:
    import numpy as np

    from promptsearch.models.trainer import predict_scores
    from promptsearch.space.config import DemoConfig, PromptConfig
    from promptsearch.study.evaluation import stratified_folds

    prompt = PromptConfig(
        instruction=INSTRUCTION,
        template=TEMPLATE,
        label_words=WORDS,
        demonstrations=DemoConfig(count=demos, selection=selection),
    )
    if which == "loo":  # fold by fold, as Protocol._in_context scores an in-context trial
        groups = [[labelled[i] for i in fold.held] for fold in stratified_folds(labelled, 4, seed=0)]
    else:
        groups = [test]
    encoded = [runtime.encoder.encode(prompt, rows, labelled) for rows in groups]
    pad_id = int(runtime.tokenizer.pad_token_id)

    def score(path: str) -> Any:
        if path == "before":
            return np.concatenate([score_before(runtime, e) for e in encoded])
        reuse = path == "new"
        return np.concatenate([
            predict_scores(runtime.model, e, runtime.device, pad_id, runtime.precision, reuse_prefix=reuse)
            for e in encoded
        ])  # fmt: skip

    wall: dict[str, list[float]] = {p: [] for p in PATHS}
    cpu: dict[str, list[float]] = {p: [] for p in PATHS}
    results: dict[str, Any] = {}
    for r in range(repeats):
        for path in PATHS[r % 3 :] + PATHS[: r % 3]:  # rotate the order, so drift hits every path alike
            t0, c0 = time.perf_counter(), time.process_time()
            results[path] = score(path)
            wall[path].append(round(time.perf_counter() - t0, 3))
            cpu[path].append(round(time.process_time() - c0, 3))
    rows = sum(len(e) for e in encoded)
    breakdown: dict[str, float] = {}
    for e in encoded:  # per scoring call, weighted by its rows
        for name, value in token_breakdown(e).items():
            breakdown[name] = breakdown.get(name, 0.0) + value * len(e) / rows
    before, new = results["before"], results["new"]
    return {
        "rows": rows,
        "calls": len(encoded),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "speedup_wall": round(statistics.median(wall["before"]) / statistics.median(wall["new"]), 2),
        "speedup_cpu": round(statistics.median(cpu["before"]) / statistics.median(cpu["new"]), 2),
        "prefix_speedup_cpu": round(statistics.median(cpu["buckets"]) / statistics.median(cpu["new"]), 2),
        "max_score_difference": float(max(np.abs(before - results[p]).max() for p in PATHS)),
        "identical_predictions": all(bool((before.argmax(1) == results[p].argmax(1)).all()) for p in PATHS),
        "accuracy": round(float((new.argmax(axis=1) == np.concatenate([e.labels for e in encoded])).mean()), 4),
        "tokens_per_prompt": {k: round(v, 1) for k, v in breakdown.items()},
        "fed_tokens_per_prompt": {
            p: round(sum(fed_tokens(e, p, runtime.device) for e in encoded) / rows, 1) for p in PATHS
        },
        "demos_dropped": sum(p.demos_dropped for e in encoded for p in e.prompts),
    }


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def markdown(record: dict[str, Any]) -> str:
    lines = [
        f"Model `{record['model']}` ({record['precision']}), {record['machine']['cpu_threads']} CPU thread(s), "
        f"device {record['machine']['device']}, {record['repeats']} repeats, the paths in rotating order. "
        "**before**: 64-row batches in length order, every prompt read whole (the code before this change); "
        "**buckets**: batches of similar length, every prompt read whole; **new**: buckets, and the prefix that a "
        "scoring call's prompts share read once. Seconds are min / median / max; the speed-ups are ratios of "
        "medians, new against before (CPU seconds of the process, and wall seconds), and new against buckets "
        "(the prefix's own share, CPU).",
        "",
        "| case | rows | before CPU s | buckets CPU s | new CPU s | new vs before (CPU) | new vs before (wall) "
        "| new vs buckets (CPU) | same predictions | max score diff | accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, case in record["cases"].items():
        cpu = case["cpu_seconds"]
        lines.append(
            f"| {name} | {case['rows']} | {spread(cpu['before'])} | {spread(cpu['buckets'])} | {spread(cpu['new'])} "
            f"| {case['speedup_cpu']:.2f}x | {case['speedup_wall']:.2f}x | {case['prefix_speedup_cpu']:.2f}x "
            f"| {'yes' if case['identical_predictions'] else 'NO'} | {case['max_score_difference']:.1e} "
            f"| {100 * case['accuracy']:.1f} |"
        )
    lines += [
        "",
        "Tokens per prompt: the shared prefix (read by every prompt before, once per scoring call now: its share "
        "per prompt), the query's own tokens, the label words fed after the prompt (a single-token word adds "
        "none), and the prompt tokens fed with padding on each path.",
        "",
        "| case | wall s before / buckets / new (median) | prefix before / new | query | label words "
        "| read before / new | fed before / buckets / new |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, case in record["cases"].items():
        t, fed, wall = case["tokens_per_prompt"], case["fed_tokens_per_prompt"], case["wall_seconds"]
        medians = " / ".join(f"{statistics.median(wall[p]):.2f}" for p in PATHS)
        lines.append(
            f"| {name} | {medians} | {t['prefix_old']:.1f} / {t['prefix_new']:.1f} | {t['query']:.1f} "
            f"| {t['label_words']:.0f} | {t['total_old']:.1f} / {t['total_new']:.1f} "
            f"| {' / '.join(f'{fed[p]:.1f}' for p in PATHS)} |"
        )
    return "\n".join(lines) + "\n"


# --- whole searches: trials per hour on the old and the new path --------------------------------------------------

SPACE = REPO / "search_spaces" / "sst2-smollm2.yaml"
OLD_SELECTION = ["random", "balanced", "similar"]  # the space before selection fixed was offered
SEARCH_PATHS = ("old", "new")


def search_space(tmp: Path, *, model: str, trials: int, test_rows: int | None, old: bool) -> Path:
    """``sst2-smollm2.yaml`` in context only (``train.method: none``), ``trials`` sampled trials, the baseline at 0
    epochs, no finalists, one final seed, ``test_rows`` rows of its test file (a seeded sample); ``old``: the
    demonstrations chosen per query, as the space offered them before ``selection: fixed``."""
    import yaml

    raw = yaml.safe_load(SPACE.read_text(encoding="utf-8"))
    data = raw["task"]["data"]
    data["dir"] = str((SPACE.parent / data["dir"]).resolve())
    test = (SPACE.parent / data["files"]["test"]).resolve()
    data["files"]["test"] = str(cap_lines(test, test_rows, tmp / f"test-{test_rows}.jsonl"))
    raw["model"]["name"] = model
    raw["train"] = {"method": "none"}
    if old:
        raw["prompt"]["demonstrations"]["selection"] = OLD_SELECTION
        raw["prompt"]["demonstrations"].pop("sets", None)
    raw["search"].update(n_trials=trials, final_seeds=1, finalists=0)
    raw["baseline"] = {"epochs": 0}  # the same on both paths and not a trial of the search: as cheap as it gets
    path = tmp / f"{'old' if old else 'new'}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def trial_tokens(study: Any, sampled: list[Any], old: bool) -> dict[str, float]:
    """Tokens a sampled trial read, on average, over the folds it scored (a duplicate of an earlier trial reads
    none): the shared prefix (every prompt's copy on the old path, once per scoring call on the new), the queries'
    own tokens and the label words fed after them."""
    from promptsearch.study.protocol import Protocol

    protocol = Protocol(study.runner)  # the same folds as the trials' (search.seed)
    totals = {"prefix": 0.0, "query": 0.0, "label_words": 0.0}
    for record in sampled:
        if record.duplicate_of is not None or record.config is None:
            continue
        config = record.config
        for fold in protocol.folds[: len(record.dev_curve)]:  # one report per fold scored
            encoded = protocol.loo_runner(fold).features_for(config.head, config.model).get(config.prompt, "dev")
            found, n = token_breakdown(encoded), len(encoded)
            totals["prefix"] += (found["prefix_old"] if old else found["prefix_new"]) * n
            totals["query"] += found["query"] * n
            totals["label_words"] += found["label_words"] * n
    return {k: round(v / max(1, len(sampled)), 1) for k, v in totals.items()}


def run_search(space: Path, *, seed: int, old: bool, device: str) -> dict[str, Any]:
    """One search of ``space`` with sampler seed ``seed``: its trials' seconds, the chosen config and its test
    accuracy, and the tokens its trials read."""
    from promptsearch.api import Study
    from promptsearch.models.trainer import prompts_read_whole
    from promptsearch.study.records import trial_records

    study = Study(space, device=device, seed=seed)
    assert study.runner is not None  # the model loads before the clock starts
    t0 = time.perf_counter()
    with prompts_read_whole() if old else nullcontext():
        study.optimize()
    wall = time.perf_counter() - t0
    records = trial_records(study.optuna_study)
    sampled = [r for r in records if not r.is_baseline and r.counts_towards_budget]
    seconds = sum(r.duration or 0.0 for r in sampled)
    # the chosen config: the best sampled trial (the 0-epoch baseline is no candidate here), scored on test
    from promptsearch.study.final import final_evaluation

    points = [r for r in sampled if r.is_point and r.config is not None]
    best = max(points, key=lambda r: (r.dev or 0.0, -r.number))
    assert best.config is not None
    final = final_evaluation(study.runner, study.optuna_study, seeds=1, best=best)
    selections: dict[str, int] = {}
    for r in sampled:
        if r.config is not None:
            demos = r.config.prompt.demonstrations
            key = demos.selection if demos.count else "none (0 demonstrations)"
            selections[key] = selections.get(key, 0) + 1
    return {
        "trials": len(sampled),
        "pruned": sum(1 for r in sampled if r.state.name == "PRUNED"),
        "duplicates": sum(1 for r in sampled if r.duplicate_of is not None),
        "trial_seconds": round(seconds, 2),
        "search_wall_seconds": round(wall, 2),
        "trials_per_hour": round(3600 * len(sampled) / seconds, 1) if seconds else None,
        "selections": selections,
        "best_trial": best.number,
        "best_dev": best.dev,
        "best_demonstrations": best.config.prompt.demonstrations.model_dump(mode="json"),
        "test_accuracy": final.get("best", {}).get("test", {}).get("mean"),
        "tokens_per_trial": trial_tokens(study, sampled, old),
    }


def search_markdown(search: dict[str, Any]) -> str:
    runs, settings = search["runs"], search["settings"]
    lines = [
        "## Whole searches: trials per hour",
        "",
        f"`search_spaces/sst2-smollm2.yaml` in context (`train.method: none`), model `{settings['model']}`, "
        f"{settings['trials']} sampled trials per run, {settings['test_rows']} test rows, "
        f"{settings['threads']} CPU thread(s), device {settings['device']}; the same search seed (folds, "
        "demonstration sets) on both paths, sampler seeds interleaved (seed 1 old, seed 1 new, ...). **old**: "
        "demonstrations chosen per query (random, balanced, similar), every prompt read whole; **new**: the shipped "
        "space (`selection: [fixed, similar]`, 4 searched sets), the shared prefix read once. Trials per hour count "
        "the trials' own seconds (not the model load, the 0-epoch baseline or the final evaluation). The chosen "
        "config is the sampled trial with the best dev score (no finalists are raced), scored on the test rows.",
        "",
        "| sampler seed | path | trials (pruned, repeats) | trial s | trials/hour | selections | chosen (best dev) "
        "| test acc "
        "| tokens per trial: prefix / query / label words |",
        "| ---: | --- | --- | ---: | ---: | --- | --- | ---: | --- |",
    ]
    for key, run in runs.items():
        seed, path = key.split("/")
        demos, t = run["best_demonstrations"], run["tokens_per_trial"]
        chosen = f"trial {run['best_trial']}: " + (
            f"{demos['count']} {demos['selection']}" if demos["count"] else "0 demonstrations"
        )
        chosen += f" (set {demos['set']})" if demos["selection"] == "fixed" and demos["count"] else ""
        picked = ", ".join(f"{k} {v}" for k, v in sorted(run["selections"].items()))
        acc = "" if run["test_accuracy"] is None else f"{100 * run['test_accuracy']:.1f}"
        lines.append(
            f"| {seed} | {path} | {run['trials']} ({run['pruned']}, {run['duplicates']}) | {run['trial_seconds']:.1f} "
            f"| {run['trials_per_hour']} | {picked} | {chosen} | {acc} "
            f"| {t['prefix']:.0f} / {t['query']:.0f} / {t['label_words']:.0f} |"
        )
    per_path = {p: [r for k, r in runs.items() if k.endswith("/" + p)] for p in SEARCH_PATHS}
    if all(per_path.values()):
        rate = {p: [r["trials_per_hour"] for r in rs] for p, rs in per_path.items()}
        acc = {
            p: [100 * r["test_accuracy"] for r in rs if r["test_accuracy"] is not None] for p, rs in per_path.items()
        }
        ratio = statistics.median(rate["new"]) / statistics.median(rate["old"])
        lines += [
            "",
            "| path | runs | trials/hour min / median / max | test accuracy min / median / max |",
            "| --- | ---: | --- | --- |",
        ]
        lines += [f"| {p} | {len(rate[p])} | {spread(rate[p])} | {spread(acc[p]) if acc[p] else ''} |" for p in rate]
        lines += ["", f"Trials per hour, new against old (ratio of medians): **{ratio:.2f}x**."]
    return "\n".join(lines) + "\n"


def render(record: dict[str, Any]) -> str:
    parts = [markdown(record)] if record.get("cases") else []
    if record.get("search", {}).get("runs"):
        parts.append(search_markdown(record["search"]))
    return "\n".join(parts)


def main_search(args: Any) -> int:
    """``--search``: whole searches on the old and the new path, interleaved by sampler seed."""
    from promptsearch.models.device import resolve_device

    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    path = args.out / "throughput.json"
    write = not args.smoke or args.out != REPO / "benchmarks" / "results"  # a smoke run writes only where told
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_causal(Path(tmp)) if args.smoke else args.model
        device = str(resolve_device(args.device))
        settings = {"model": "tiny-llama" if args.smoke else args.model, "trials": args.trials,
                    "test_rows": args.max_test, "threads": args.threads, "device": device}  # fmt: skip
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        earlier = record.get("search", {})
        keep = args.resume and earlier.get("settings") == settings
        record["search"] = {**record_header("throughput-search", threads=args.threads, device=device),
                            "settings": settings, "runs": earlier.get("runs", {}) if keep else {}}  # fmt: skip
        runs = record["search"]["runs"]
        for seed in seeds:
            for name in SEARCH_PATHS:  # interleaved: seed 1 old, seed 1 new, seed 2 old, ...
                key = f"{seed}/{name}"
                if key in runs:
                    continue
                print(f"search: sampler seed {seed}, {name} path ...", file=sys.stderr, flush=True)
                run_dir = Path(tmp) / key.replace("/", "-")
                run_dir.mkdir()
                space = search_space(run_dir, model=model, trials=args.trials, test_rows=args.max_test,
                                     old=name == "old")  # fmt: skip
                runs[key] = run_search(space, seed=seed, old=name == "old", device=args.device)
                if write:  # after every run, so --resume keeps it
                    write_results(args.out, "throughput", record, render(record), title=TITLE)
    print(search_markdown(record["search"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="a tiny random Llama, a few rows", device="cpu")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="datasets (../shared/data: LM-BFF's 872)")
    parser.add_argument("--model", default="smollm2", help="the causal LM (name or folder)")
    parser.add_argument("--max-test", type=int, default=None, help="test rows of the final case (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each path (at least 3 for a spread)")
    parser.add_argument("--precision", default="fp32", help="fp32 (identical predictions expected) or bf16")
    parser.add_argument("--cases", default="", help="comma-separated case numbers to run (default: all)")
    parser.add_argument("--resume", action="store_true", help="keep the cases already in --out/throughput.json")
    parser.add_argument("--search", action="store_true", help="whole searches, old and new path (see above)")
    parser.add_argument("--trials", type=int, default=12, help="--search: sampled trials per run")
    parser.add_argument("--seeds", default="1,2,3", help="--search: comma-separated sampler seeds")
    args = parser.parse_args(argv)
    quiet(args.threads)
    if args.search:
        if args.smoke:
            args.trials, args.max_test, args.seeds = min(args.trials, 3), 12, args.seeds.split(",")[0]
        return main_search(args)

    from promptsearch.models.device import resolve_device
    from promptsearch.models.runtime import ModelRuntime
    from promptsearch.space.spec import ModelSpec

    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_causal(Path(tmp)) if args.smoke else args.model
        shots, test_file = sst2_files(REPO / "data" if args.smoke else args.data_dir)
        labelled = read_rows(shots / "train.jsonl") + read_rows(shots / "dev.jsonl")
        test = read_rows(test_file, 12 if args.smoke else args.max_test)
        device = resolve_device(args.device)
        spec = ModelSpec(name=model, head="causal", max_length=384, precision=args.precision)
        runtime = ModelRuntime(spec, LABELS, device)
        path = args.out / "throughput.json"
        settings = {"model": args.model if not args.smoke else "tiny-llama", "precision": runtime.precision,
                    "test_rows": len(test), "repeats": args.repeats}  # fmt: skip
        record = {**record_header("throughput", threads=args.threads, device=str(device)), **settings, "cases": {}}
        if path.is_file():
            earlier = json.loads(path.read_text(encoding="utf-8"))
            if "search" in earlier:  # the whole searches (--search) stay as they were
                record["search"] = earlier["search"]
            if args.resume and all(earlier.get(k) == v for k, v in settings.items()):
                record["cases"] = earlier.get("cases", {})
        chosen = {int(x) for x in args.cases.split(",") if x.strip()} or set(range(1, len(CASES) + 1))
        for number, (name, demos, selection, which) in enumerate(CASES, start=1):
            if number not in chosen or name in record["cases"]:
                continue
            print(f"case {number}: {name} ...", file=sys.stderr, flush=True)
            record["cases"][name] = run_case(runtime, demos, selection, which, labelled, test, args.repeats)
            if not args.smoke:  # after every case, so --resume keeps it
                write_results(args.out, "throughput", record, render(record), title=TITLE)
    print(markdown(record))
    failed = [name for name, case in record["cases"].items() if not case["identical_predictions"]]
    if failed and runtime.precision == "fp32":
        print(f"the paths predict differently in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
