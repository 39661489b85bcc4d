#!/usr/bin/env bash
# benchmarks/folds.py on a lent GPU machine (the `device` tool of this workplace), one process per split seed and
# task in parallel, joined into OUT/folds.{json,md} (``--merge``) with OUT/logs.txt. The bundle is the one of
# fewshot_device.sh (p1/whl: our locked dependencies for Python 3.12, p1/data: the LM-BFF layout, p2..p4: the
# model wheels, split); only MiniLM is used.
#
#   benchmarks/folds_device.sh BUNDLE OUT TASKS SEEDS [more folds.py options]
set -uo pipefail
BUNDLE=$1 OUT=$2 TASKS=$3 SEEDS=$4
shift 4
cd "$(dirname "$0")/.."
for part in p1/whl p1/data p2 p3 p4; do
    [ -e "$BUNDLE/$part" ] || { echo "folds_device.sh: $BUNDLE/$part is missing (the machine was fresh?)"; exit 3; }
done
mkdir -p /tmp/bundle /tmp/folds
cat "$BUNDLE"/p*/models.part* | tar -x -C /tmp/bundle || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$BUNDLE"/p1/whl/*.whl /tmp/bundle/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
for seed in ${SEEDS//,/ }; do
    for task in ${TASKS//,/ }; do
        python3 benchmarks/folds.py --device cuda --threads 1 --data-dir "$BUNDLE/p1/data" --tasks "$task" \
            --seeds "$seed" --out "/tmp/folds/$task-$seed" "$@" > "/tmp/folds/log-$task-$seed.txt" 2>&1 &
    done
done
wait
python3 benchmarks/folds.py --merge /tmp/folds/*-*/ --out "$OUT" > /dev/null || echo "merge failed"
for log in /tmp/folds/log-*.txt; do echo "=== $log"; tail -n 8 "$log"; done > "$OUT/logs.txt"
cat "$OUT/folds.md" 2>/dev/null
