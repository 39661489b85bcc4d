"""Mixed precision: test scores and trial time of fp32 against bf16 autocast, side by side in one process.

promptsearch's default (``model.precision: auto``) is bf16 autocast where the hardware computes in
bf16 natively. This benchmark checks that it costs no accuracy and measures what it saves:

- **minilm**: plain fine-tuning of MiniLM's classification head (lr 2e-5, batch 8, ``--epochs``
  epochs, dev after each) on the SST-2 16-shot split of each ``--seeds`` data seed, then test;
- **smollm2 zero-shot**: SmolLM2-135M-Instruct scoring the label words negative/positive after
  ``Review: {text}\\nSentiment:``, no training (the precision of the language-model head's scores).

The two precisions alternate (which goes first flips each seed); both see the same rows and seeds.

    python benchmarks/precision.py --data-dir ../shared/data --seeds 13,21,42,87,100 --max-test 500

``--smoke`` runs it on tiny random models, one seed (seconds; for CI).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import bench_parser, quiet, record_header, tiny_bert, tiny_causal, write_results  # noqa: E402  (sibling modules)
from heads import capped_test, space_dict  # noqa: E402

PRECISIONS = ("fp32", "bf16")
ZERO_SHOT_TEMPLATE = "Review: {text}\nSentiment: {label}"


def _split(root: Path, seed: int) -> Path:
    for candidate in (root / "k-shot" / "SST-2" / f"16-{seed}", root / "sst2" / f"16-{seed}"):
        if candidate.is_dir():
            return candidate.resolve()
    raise SystemExit(f"--data-dir {root}: no k-shot/SST-2/16-{seed} (or sst2/16-{seed}) folder with train/dev files")


def _run(case: str, model: str, precision: str, seed: int, args: argparse.Namespace, tmp: Path) -> dict:
    """One fit (and test scoring) of ``case`` at ``precision`` (the model load is not timed)."""
    import warnings

    from promptsearch import ExperimentalWarning, Space, evaluate
    from promptsearch.space.config import PromptConfig, TrainConfig, TrialConfig

    causal = case != "minilm"
    head = "causal" if causal else "classification"
    words = {"negative": "negative", "positive": "positive"}
    raw = space_dict(model, head, _split(args.data_dir, seed), capped_test(args, tmp), words, precision=precision)
    if causal:
        prompt = PromptConfig(template=ZERO_SHOT_TEMPLATE, label_words=words)
        train = TrainConfig(method="none", epochs=0)
    else:
        prompt = PromptConfig(template="{text} {label}", label_words={})
        train = TrainConfig(epochs=args.epochs, learning_rate=2e-5, batch_size=8)
    config = TrialConfig(prompt=prompt, train=train, head=head)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        result = evaluate(Space.from_dict(raw), config, device="cpu", seed=seed)
    return {
        "case": case,
        "precision": precision,
        "seed": seed,
        "fit_seconds": round(result.fit_seconds, 3),
        "test_seconds": round(result.test_seconds, 3),
        "best_dev": round(result.dev, 4),
        "test": round(result.test or 0.0, 4),
    }


def _summary(runs: list[dict[str, Any]], case: str, precision: str) -> dict[str, Any]:
    mine = [r for r in runs if r["case"] == case and r["precision"] == precision]
    tests = [r["test"] for r in mine]
    return {
        "case": case,
        "precision": precision,
        "runs": len(mine),
        "test_mean": round(100 * statistics.fmean(tests), 2),
        "test_std": round(100 * statistics.stdev(tests), 2) if len(tests) > 1 else 0.0,
        "fit_seconds": round(statistics.median(r["fit_seconds"] for r in mine), 2),
        "test_seconds": round(statistics.median(r["test_seconds"] for r in mine), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="tiny random models, one seed, 2 epochs")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="datasets (LM-BFF k-shot layout or data/)")
    parser.add_argument("--seeds", default="13,21,42,87,100", help="comma-separated SST-2 16-shot data seeds")
    parser.add_argument("--max-test", type=int, default=500, help="test rows scored (the first N of SST-2 test)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the MiniLM fine-tuning")
    parser.add_argument("--cases", default="minilm,smollm2", help="minilm and/or smollm2")
    args = parser.parse_args(argv)

    import torch

    from promptsearch.models.device import native_bf16

    quiet(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    cases = [c for c in args.cases.split(",") if c.strip()]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = {"minilm": "default", "smollm2": "smollm2"}
        if args.smoke:
            models = {"minilm": tiny_bert(tmp), "smollm2": tiny_causal(tmp)}
            seeds, args.epochs, args.max_test = seeds[:1], 2, min(args.max_test, 16)
        for i, seed in enumerate(seeds):
            for case in cases:
                if case == "smollm2" and i > 0:
                    continue  # no training and no demonstrations: the data seed changes nothing
                for precision in PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]:
                    print(f"seed {seed}: {case} {precision} ...", file=sys.stderr, flush=True)
                    runs.append(_run(case, models[case], precision, seed, args, tmp))
    rows = [_summary(runs, case, p) for case in cases for p in PRECISIONS]
    ratios = {
        case: round(
            statistics.median(
                b["fit_seconds"] / a["fit_seconds"]
                for a, b in zip(
                    [r for r in runs if r["case"] == case and r["precision"] == "fp32"],
                    [r for r in runs if r["case"] == case and r["precision"] == "bf16"],
                    strict=True,
                )
            ),
            3,
        )
        for case in cases
    }
    table = "| case | precision | runs | test acc (%) mean (std) | fit s (median) | test s (median) |\n"
    table += "|---|---|---:|---:|---:|---:|\n"
    table += "".join(
        f"| {r['case']} | {r['precision']} | {r['runs']} | {r['test_mean']:.2f} ({r['test_std']:.2f}) | "
        f"{r['fit_seconds']:.2f} | {r['test_seconds']:.2f} |\n"
        for r in rows
    )
    native = native_bf16(torch.device("cpu"))
    table += (
        "\nbf16 / fp32 fit time (median over seeds): "
        + ", ".join(f"{case} {ratio}" for case, ratio in ratios.items())
        + f". CPU, {args.threads} threads, native bf16: {native}; SST-2 16-shot seeds {seeds}, "
        f"test = first {args.max_test} SST-2 test rows; minilm: {args.epochs} epochs (fit = restore, train and dev "
        "after each epoch); smollm2: zero-shot, fit = one dev pass.\n"
    )
    print(table)
    if not args.smoke:
        record = {
            **record_header("precision", threads=args.threads, device="cpu"),
            "native_bf16": native,
            "budget": {"seeds": seeds, "max_test": args.max_test, "epochs": args.epochs, "cases": cases},
            "bf16_vs_fp32_fit_time": ratios,
            "summary": rows,
            "runs": runs,
        }
        write_results(args.out, "precision", record, table, title="Mixed precision: fp32 against bf16 autocast")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
