"""Per-trial overhead: a promptsearch trial against a bare PyTorch loop and a Trainer.hyperparameter_search trial.

One fixed config (plain fine-tuning of MiniLM's classification head on SST-2 16-shot: lr 2e-5,
batch 8, 10 epochs, linear warmup 10 %, weight decay 0.01, gradient clipping 1.0, dev scored after
every epoch). Three ways to run it, alternated in one process, ``--repeats`` times:

- **promptsearch**: one trial of a running Optuna study (``Objective``: restore, tokenize (cached
  after the first repeat), train, report each epoch to the pruner, user attributes);
- **bare**: a hand-written PyTorch loop doing the same work on the same tokenized rows (same
  shuffling, batches, optimizer, schedule, clipping and evaluations), nothing else;
- **trainer**: ``transformers.Trainer.hyperparameter_search`` (Optuna backend) running one trial of
  the same config, each tool on its default settings (the Trainer re-creates the model per trial
  through ``model_init``, as its documentation asks).

The ratios (promptsearch / bare, promptsearch / trainer) are taken per repeat, then summarised;
peak resident memory is sampled every 20 ms during each run.

    python benchmarks/overhead.py --data-dir ../shared/data --repeats 3 --out benchmarks/results

``--smoke`` runs it on a tiny random BERT for 2 epochs, once (seconds; for CI).
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import bench_parser, quiet, record_header, tiny_bert, write_results  # noqa: E402

CONFIG = {"learning_rate": 2e-5, "epochs": 10, "batch_size": 8, "weight_decay": 0.01, "warmup_ratio": 0.1}


class PeakRss:
    """Samples this process's resident memory in a thread; ``peak_mb`` after the ``with`` block."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


def _data_dir(root: Path) -> Path:
    for candidate in (root / "k-shot" / "SST-2" / "16-13", root / "sst2" / "16-13"):
        if candidate.is_dir():
            return candidate
    raise SystemExit(f"--data-dir {root}: no k-shot/SST-2/16-13 or sst2/16-13 folder with train/dev files")


def _space_dict(model: str, data: Path, epochs: int) -> dict[str, Any]:
    return {
        "name": "overhead",
        "task": {"data": {"dir": str(data)}, "labels": ["negative", "positive"], "splits": {"test": None}},
        "model": {"name": model, "max_length": 128},
        "prompt": {"template": "{text} {label}"},
        "search": {"n_trials": 1, "pruner": {"type": "median"}},
        "baseline": {"learning_rate": CONFIG["learning_rate"], "epochs": epochs, "batch_size": CONFIG["batch_size"]},
    }


def run_promptsearch(runner: Any, seed: int) -> float:
    """One baseline trial (the fixed config) of a fresh in-memory study, as ``promptsearch run`` runs it."""
    import optuna

    from promptsearch.study.objective import Objective
    from promptsearch.study.records import enqueue_baseline

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner())
    enqueue_baseline(study)
    objective = Objective(runner)
    objective.seed_for = lambda trial: seed  # type: ignore[method-assign]  # same seed as the other two
    study.optimize(objective, n_trials=1)
    return float(study.trials[0].value or math.nan)


def run_bare(runner: Any, seed: int, epochs: int, device: Any) -> float:
    """The same work in plain PyTorch: restore, shuffle, pad, AdamW, schedule, clip, evaluate each epoch."""
    import numpy as np
    import torch
    from transformers import get_linear_schedule_with_warmup

    from promptsearch.models.device import autocast
    from promptsearch.space.sampling import baseline_config

    config = baseline_config(runner.space)
    model = runner.runtime.restore(seed=seed, train=config.train)
    precision = runner.runtime.precision  # the same precision (and attention kernel) as a promptsearch trial
    train = runner.features.get(config.prompt, "train")
    dev = runner.features.get(config.prompt, "dev")
    pad = int(runner.runtime.tokenizer.pad_token_id)

    def batch(enc: Any, idx: list[int]) -> dict[str, torch.Tensor]:
        width = max(len(enc.input_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        types = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            n = len(enc.input_ids[i])
            ids[r, :n] = torch.tensor(enc.input_ids[i])
            mask[r, :n] = 1
            if enc.token_type_ids is not None:
                types[r, :n] = torch.tensor(enc.token_type_ids[i])
        out = {"input_ids": ids, "attention_mask": mask}
        if enc.token_type_ids is not None:
            out["token_type_ids"] = types
        return {k: v.to(device) for k, v in out.items()}

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n.lower()]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n.lower())]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": CONFIG["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
        lr=CONFIG["learning_rate"],
        fused=device.type in ("cuda", "cpu"),  # as promptsearch does
    )
    steps = math.ceil(len(train) / CONFIG["batch_size"]) * epochs
    sched = get_linear_schedule_with_warmup(opt, int(CONFIG["warmup_ratio"] * steps), steps)
    labels = torch.tensor(train.labels)
    order_dev = sorted(range(len(dev)), key=lambda i: len(dev.input_ids[i]))
    best = -1.0
    for _ in range(epochs):
        model.train()
        order = list(rng.permutation(len(train)))
        for s in range(0, len(order), CONFIG["batch_size"]):
            idx = order[s : s + CONFIG["batch_size"]]
            with autocast(device, precision):
                logits = model(**batch(train, idx)).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[idx].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        correct = 0
        with torch.inference_mode(), autocast(device, precision):
            for s in range(0, len(order_dev), 64):
                idx = order_dev[s : s + 64]
                pred = model(**batch(dev, idx)).logits.argmax(-1).cpu()
                correct += int((pred == torch.tensor([dev.labels[i] for i in idx])).sum())
        best = max(best, correct / len(dev))
    return best


