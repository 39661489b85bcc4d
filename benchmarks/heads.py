"""Throughput of each head (train and eval tokens per second) and SmolLM2's zero-shot accuracy.

For each case, one process loads the model once, fine-tunes one config for ``--epochs`` epochs on
SST-2 16-shot train (32 rows) and scores the test rows, timing both. Tokens are the prompt tokens
the model reads (padding excluded; a causal head's label-word tokens not counted). Zero-shot rows:
no training, no demonstrations, the prompt ``Review: {text}\\nSentiment: {label}`` with the words
negative/positive, with and without SmolLM2's chat template.

    python benchmarks/heads.py --data-dir data --max-test 200 --out benchmarks/results

``--smoke`` runs every case on tiny random models built offline (seconds; for CI). ``--device cuda``
runs on a GPU (bf16 autocast), and the table adds the training TFLOP/s (6 x parameters x tokens
per second; for LoRA 4 x, as the frozen weights get no gradient).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import bench_parser, quiet, record_header, write_results  # noqa: E402

CASES = [
    # name, model, head, method, template
    ("classification", "default", "classification", "full", None),
    ("mlm", "default", "mlm", "full", "{text} It was {label}."),
    ("causal-lora", "smollm2", "causal", "lora", "Review: {text}\nSentiment: {label}"),
    ("causal-full", "smollm2", "causal", "full", "Review: {text}\nSentiment: {label}"),
]
ZERO_SHOT = [("smollm2 zero-shot", False), ("smollm2 zero-shot, chat", True)]


def space_dict(
    model: str, head: str, data: Path, test: Path, words: dict[str, str], *, precision: str | None = None
) -> dict[str, Any]:
    """The one-point SST-2 space of a case (the config itself is given to the runner or to ``evaluate``)."""
    return {
        "name": f"bench-{head}",
        "task": {"data": {"dir": str(data), "files": {"test": str(test)}}, "labels": ["negative", "positive"]},
        "model": {"name": model, "head": head, "max_length": 256, **({"precision": precision} if precision else {})},
        "prompt": {"template": "{text} {label}", "label_words": words},
    }


def capped_test(args: argparse.Namespace, tmp: Path) -> Path:
    """The first ``args.max_test`` rows of SST-2 test, as a file in ``tmp``."""
    full_test = args.data_dir / "sst2" / "test.jsonl"
    if not full_test.is_file():
        full_test = next(args.data_dir.glob("**/SST-2/test.jsonl"))
    lines = full_test.read_text(encoding="utf-8").splitlines()[: args.max_test]
    test = tmp / f"test-{args.max_test}.jsonl"
    test.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return test


def _run_case(
    model: str, head: str, method: str, template: str | None, chat: bool, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:

    from promptsearch import Space, Study
    from promptsearch.space.config import LoraConfig, PromptConfig, TrainConfig, TrialConfig

    data_dir = args.data_dir / "k-shot" / "SST-2" / "16-13"
    if not data_dir.is_dir():
        data_dir = args.data_dir / "sst2" / "16-13"  # the repository's copy
    test = capped_test(args, tmp)
    words = {"negative": "negative", "positive": "positive"} if head == "causal" else {}
    words = words or {"negative": "terrible", "positive": "great"}
    study = Study(Space.from_dict(space_dict(model, head, data_dir.resolve(), test, words)), device=args.device)
    t0 = time.perf_counter()
    runner = study.runner  # the model loads here; the runner's caches and timings are what this measures
    load = time.perf_counter() - t0
    runtime = runner.runtime
    prompt = PromptConfig(template=template, label_words=words, chat=chat)
    lora = LoraConfig() if method == "lora" else None
    train_config = TrainConfig(method=method, lora=lora, epochs=args.epochs, learning_rate=1e-4 if lora else 2e-5)  # type: ignore[arg-type]
    config = TrialConfig(prompt=prompt, train=train_config, head=head)  # type: ignore[arg-type]
    result, train = runner.fit(config, seed=0)
    train_tokens = sum(train.lengths) * result.epochs_run
    params = sum(p.numel() for p in runtime.model.parameters())
    flops = (4 if method == "lora" else 6) * params * train_tokens
    encoded = runner.features_for(head).get(prompt, "test")
    t0 = time.perf_counter()
    score = runner.evaluate(config, "test")
    eval_seconds = time.perf_counter() - t0
    return {
        "precision": runtime.precision,
        "load_seconds": round(load, 2),
        "train_seconds": round(result.train_seconds, 2),
        "train_tokens": train_tokens,
        "train_tokens_per_s": round(train_tokens / result.train_seconds, 1) if result.train_seconds else None,
        "parameters": params,
        "train_tflops": round(flops / result.train_seconds / 1e12, 3) if result.train_seconds else None,
        "eval_rows": len(encoded),
        "eval_tokens": sum(encoded.lengths),
        "eval_seconds": round(eval_seconds, 2),
        "eval_tokens_per_s": round(sum(encoded.lengths) / eval_seconds, 1),
        "test_accuracy": round(100 * score, 2),
        "mean_prompt_tokens": round(encoded.mean_tokens, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="tiny random models, a few rows", device="cpu")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="datasets (the repo's data/ by default)")
    parser.add_argument("--max-test", type=int, default=200, help="test rows scored (the first N of SST-2 test)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs timed per case")
    parser.add_argument("--minilm", default="default", help="the MiniLM model (name or folder)")
    parser.add_argument("--causal", default="smollm2", help="the causal LM (name or folder)")
    parser.add_argument("--cases", default="", help="comma-separated case names to run (default: all)")
    args = parser.parse_args(argv)

    quiet(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = {"default": args.minilm, "smollm2": args.causal}
        if args.smoke:
            sys.path.insert(0, str(REPO / "tests"))
            from tiny import build_tiny_bert_mlm, build_tiny_causal

            models = {"default": str(build_tiny_bert_mlm(tmp / "bert")), "smollm2": str(build_tiny_causal(tmp / "lm"))}
            args.max_test = min(args.max_test, 16)
        wanted = set(filter(None, args.cases.split(",")))
        for name, model, head, method, template in CASES:
            if wanted and name not in wanted:
                continue
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows.append(
                {"case": name, "method": method, **_run_case(models[model], head, method, template, False, args, tmp)}
            )
        for name, chat in ZERO_SHOT:
            if wanted and name not in wanted:
                continue
            print(f"{name} ...", file=sys.stderr, flush=True)
            template = "Review: {text}\nSentiment: {label}"
            rows.append(
                {
                    "case": name,
                    "method": "none",
                    **_run_case(models["smollm2"], "causal", "none", template, chat, args, tmp),
                }
            )
    record = {
        **record_header("heads", threads=args.threads, device=args.device),
        "smoke": args.smoke,
        "budget": {"epochs": args.epochs, "train_rows": 32, "test_rows": args.max_test},
        "rows": rows,
    }
    header = "| case | method | train tokens/s | train TFLOP/s | eval tokens/s | mean prompt tokens | test acc (%) |"
    header += " load (s) |\n|---|---|---:|---:|---:|---:|---:|---:|\n"
    table = header + "".join(
        f"| {r['case']} | {r['method']} | {r['train_tokens_per_s'] or '-'} | {r['train_tflops'] or '-'} | "
        f"{r['eval_tokens_per_s']} | {r['mean_prompt_tokens']} | {r['test_accuracy']} | {r['load_seconds']} |\n"
        for r in rows
    )
    precisions = "/".join(sorted({str(r["precision"]) for r in rows}))
    where = f"CPU, {args.threads} threads" if args.device == "cpu" else args.device
    where += f", {precisions} (model.precision: auto)"
    note = (
        f"\n{where}; {args.epochs} epoch(s) on SST-2 16-shot train (32 rows), "
        f"test = first {args.max_test} SST-2 test rows; test accuracy after that short training is a sanity "
        "figure, not a result. Tokens = prompt tokens read (no padding).\n"
    )
    print(table + note)
    if not args.smoke:
        stem = "heads" if args.device == "cpu" else f"heads-{args.device}"
        title = f"Heads: throughput on {'CPU' if args.device == 'cpu' else args.device}"
        write_results(args.out, stem, record, table + note, title=title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
