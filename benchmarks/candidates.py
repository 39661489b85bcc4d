"""Generated candidates and calibration with SmolLM2 on SST-2 16-shot (seed 13).

Three measurements, all in-context (``train.method: none``: nothing trains, a trial costs seconds):

1. **Zero-shot calibration**: SmolLM2 (causal head) with ``Review: {text}\\nSentiment: {label}`` and the
   words negative/positive, no instruction or demonstrations, scored on test with each calibration
   (none, contextual, mean); with the share of test rows it labels positive.
2. **Generated candidates**: what ``label_words: {auto: {top_k: 3}}`` and ``instruction: {auto: {n: 4}}``
   produce (the words with their scores, the maps with their zero-shot train accuracy, the instructions).
3. **Generated against hand-written**: two searches with the same templates, demonstrations, calibration
   choices, sampler seed and ``--n-trials``: one with the generated instructions and label words (plus the
   empty instruction), one with the hand-written ones of ``search_spaces/sst2-smollm2.yaml``. The best
   config of each is scored on test (one final seed: nothing trains, so seeds do not change it).

    python benchmarks/candidates.py --n-trials 12 --out benchmarks/results

``--smoke`` runs it on a tiny random Llama with 2 trials and 16 test rows (seconds; for CI).
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import bench_parser, quiet, record_header, tiny_causal, write_results  # noqa: E402

TEMPLATE = "Review: {text}\nSentiment: {label}"
HAND_INSTRUCTIONS = {
    "none": "",
    "sentiment": "Is the sentiment of this movie review positive or negative?",
    "classify": "Classify the sentiment of the review as positive or negative.",
}
HAND_WORDS = {
    "names": {"negative": "negative", "positive": "positive"},
    "great_terrible": {"negative": "terrible", "positive": "great"},
}


def _space(model: str, data: Path, test: Path, name: str, prompt: dict[str, Any], n_trials: int) -> dict[str, Any]:
    return {
        "name": name,
        "task": {"data": {"dir": str(data), "files": {"test": str(test)}}, "labels": ["negative", "positive"]},
        "model": {"name": model, "head": "causal", "max_length": 384, "precision": "fp32"},  # as measured
        "prompt": {
            "template": {"review": TEMPLATE, "cloze": "{text} It was {label}."},
            "demonstrations": {"count": [0, 2, 4], "selection": "balanced"},
            "calibration": ["none", "contextual", "mean"],
            **prompt,
        },
        "train": {"method": "none"},
        "search": {"sampler": "tpe", "seed": 0, "n_trials": n_trials, "final_seeds": 1, "pruner": {"type": "none"}},
        "baseline": {"method": "head", "epochs": 1, "learning_rate": 1.0e-3},  # cheap: only the new head trains
    }


def _zero_shot(model: str, data: Path, test: Path) -> list[dict[str, Any]]:
    """Each calibration with and without the chat template; the share labelled positive needs the probabilities,
    so this reads the study's runner (the model loaded once) rather than calling ``promptsearch.evaluate``."""
    from promptsearch import Space, Study
    from promptsearch.models.calibration import apply_calibration
    from promptsearch.models.metrics import compute_metric
    from promptsearch.models.trainer import predict_proba
    from promptsearch.space.config import PromptConfig, TrainConfig, TrialConfig

    raw = _space(model, data, test, "zero-shot", {"label_words": HAND_WORDS["names"]}, 1)
    raw["prompt"]["template"] = TEMPLATE
    raw["prompt"]["demonstrations"] = {"count": 0}
    raw["prompt"]["chat"] = [False, True]
    runner = Study(Space.from_dict(raw), device="cpu").runner
    runtime = runner.runtime
    rows = []
    for chat, method in itertools.product((False, True), ("none", "contextual", "mean")):
        prompt = PromptConfig(template=TEMPLATE, label_words=HAND_WORDS["names"], calibration=method, chat=chat)
        config = TrialConfig(prompt=prompt, train=TrainConfig(method="none", epochs=0), head="causal")
        t0 = time.perf_counter()
        result, _ = runner.fit(config, seed=0)
        params = runner.calibration_for(config)
        encoded = apply_calibration(runner.features_for("causal").get(prompt, "test"), params)
        pad_id = int(runtime.tokenizer.pad_token_id)
        probs = predict_proba(runtime.model, encoded, runtime.device, pad_id, runtime.precision)
        predicted = list(probs.argmax(axis=1))
        rows.append(
            {
                "chat": chat,
                "calibration": method,
                "dev_accuracy": round(100 * result.best_score, 2),
                "test_accuracy": round(100 * compute_metric("accuracy", encoded.labels, predicted), 2),
                "test_predicted_positive": round(100 * sum(int(p) for p in predicted) / len(predicted), 1),
                "offsets": params.offsets if params is not None else None,
                "source": params.source if params is not None else "",
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(f"zero-shot, chat {chat}, calibration {method}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def _search(raw: dict[str, Any]) -> dict[str, Any]:
    """One search in memory, its best config and the baseline scored on test."""
    import warnings

    from promptsearch import ExperimentalWarning, Space, Study
    from promptsearch.study.candidates import stored_candidates

    t0 = time.perf_counter()
    study = Study(Space.from_dict(raw), device="cpu").optimize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        finalists = {f.role: f for f in study.test_results}
    seconds = time.perf_counter() - t0
    best, base = finalists.get("best"), finalists.get("baseline")

    def percent(x: float | None) -> float | None:
        return round(100 * x, 2) if x is not None else None

    return {
        "seconds": round(seconds, 1),
        "best_trial": best.trial if best else None,
        "best_dev": percent(best.dev) if best else None,
        "best_test": percent(best.test["mean"]) if best and best.test else None,
        "best_prompt": best.config.prompt.model_dump(mode="json") if best else None,
        "best_params": dict(study.best_trial.params) if study.best_trial else None,
        "baseline_test": percent(base.test["mean"]) if base and base.test else None,
        "candidates": stored_candidates(study.optuna_study),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="a tiny random Llama, 2 trials, 16 test rows")
    parser.add_argument("--model", default="smollm2", help="the causal LM (name or folder)")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "sst2" / "16-13")
    parser.add_argument("--test", type=Path, default=REPO / "data" / "sst2" / "test-500.jsonl")
    parser.add_argument("--n-trials", type=int, default=12, help="sampled trials of each search (same for both)")
    args = parser.parse_args(argv)

    quiet(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        n_auto, top_k = 4, 3
        if args.smoke:
            args.model = tiny_causal(tmp)
            lines = args.test.read_text(encoding="utf-8").splitlines()[:16]
            args.test = tmp / "test.jsonl"
            args.test.write_text("\n".join(lines) + "\n", encoding="utf-8")
            args.n_trials, n_auto, top_k = 2, 2, 2
        zero = _zero_shot(args.model, args.data, args.test)
        auto_prompt = {"instruction": {"auto": {"n": n_auto}}, "label_words": {"auto": {"top_k": top_k}}}
        hand_prompt = {"instruction": HAND_INSTRUCTIONS, "label_words": HAND_WORDS}
        generated = _search(_space(args.model, args.data, args.test, "generated", auto_prompt, args.n_trials))
        print(f"generated: best dev {generated['best_dev']}, test {generated['best_test']}", file=sys.stderr)
        hand = _search(_space(args.model, args.data, args.test, "hand-written", hand_prompt, args.n_trials))
        print(f"hand-written: best dev {hand['best_dev']}, test {hand['best_test']}", file=sys.stderr)

    candidates = generated.pop("candidates") or {}
    hand.pop("candidates", None)
    record = {
        **record_header("candidates", threads=args.threads, device="cpu"),
        "smoke": args.smoke,
        "budget": {"n_trials": args.n_trials, "train_rows": 32, "dev_rows": 32, "test_file": args.test.name},
        "zero_shot": zero,
        "candidates": candidates,
        "searches": {"generated": generated, "hand-written": hand},
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = _markdown(record)
    print(text)
    if not args.smoke:
        write_results(args.out, "candidates", record, text)
    return 0


def _markdown(record: dict[str, Any]) -> str:
    budget = record["budget"]
    lines = [
        "# Generated candidates and calibration: SmolLM2-135M-Instruct, SST-2 16-shot (seed 13)",
        "",
        f"CPU, {record['machine']['cpu_threads']} threads, fp32; train/dev = 32/32 rows; "
        f"test = `{budget['test_file']}`; {record['seconds']:.0f} s in all. "
        "Everything in context (`train.method: none`).",
        "",
        "## Zero-shot accuracy by calibration",
        "",
        "`Review: {text}\\nSentiment: {label}`, words negative/positive, no instruction or demonstrations; "
        "plain text, and wrapped in SmolLM2's chat template (the answer opens the assistant's turn).",
        "",
        "| chat template | calibration | dev acc (%) | test acc (%) | test rows labelled positive (%) | "
        "offsets (neg, pos) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in record["zero_shot"]:
        offsets = ", ".join(f"{x:.3f}" for x in row["offsets"]) if row["offsets"] else "-"
        lines.append(
            f"| {'yes' if row['chat'] else 'no'} | {row['calibration']} | {row['dev_accuracy']} | "
            f"{row['test_accuracy']} | {row['test_predicted_positive']} | {offsets} |"
        )
    candidates = record["candidates"]
    sources = candidates.get("sources") or {}
    words = sources.get("label_words") or {}
    lines += ["", "## Generated label words", ""]
    if words:
        lines.append(
            f"Ranked by {words['model']} at the `{{label}}` slot of `{words['template']!r}` over "
            f"{words['train_prompts']} train prompts (mean log-probability per class):"
        )
        lines.append("")
        for label, ranked in words["words"].items():
            lines.append(f"- {label}: " + ", ".join(f"{w} ({s:.2f})" for w, s in ranked))
        lines.append("")
        for key, mapping in candidates.get("label_words", {}).items():
            acc = words["maps"][key]["train_accuracy"]
            lines.append(f"- `{key}`: {json.dumps(mapping)}, zero-shot train accuracy {100 * acc:.1f}%")
    instructions = sources.get("instructions") or {}
    lines += ["", "## Generated instructions", ""]
    if instructions:
        lines.append(
            f"Proposed by {instructions['model']} (chat template: {instructions['chat_template']}) from "
            f"{instructions['examples_per_proposal']} labelled train examples each; "
            f"{len(instructions['proposals'])} proposals:"
        )
        lines.append("")
        lines += [f"- `{k}`: {t!r}" for k, t in candidates.get("instructions", {}).items()]
    lines += [
        "",
        f"## Best config: generated against hand-written candidates ({budget['n_trials']} trials each)",
        "",
        "Same templates (review, cloze), demonstrations (0, 2 or 4, balanced), calibration choices "
        "(none, contextual, mean), TPE seed 0. Test: the best trial's config, one final seed.",
        "",
        "| candidates | best trial | best dev (%) | test acc (%) | search + final (s) | best prompt |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in record["searches"].items():
        prompt = row["best_prompt"] or {}
        shown = (
            f"instruction {prompt.get('instruction')!r}, template {prompt.get('template')!r}, "
            f"words {json.dumps(prompt.get('label_words'))}, {prompt.get('demonstrations', {}).get('count')} demos, "
            f"calibration {prompt.get('calibration')}"
        )
        lines.append(
            f"| {name} | {row['best_trial']} | {row['best_dev']} | {row['best_test']} | {row['seconds']} | "
            f"{shown.replace('|', '/')} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
