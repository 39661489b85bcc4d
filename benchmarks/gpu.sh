#!/usr/bin/env bash
# On a CUDA machine, in under 10 minutes: the per-trial overhead benchmark on the GPU, then a short
# search with bf16 autocast, printing trials per hour and the achieved training TFLOP/s next to the
# device's dense bf16 peak (H200/H100: 989 TFLOP/s), then trials per hour with 1 and with 4 worker
# processes sharing the GPU (a small model cannot fill it alone).
#
#   benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: benchmarks/results/gpu
#
# Environment: PYTHON (default .venv/bin/python, else python3), DATA_DIR (default data; the LM-BFF
# layout of ../shared/data works too), PEAK_TFLOPS (override the peak, e.g. for an unknown GPU).
# Exits 1 with a message, before running anything, when torch sees no CUDA device.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    PY=python3
fi
OUT=${1:-benchmarks/results/gpu}
DATA=${DATA_DIR:-data}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    version=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "not importable")
    echo "gpu.sh: no CUDA device: torch ${version} (${PY}) sees none." >&2
    echo "gpu.sh: run this on a machine with an NVIDIA GPU and a CUDA build of torch" >&2
    echo "gpu.sh: (requirements.lock pins the CPU build: pip install torch==2.13.0 from the CUDA index first)." >&2
    exit 1
fi

"$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}")'
mkdir -p "$OUT"
start=$(date +%s)

echo "== overhead: promptsearch vs a bare loop vs Trainer.hyperparameter_search, one trial each, on CUDA"
timeout 180 "$PY" benchmarks/overhead.py --device cuda --repeats 3 --data-dir "$DATA" --out "$OUT"

echo "== a short search on CUDA (bf16 autocast): trials per hour and training TFLOP/s"
peak=()
if [ -n "${PEAK_TFLOPS:-}" ]; then
    peak=(--peak-tflops "$PEAK_TFLOPS")
fi
timeout 240 "$PY" benchmarks/gpu_search.py --device cuda --space search_spaces/sst2.yaml --n-trials 30 \
    --timeout 180 --out "$OUT" "${peak[@]}"

echo "== several trials at once on the one GPU: 1 worker process against 4, trials per hour"
timeout 150 "$PY" benchmarks/workers.py --device cuda --space search_spaces/sst2.yaml --n-trials 12 \
    --workers 1 4 --out "$OUT"

echo "== done in $(($(date +%s) - start)) s; results in $OUT"
