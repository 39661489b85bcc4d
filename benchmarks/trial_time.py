"""Where the time of one trial goes: model load (once), restore, render+tokenize, train, dev eval.

    python benchmarks/trial_time.py --space search_spaces/sst2.yaml --set prompt.template=cloze \\
        --set prompt.demonstrations.count=2 --repeats 2 --out benchmarks/results

Runs the same config ``--repeats`` times in one process (the first trial pays the tokenization,
later ones hit the cache) and writes ``trial_time.json`` and ``trial_time.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import optuna
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import record_header, write_results  # noqa: E402

from promptsearch import Study  # noqa: E402
from promptsearch.api import load_any_space  # noqa: E402
from promptsearch.reporting.preview import check_sets  # noqa: E402
from promptsearch.space.sampling import sample_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="search_spaces/sst2.yaml")
    parser.add_argument("--set", action="append", default=[], help="key=value, as in `promptsearch render`")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    space = load_any_space(args.space)
    sets = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(check_sets(space, sets))
    config = sample_config(study.ask(), space)

    handle = Study(space, device=args.device)
    t0 = time.perf_counter()
    runner = handle.runner  # the model loads here; the runner's timings are what this measures
    load_seconds = time.perf_counter() - t0
    runtime = runner.runtime
    rows = []
    for i in range(args.repeats):
        timings: dict[str, float] = {}
        t1 = time.perf_counter()
        result, train = runner.fit(config, seed=i, timings=timings)
        rows.append(
            {
                **{k: round(v, 3) for k, v in timings.items()},
                "total": round(time.perf_counter() - t1, 3),
                "epochs": result.epochs_run,
                "dev": result.best_score,
                "prompt_tokens_mean": train.mean_tokens,
            }
        )
    import torch

    outcome = {
        **record_header("trial_time", threads=torch.get_num_threads(), device=str(runtime.device)),
        "space": str(args.space),
        "params": config.params,
        "model_load_seconds": round(load_seconds, 3),
        "trials": rows,
    }
    lines = [
        "| trial | restore s | tokenize s | train s | eval s | total s | epochs | prompt tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {r['restore']} | {r['tokenize']} | {r['train']} | {r['eval']} | {r['total']} | {r['epochs']} | "
        f"{r['prompt_tokens_mean']:.1f} |"
        for i, r in enumerate(rows)
    ]
    table = f"Model load (once per process): {load_seconds:.2f} s on {runtime.device}\n\n" + "\n".join(lines) + "\n"
    write_results(args.out, "trial_time", outcome, table)
    print(table)


if __name__ == "__main__":
    main()
