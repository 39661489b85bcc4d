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
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import bench_parser, quiet, record_header, tiny_causal, write_results  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="a tiny random Llama, a few rows", device="cpu")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="datasets (../shared/data: LM-BFF's 872)")
    parser.add_argument("--model", default="smollm2", help="the causal LM (name or folder)")
    parser.add_argument("--max-test", type=int, default=None, help="test rows of the final case (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each path (at least 3 for a spread)")
    parser.add_argument("--precision", default="fp32", help="fp32 (identical predictions expected) or bf16")
    parser.add_argument("--cases", default="", help="comma-separated case numbers to run (default: all)")
    parser.add_argument("--resume", action="store_true", help="keep the cases already in --out/throughput.json")
    args = parser.parse_args(argv)
    quiet(args.threads)

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
        if args.resume and path.is_file():
            earlier = json.loads(path.read_text(encoding="utf-8"))
            if all(earlier.get(k) == v for k, v in settings.items()):
                record["cases"] = earlier.get("cases", {})
        chosen = {int(x) for x in args.cases.split(",") if x.strip()} or set(range(1, len(CASES) + 1))
        for number, (name, demos, selection, which) in enumerate(CASES, start=1):
            if number not in chosen or name in record["cases"]:
                continue
            print(f"case {number}: {name} ...", file=sys.stderr, flush=True)
            record["cases"][name] = run_case(runtime, demos, selection, which, labelled, test, args.repeats)
            if not args.smoke:  # after every case, so --resume keeps it
                write_results(args.out, "throughput", record, markdown(record), title=TITLE)
    print(markdown(record))
    failed = [name for name, case in record["cases"].items() if not case["identical_predictions"]]
    if failed and runtime.precision == "fp32":
        print(f"the paths predict differently in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
