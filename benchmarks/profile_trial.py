"""Where an in-context trial's time goes: one SmolLM2 trial's scoring (leave-one-out over every labelled row, as
the search scores it) under torch.profiler and cProfile, for a fixed demonstration set and per-query ``similar``.

    python benchmarks/profile_trial.py --threads 1 --out benchmarks/results

Prints, per case, the wall seconds, the share of time in the model's forward passes (torch.profiler: the
``model forward`` record) against rendering, tokenizing and the rest (cProfile, by function), and the top
operators. ``--smoke`` runs a tiny random Llama (CI).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from _common import bench_parser, quiet, record_header, write_results  # noqa: E402
from throughput import search_space  # noqa: E402

CASES = {
    "2 fixed": {"prompt.demonstrations.selection": "fixed", "prompt.demonstrations.set": 0},
    "2 similar": {"prompt.demonstrations.selection": "similar", "prompt.demonstrations.set": 0},
}
COMMON = {
    "prompt.instruction": "classify",
    "prompt.template": "review",
    "prompt.label_words": "names",
    "prompt.demonstrations.count": 2,
    "prompt.chat": False,
}


def _params(space: Any, case: dict[str, Any]) -> dict[str, Any]:
    """The case's values for the parameters the space searches (names as the space spells them)."""
    wanted = {**COMMON, **case}
    out: dict[str, Any] = {}
    for name in space.params:
        for key, value in wanted.items():
            if name == key or name.endswith("." + key.split(".", 1)[1]) or name.endswith(key):
                out[name] = value
    return out


def _by_area(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of the outermost call of a few functions that name the areas of a trial."""
    areas = {
        "model forward": ("_wrapped_call_impl", "torch/nn/modules/module.py"),
        "tokenize": ("__call__", "transformers/tokenization_utils_base.py"),
        "render": ("render", "promptsearch/prompts/render.py"),
        "encode": ("get", "promptsearch/models/features.py"),
    }
    found = dict.fromkeys(areas, 0.0)
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for area, (name, where) in areas.items():
            if func == name and file.endswith(where):
                found[area] = max(found[area], ct)
    return found


def _top(stats: pstats.Stats, n: int = 12) -> str:
    """The ``n`` promptsearch and transformers functions with the most cumulative time."""
    rows = [
        (ct, f"{Path(file).parent.name}/{Path(file).name}:{func}")
        for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items()  # type: ignore[attr-defined]
        if "promptsearch/" in file or "transformers/" in file
    ]
    return "\n".join(f"  {ct:7.2f} s  {name}" for ct, name in sorted(rows, reverse=True)[:n])


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="a tiny random Llama", device="cpu")
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args(argv)
    quiet(args.threads)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from promptsearch import Space, Study, config_from
    from promptsearch.study.protocol import Protocol

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = args.model
        if args.smoke:
            from tiny import build_tiny_causal  # tests/tiny.py

            model = str(build_tiny_causal(tmp / "llama"))
        space = Space.from_yaml(search_space(tmp, model=model, trials=1, test_rows=8, old=False))
        study = Study(space, device=args.device)
        protocol = Protocol(study.runner)
        warm = {**COMMON, "prompt.demonstrations.count": 0, "prompt.demonstrations.selection": "fixed",
                "prompt.demonstrations.set": 0}  # fmt: skip
        protocol.score(config_from(space, _params(space, warm)), seed=0)  # the model warm, as for a later trial
        for name, case in CASES.items():
            config = config_from(space, _params(space, case))  # its prompts not yet encoded, as in a new trial
            t0 = time.perf_counter()
            prof = cProfile.Profile()
            with profile(activities=[ProfilerActivity.CPU]) as torch_prof:
                prof.enable()
                protocol.score(config, seed=0)
                prof.disable()
            wall = time.perf_counter() - t0
            stats = pstats.Stats(prof)
            areas = _by_area(stats)
            averages = torch_prof.key_averages()
            top = averages.table(sort_by="self_cpu_time_total", row_limit=8)
            total = sum(e.self_cpu_time_total for e in averages) or 1.0
            ops = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:6]
            operators = [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in ops]
            rows.append({"case": name, "wall_s": round(wall, 2), **{k: round(v, 2) for k, v in areas.items()},
                         "operators": operators})  # fmt: skip
            print(f"\n== {name}: {wall:.2f} s (profiled)\n{areas}\n{_top(stats)}\n{top}")
    table = "| case | wall s (profiled) | model forward s | tokenize s | render s | encode (render + tokenize) s |\n"
    table += "|---|---:|---:|---:|---:|---:|\n"
    for r in rows:
        table += (
            f"| {r['case']} | {r['wall_s']} | {r['model forward']} | {r['tokenize']} | {r['render']} | "
            f"{r['encode']} |\n"
        )
    table += "\nOperators by their share of the profiled operator time (self CPU), with their calls:\n\n"
    for r in rows:
        table += (
            f"- {r['case']}: "
            + ", ".join(f"`{o['op']}` {100 * o['share']:.0f}% ({o['calls']})" for o in r["operators"])
            + "\n"
        )
    note = (
        "\nOne in-context trial's scoring (leave-one-out over the 64 labelled rows of SST-2 16-shot seed 13, "
        f"`sst2-smollm2.yaml`, instruction, review template, 2 demonstrations), {args.threads} thread(s), after a "
        "warm-up call with another prompt (this prompt's rows not yet encoded, as in a new trial); cumulative "
        "seconds of the named functions under cProfile (which slows Python code, not torch kernels).\n"
    )
    print(table + note)
    if not args.smoke and args.out is not None:
        record = {**record_header("profile_trial", threads=args.threads, device=str(torch.device(args.device))),
                  "rows": rows}  # fmt: skip
        write_results(args.out, "profile_trial", record, table + note, title="Where an in-context trial's time goes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