def run_trainer(model_dir: str, runner: Any, seed: int, epochs: int, out: Path) -> float:
    """One trial of ``Trainer.hyperparameter_search`` (Optuna backend) on the same tokenized rows."""
    import numpy as np
    from _common import plain_training_args
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, Trainer

    from promptsearch.space.sampling import baseline_config

    config = baseline_config(runner.space)
    train = runner.features.get(config.prompt, "train")
    dev = runner.features.get(config.prompt, "dev")

    def dataset(enc: Any) -> Dataset:
        cols: dict[str, Any] = {"input_ids": enc.input_ids, "labels": enc.labels}
        if enc.token_type_ids is not None:
            cols["token_type_ids"] = enc.token_type_ids
        return Dataset.from_dict(cols)

    def model_init(trial: Any = None) -> Any:
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    args = plain_training_args(out, seed, epochs=epochs)  # CONFIG's values
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=dataset(train),
        eval_dataset=dataset(dev),
        processing_class=runner.runtime.tokenizer,
        compute_metrics=accuracy,
    )
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {},
        n_trials=1,
        direction="maximize",
        backend="optuna",
        compute_objective=lambda metrics: metrics["eval_accuracy"],
    )
    return float(best.objective)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="a tiny random BERT, 2 epochs, one repeat", device="cpu")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="datasets (LM-BFF k-shot layout or data/)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated repetitions of the three runs")
    parser.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    parser.add_argument("--model", default="default", help="model name or folder (default: the embedded MiniLM)")
    args = parser.parse_args(argv)

    import torch

    from promptsearch import Space, Study
    from promptsearch.models.runtime import resolve_model_name

    quiet(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = args.model
        if args.smoke:
            model, args.epochs, args.repeats = tiny_bert(tmp), 2, 1
        space = Space.from_dict(_space_dict(model, _data_dir(args.data_dir).resolve(), args.epochs))
        runner = Study(space, device=args.device).runner  # the three runs share its model and tokenized data
        device = runner.device
        model_dir = resolve_model_name(model)
        runs: dict[str, list[dict[str, float]]] = {"promptsearch": [], "bare": [], "trainer": []}
        names = list(runs)
        for rep in range(args.repeats):
            order = names[rep % 3 :] + names[: rep % 3]  # rotate who goes first
            for name in order:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                with PeakRss() as rss:
                    if name == "promptsearch":
                        score = run_promptsearch(runner, seed=rep)
                    elif name == "bare":
                        score = run_bare(runner, rep, args.epochs, device)
                    else:
                        score = run_trainer(model_dir, runner, rep, args.epochs, tmp / f"trainer-{rep}")
                seconds = time.perf_counter() - t0
                record = {"seconds": round(seconds, 3), "dev": round(score, 4), "peak_rss_mb": rss.peak_mb}
                if device.type == "cuda":
                    record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                runs[name].append(record)
                print(f"repeat {rep + 1}: {name:12s} {seconds:7.2f} s  dev {score:.4f}", file=sys.stderr, flush=True)
    ps = [r["seconds"] for r in runs["promptsearch"]]
    vs_bare = [a / b for a, b in zip(ps, [r["seconds"] for r in runs["bare"]], strict=True)]
    vs_trainer = [a / b for a, b in zip(ps, [r["seconds"] for r in runs["trainer"]], strict=True)]
    result = {
        **record_header("overhead", threads=args.threads, device=str(device)),
        "smoke": args.smoke,
        "budget": {
            "repeats": args.repeats,
            "epochs": args.epochs,
            "model": args.model,
            **CONFIG,
            "epochs_run": args.epochs,
            "precision": runner.runtime.precision,
        },
        "ratio_vs_bare": summary(vs_bare),
        "ratio_vs_trainer": summary(vs_trainer),
        "runs": runs,
    }
    rows = "".join(
        f"| {name} | {statistics.median(r['seconds'] for r in recs):.2f} | "
        f"{max(r['peak_rss_mb'] for r in recs):.0f} | {statistics.median(r['dev'] for r in recs):.4f} |\n"
        for name, recs in runs.items()
    )
    table = (
        "| run | median seconds | peak RSS (MB) | median dev |\n|---|---:|---:|---:|\n" + rows + "\n"
        f"promptsearch / bare: median {result['ratio_vs_bare']['median']} "
        f"(min {result['ratio_vs_bare']['min']}, max {result['ratio_vs_bare']['max']}); "
        f"promptsearch / Trainer.hyperparameter_search: median {result['ratio_vs_trainer']['median']} "
        f"(min {result['ratio_vs_trainer']['min']}, max {result['ratio_vs_trainer']['max']}).\n\n"
        f"{args.repeats} alternated repeats, {args.epochs} epochs each, {device}, {args.threads} CPU threads. "
        f"promptsearch and bare: {runner.runtime.precision} (promptsearch's default on this hardware; "
        "model.precision: auto); Trainer: its defaults (fp32 unless told bf16=True).\n"
    )
    print(table)
    if not args.smoke:
        write_results(args.out, "overhead", result, table, title="Per-trial overhead")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
