"""A short search on one device: trials per hour and the achieved training TFLOP/s against the device's peak.

One fresh study of ``--space`` (``--n-trials`` sampled trials + the baseline, stopped after ``--timeout``
seconds, no final evaluation). Reported: finished trials per hour of wall time (model load included), and the
training throughput in TFLOP/s = 6 x parameters x training tokens / training seconds, summed over the trials
(prompt tokens without padding; 6 = forward and backward of every weight, exact for ``train.method: full``;
LoRA counts 4 x, as frozen weights get no weight gradient; ``head`` and ``none`` count 2 x, forward only).
On CUDA the trials run under bf16 autocast, and the figure is set next to the device's dense bf16 peak.

    python benchmarks/gpu_search.py --device cuda --n-trials 20 --timeout 240 --out benchmarks/results/gpu

A space with a list of models is measured on its first model. ``--smoke`` runs 2 trials of a tiny random
BERT on the CPU (seconds; for CI). ``benchmarks/gpu.sh`` runs this after ``overhead.py --device cuda``.
"""

from __future__ import annotations

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

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from the vendors' data sheets.
PEAK_BF16 = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
FLOPS_PER_TOKEN = {"full": 6, "bitfit": 6, "lora": 4, "head": 2, "none": 2}  # x parameters


def peak_for(device_name: str) -> float | None:
    """The dense bf16 peak of a known GPU from its name (the longest matching key), else None."""
    matches = [key for key in PEAK_BF16 if key in device_name]
    return PEAK_BF16[max(matches, key=len)] if matches else None


def trial_flops(trial: Any, parameters: int, train_rows: int) -> tuple[float, float]:
    """(training FLOPs, training seconds) of one finished trial, from its user attributes."""
    attrs = trial.user_attrs
    method = (attrs.get("config") or {}).get("train", {}).get("method", "full")
    tokens = float(attrs.get("prompt_tokens_mean", 0.0)) * train_rows * int(attrs.get("epochs_run", 0))
    return FLOPS_PER_TOKEN.get(method, 6) * parameters * tokens, float(attrs.get("train_seconds", 0.0))


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="a tiny random BERT, 2 trials of 1 epoch, CPU", device="auto")
    parser.add_argument("--space", type=Path, default=REPO / "search_spaces" / "sst2.yaml")
    parser.add_argument("--n-trials", type=int, default=20, help="sampled trials (the baseline runs on top)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds after which no new trial starts")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak (default: known GPUs)")
    args = parser.parse_args(argv)

    quiet(args.threads)
    import optuna
    import torch
    from transformers import AutoModel

    from promptsearch import Space, Study
    from promptsearch.models.device import resolve_device
    from promptsearch.models.runtime import resolve_model_name

    raw = yaml.safe_load(args.space.read_text(encoding="utf-8"))
    if isinstance(raw["model"], list):  # the training throughput of one model: the first of a model list
        first = raw["model"][0]
        raw["model"] = {key: value for key, value in first.items() if key != "id"}
        raw["train"] = first.get("train", raw["train"])
        raw.get("baseline", {}).pop("model", None)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.smoke:
            raw = smoke_space(raw, tmp)
            args.n_trials, args.device = 2, "cpu"
        raw["search"]["n_trials"] = args.n_trials
        space = Space.from_dict(raw, path=args.space.resolve())
        device = resolve_device(args.device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
        peak = args.peak_tflops if args.peak_tflops is not None else peak_for(name)
        body = AutoModel.from_pretrained(resolve_model_name(space.spec.model.name))
        parameters = sum(p.numel() for p in body.parameters())
        del body
        t0 = time.perf_counter()
        study = Study(space, device=args.device).optimize(timeout=args.timeout)  # in memory, no final evaluation
        wall = time.perf_counter() - t0
        train_rows = len(study.data.train)
    finished = [t for t in study.optuna_study.trials if t.state.is_finished()]
    done = [t for t in finished if t.state != optuna.trial.TrialState.FAIL]
    flops, seconds = map(sum, zip(*(trial_flops(t, parameters, train_rows) for t in done), strict=True))
    tflops = flops / seconds / 1e12 if seconds else 0.0
    row = {
        "device": name,
        "trials": len(finished),
        "wall_seconds": round(wall, 1),
        "trials_per_hour": round(3600 * len(finished) / wall, 1),
        "train_seconds": round(seconds, 2),
        "train_tflop": round(flops / 1e12, 3),
        "train_tflops_per_s": round(tflops, 3),
        "peak_tflops_per_s": peak,
        "fraction_of_peak": round(tflops / peak, 5) if peak else None,
        "parameters": parameters,
        "best_dev": study.best.scores.dev if study.best_trial is not None else None,
    }
    table = "| device | trials | wall (s) | trials/hour | train TFLOP/s | peak TFLOP/s | of peak |\n"
    table += "|---|---:|---:|---:|---:|---:|---:|\n"
    share = f"{100 * row['fraction_of_peak']:.2f} %" if row["fraction_of_peak"] is not None else "-"
    table += (
        f"| {name} | {row['trials']} | {row['wall_seconds']} | {row['trials_per_hour']} | "
        f"{row['train_tflops_per_s']} | {peak or '-'} | {share} |\n"
    )
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    note = (
        f"\n{args.space.name}, {args.n_trials} sampled trials + baseline (timeout {args.timeout:.0f} s), {precision}; "
        f"{parameters / 1e6:.1f} M parameters; TFLOP/s = 6 x parameters x training tokens (no padding) / training "
        "seconds; peak = dense bf16 from the data sheet.\n"
    )
    print(table + note)
    if not args.smoke:
        record = {
            **record_header("gpu_search", threads=args.threads, device=name),
            "budget": {"space": str(args.space), "n_trials": args.n_trials, "timeout": args.timeout},
            "result": row,
        }
        write_results(args.out, "gpu_search", record, table + note, title="Search throughput on one device")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
