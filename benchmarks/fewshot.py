"""Few-shot accuracy: promptsearch against plain fine-tuning, Trainer HPO, SetFit and SmolLM2, LM-BFF's protocol.

16 examples per class: the 16-shot train/dev splits ``k-shot/<TASK>/16-<seed>/`` of LM-BFF for SST-2, MR,
SUBJ, RTE and MRPC, and for AG News 16 per class (train and dev) drawn from ``agnews/train.jsonl`` by
promptsearch's own few-shot sampling with the seed. Test: the task's LM-BFF test file
(``k-shot/<TASK>/test.jsonl``; ``agnews/test.jsonl``), capped by ``--max-test`` to a seeded sample.

Methods, all on the embedded all-MiniLM-L6-v2 unless named:

- ``finetune``: plain fine-tuning as a typical user runs it (classification head on the text alone, lr 2e-5,
  batch 8, 10 epochs). It is trial 0 of the promptsearch run (every study starts with it); its test score is
  the final evaluation's retrain, kept at its best dev epoch, and its time is that trial's;
- ``hpo``: ``Trainer.hyperparameter_search`` (Optuna backend) over the training values of the task's shipped
  space, no prompt, ``--n-trials`` trials, then the best values retrained and tested;
- ``setfit``: SetFit with the MiniLM body (contrastive pairs, logistic-regression head);
- ``promptsearch``: the space shipped for the task (``search_spaces/<task>.yaml``) with its data replaced by
  the seed's split, ``--n-trials`` sampled trials (+ the baseline), one final seed;
- ``smollm2 zero-shot``: SmolLM2-135M-Instruct scoring label words after a fixed simple prompt;
- ``promptsearch smollm2``: a causal-head space per task in the shape of ``sst2-smollm2.yaml``, in-context
  only (``train.method: none``: instruction, label words and demonstrations searched; no chat template).

    python benchmarks/fewshot.py --data-dir ../shared/data --seeds 13,21 --n-trials 4 --max-test 500 \\
        --out benchmarks/results

``--smoke`` runs every method on tiny random models built offline (seconds; for CI).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import (  # noqa: E402
    bench_parser,
    cap_lines,
    hp_space_from,
    quiet,
    record_header,
    tiny_bert,
    tiny_causal,
    trainer_search,
    write_results,
)

PLAIN = {"learning_rate": 2e-5, "batch_size": 8, "epochs": 10}  # plain fine-tuning as a typical user runs it
SETFIT = {"batch_size": 16, "num_epochs": 1}  # SetFit's defaults; the pairs per run are --setfit-iterations


@dataclass(frozen=True)
class Causal:
    """SmolLM2 prompts for a task: the zero-shot prompt is the first template and words, no instruction."""

    templates: dict[str, str]
    words: dict[str, dict[str, str]]
    instruction: str
    max_demos: int = 2  # demonstrations searched: 0, half of it, all of it


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    kshot: str | None  # LM-BFF's folder name under k-shot/; None: few-shot sampled from a full train file
    causal: Causal = field(repr=False)

    @property
    def space(self) -> Path:
        return REPO / "search_spaces" / f"{self.name}.yaml"


_SENTIMENT = Causal(
    templates={"review": "Review: {text}\nSentiment: {label}", "cloze": "{text} It was {label}."},
    words={
        "names": {"negative": "negative", "positive": "positive"},
        "great": {"negative": "terrible", "positive": "great"},
    },
    instruction="Is the sentiment of this movie review positive or negative?",
)
TASKS = {
    t.name: t
    for t in [
        Task("sst2", "SST-2", "SST-2", _SENTIMENT),
        Task("mr", "MR", "mr", _SENTIMENT),
        Task(
            "subj",
            "SUBJ",
            "subj",
            Causal(
                templates={"sentence": "Sentence: {text}\nSubjective or objective: {label}"},
                words={
                    "names": {"subjective": "subjective", "objective": "objective"},
                    "opinion": {"subjective": "opinion", "objective": "fact"},
                },
                instruction="Is this sentence a personal opinion (subjective) or a statement of fact (objective)?",
            ),
        ),
        Task(
            "rte",
            "RTE",
            "RTE",
            Causal(
                templates={"qa": "{text_a}\nQuestion: {text_b} True or false?\nAnswer: {label}"},
                words={
                    "true_false": {"entailment": "true", "not_entailment": "false"},
                    "yes_no": {"entailment": "yes", "not_entailment": "no"},
                },
                instruction="Does the first sentence imply the second?",
                max_demos=1,
            ),
        ),
        Task(
            "mrpc",
            "MRPC",
            "MRPC",
            Causal(
                templates={"qa": "Sentence 1: {text_a}\nSentence 2: {text_b}\nSame meaning? {label}"},
                words={
                    "yes_no": {"equivalent": "yes", "not_equivalent": "no"},
                    "same": {"equivalent": "same", "not_equivalent": "different"},
                },
                instruction="Do the two sentences mean the same thing?",
                max_demos=1,
            ),
        ),
        Task(
            "agnews",
            "AG News",
            None,
            Causal(
                templates={"topic": "Article: {text}\nTopic: {label}"},
                words={
                    "names": {"world": "world", "sports": "sports", "business": "business", "sci/tech": "technology"},
                    "short": {"world": "politics", "sports": "sport", "business": "economy", "sci/tech": "science"},
                },
                instruction="What is the topic of this news article: world, sports, business or technology?",
                max_demos=4,  # balanced: one of each class
            ),
        ),
    ]
}
METHODS = ["finetune", "hpo", "setfit", "promptsearch", "smollm2 zero-shot", "promptsearch smollm2"]
GROUPS = {  # --methods names -> the rows they produce
    "search": ["finetune", "promptsearch"],
    "hpo": ["hpo"],
    "setfit": ["setfit"],
    "smollm2": ["smollm2 zero-shot", "promptsearch smollm2"],
}


# --- data ------------------------------------------------------------------------------------------------------


def _seed_data(task: Task, root: Path, seed: int, max_test: int | None, tmp: Path) -> dict[str, Any]:
    """``task.data`` (and ``few_shot``) of the space for ``seed``: the LM-BFF split or a sampled one."""
    if task.kshot is None:  # AG News: a full train file, promptsearch samples 16 per class for train and dev
        folder = root / task.name
        train, test = folder / "train.jsonl", folder / "test.jsonl"
        if not train.is_file() or not test.is_file():
            raise SystemExit(f"--data-dir {root}: {task.name} needs {train} and {test}")
        capped = cap_lines(test, max_test, tmp / f"{task.name}-test-{max_test}.jsonl")
        return {
            "data": {"files": {"train": str(train), "test": str(capped)}},
            "few_shot": {"k": 16, "dev_k": 16, "seed": seed},
        }
    own = root / task.name  # the repository's data/ layout: <task>/16-13/ and test.jsonl (or a capped test-N.jsonl)
    for split, test in [
        (root / "k-shot" / task.kshot / f"16-{seed}", root / "k-shot" / task.kshot / "test.jsonl"),
        (
            own / f"16-{seed}",
            own / "test.jsonl" if (own / "test.jsonl").is_file() else next(own.glob("test*.jsonl"), own),
        ),
    ]:
        if split.is_dir() and test.is_file():
            capped = cap_lines(test, max_test, tmp / f"{task.name}-test-{max_test}.jsonl")
            return {"data": {"dir": str(split), "files": {"test": str(capped)}}}
    raise SystemExit(
        f"--data-dir {root}: no k-shot/{task.kshot}/16-{seed}/ with k-shot/{task.kshot}/test.jsonl "
        f"(nor {task.name}/16-{seed}/ with {task.name}/test.jsonl); the LM-BFF layout is described in data/README.md"
    )


def _minilm_space(task: Task, seed_data: dict[str, Any], seed: int, n_trials: int, smoke: str | None) -> dict[str, Any]:
    """The shipped space of ``task`` on the seed's data, with ``n_trials``, one final seed and the plain baseline."""
    raw = yaml.safe_load(task.space.read_text(encoding="utf-8"))
    raw["name"] = f"{task.name}-{seed}"
    raw["task"].pop("few_shot", None)
    raw["task"].update(seed_data)
    raw["search"].update({"n_trials": n_trials, "seed": seed, "final_seeds": 1})
    raw["baseline"] = dict(PLAIN)
    if smoke is not None:
        raw["model"]["name"] = smoke
        raw["train"]["epochs"] = 1
        raw["baseline"]["epochs"] = 1
    return raw


def _causal_space(task: Task, seed_data: dict[str, Any], seed: int, n_trials: int, model: str) -> dict[str, Any]:
    """In-context prompting with SmolLM2 (nothing trains): instruction, label words and demonstrations."""
    base = yaml.safe_load(task.space.read_text(encoding="utf-8"))["task"]
    c = task.causal
    counts = sorted({0, c.max_demos // 2, c.max_demos})
    return {
        "name": f"{task.name}-smollm2-{seed}",
        "task": {**{k: v for k, v in base.items() if k not in ("data", "few_shot")}, **seed_data},
        "model": {"name": model, "head": "causal", "max_length": 512, "multi_token": "sum"},
        "prompt": {
            "instruction": {"none": "", "task": c.instruction},
            "template": c.templates,
            "label_words": c.words,
            "demonstrations": {"count": counts, "selection": ["balanced", "similar"], "separator": "\n\n"},
            # No chat template: with it, SmolLM2-135M gave one answer to every SST-2 review (README, Heads).
            "chat": False,
        },
        "train": {"method": "none"},
        "search": {"seed": seed, "n_trials": n_trials, "final_seeds": 1, "pruner": {"type": "none"}},
        # Every study starts with a plain fine-tuning baseline (a classification head on the body): kept
        # cheap here (the head alone, one epoch), since SmolLM2 fine-tuning costs minutes a trial on a CPU.
        "baseline": {"method": "head", "epochs": 1, "learning_rate": 1e-3, "batch_size": 8},
    }


# --- methods -----------------------------------------------------------------------------------------------------


def _trial_seconds(trial: Any) -> float:
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def _bench_space(raw: dict[str, Any]) -> Any:
    """``raw`` as a space; relative paths start at ``search_spaces/``, like those of the shipped spaces."""
    from promptsearch import Space

    return Space.from_dict(raw, path=REPO / "search_spaces" / "bench.yaml")


def run_search(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One promptsearch study, in memory; rows for the baseline (plain fine-tuning) and for the best config."""
    import warnings

    from promptsearch import ExperimentalWarning, Study

    t0 = time.perf_counter()
    study = Study(_bench_space(raw), device="cpu").optimize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        finalists = {f.role: f for f in study.test_results}
    seconds = time.perf_counter() - t0
    base_trial = next(t for t in study.optuna_study.trials if t.user_attrs.get("baseline"))
    best, base = finalists.get("best"), finalists.get("baseline")
    return {
        "baseline": {
            "test": (base.test or {}).get("mean") if base else None,
            "dev": base.dev if base else None,
            "seconds": round(_trial_seconds(base_trial), 2),
        },
        "best": {
            "test": (best.test or {}).get("mean") if best else None,
            "dev": best.dev if best else None,
            "seconds": round(seconds, 2),
            "baseline_won": bool(best is not None and best.config.baseline),
            "params": best.config.params if best is not None else None,
        },
    }


def run_zero_shot(raw: dict[str, Any]) -> dict[str, Any]:
    """SmolLM2 with the task's first template and words, no instruction or demonstrations, nothing trained."""
    import warnings

    from promptsearch import ExperimentalWarning, evaluate
    from promptsearch.space.config import PromptConfig, TrainConfig, TrialConfig

    t0 = time.perf_counter()
    template = next(iter(raw["prompt"]["template"].values()))
    words = next(iter(raw["prompt"]["label_words"].values()))
    config = TrialConfig(
        prompt=PromptConfig(template=template, label_words=words),
        train=TrainConfig(method="none", epochs=0),
        head="causal",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        result = evaluate(_bench_space(raw), config, device="cpu", seed=0)
    return {"test": result.test, "dev": result.dev, "seconds": round(time.perf_counter() - t0, 2), "prompt": template}


def run_hpo(raw: dict[str, Any], n_trials: int, seed: int, out: Path) -> dict[str, Any]:
    from promptsearch.io.data import load_task_data
    from promptsearch.models.runtime import resolve_model_name

    t0 = time.perf_counter()
    space = _bench_space(raw)
    task = space.spec.task
    data = load_task_data(task, space.base_dir)
    result = trainer_search(
        resolve_model_name(raw["model"]["name"]),
        train=data.train,
        dev=data.dev,
        test=data.test,
        text_fields=task.text_fields,
        labels=task.labels,
        metric=task.metric,
        hp_space=hp_space_from(raw["train"]),
        n_trials=n_trials,
        seed=seed,
        max_length=space.spec.model.max_length,
        out=out / f"hpo-{raw['name']}",
    )
    return {**result, "seconds": round(time.perf_counter() - t0, 2)}


def run_setfit(raw: dict[str, Any], iterations: int, seed: int, out: Path) -> dict[str, Any]:
    """SetFit on the train split (dev unused: SetFit has no model selection); pairs are joined with a space."""
    from promptsearch.io.data import load_task_data
    from promptsearch.models.metrics import compute_metric
    from promptsearch.models.runtime import resolve_model_name

    try:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError as exc:
        raise RuntimeError(f"SetFit is not installed ({exc}): pip install 'promptsearch[bench]'") from None
    t0 = time.perf_counter()
    space = _bench_space(raw)
    task = space.spec.task
    data = load_task_data(task, space.base_dir)

    def texts(rows: list[Any]) -> list[str]:
        return [" ".join(ex.fields[f] for f in task.text_fields) for ex in rows]

    model = SetFitModel.from_pretrained(resolve_model_name(raw["model"]["name"]), labels=list(task.labels))
    args = TrainingArguments(
        output_dir=str(out / f"setfit-{raw['name']}"),
        num_iterations=iterations,
        seed=seed,
        report_to="none",
        show_progress_bar=False,
        save_strategy="no",
        **SETFIT,
    )
    train = Dataset.from_dict({"text": texts(data.train), "label": [ex.label for ex in data.train]})
    Trainer(model=model, args=args, train_dataset=train).train()
    pred = [str(p) for p in model.predict(texts(data.test), show_progress_bar=False)]
    gold = [task.labels.index(ex.label) for ex in data.test]
    score = compute_metric(task.metric, gold, [task.labels.index(p) for p in pred])
    return {"test": score, "seconds": round(time.perf_counter() - t0, 2)}


# --- report ------------------------------------------------------------------------------------------------------


def _cell(values: list[float]) -> str:
    if not values:
        return "n/a"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f} ({100 * statistics.stdev(values):.1f})" if len(values) > 1 else f"{mean:.1f}"


def summarise(rows: list[dict[str, Any]], tasks: list[str], methods: list[str]) -> list[dict[str, Any]]:
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        per_task = {t: [r["test"] for r in mine if r["task"] == t and r.get("test") is not None] for t in tasks}
        means = {t: statistics.fmean(v) for t, v in per_task.items() if v}
        errors = sorted({r["error"] for r in mine if r.get("error")})
        out.append(
            {
                "method": method,
                "tasks": {t: {"scores": v, "cell": _cell(v)} for t, v in per_task.items()},
                "average": statistics.fmean(means.values()) if len(means) == len(tasks) else None,
                "seconds": round(sum(r["seconds"] for r in mine if r.get("seconds") is not None), 1),
                "runs": len(mine),
                "errors": errors,
            }
        )
    return out


def table(summary: list[dict[str, Any]], tasks: list[str]) -> str:
    head = "| method | " + " | ".join(TASKS[t].title for t in tasks) + " | average | wall time (s) |\n"
    head += "|---|" + "---:|" * (len(tasks) + 2) + "\n"
    body = ""
    for s in summary:
        avg = "n/a" if s["average"] is None else f"{100 * s['average']:.1f}"
        cells = " | ".join(s["tasks"][t]["cell"] for t in tasks)
        body += f"| {s['method']} | {cells} | {avg} | {s['seconds']:.0f} |\n"
    return head + body


def plot(summary: list[dict[str, Any]], tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, len(summary))
    x = np.arange(len(tasks))
    for i, s in enumerate(summary):
        scores = [s["tasks"][t]["scores"] for t in tasks]
        means = [100 * statistics.fmean(v) if v else np.nan for v in scores]
        stds = [100 * statistics.stdev(v) if len(v) > 1 else 0.0 for v in scores]
        ax.bar(x + (i - (len(summary) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=s["method"])
    ax.set_xticks(x, [TASKS[t].title for t in tasks])
    ax.set_ylabel("test score (%), mean over seeds")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    ax.set_title("Few-shot test scores (16 per class); error bars: std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _resume(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The successful runs of an earlier ``--out/fewshot.json`` with the same budget (failed ones run again)."""
    path = args.out / "fewshot.json"
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text(encoding="utf-8"))
    same = {
        "n_trials": args.n_trials,
        "max_test": args.max_test,
        "setfit": {**SETFIT, "num_iterations": args.setfit_iterations},
        "smollm2": {"max_test": args.smollm2_max_test, "n_trials": args.smollm2_trials},
    }
    found = {k: earlier["budget"][k] for k in same}
    found["smollm2"] = {k: found["smollm2"][k] for k in same["smollm2"]}
    if found != same:
        raise SystemExit(f"--resume: {path} was run with another budget: {found}, not {same}")
    args.earlier_seconds = float(earlier.get("seconds_total", 0.0))
    return [r for r in earlier["runs"] if not r.get("error")]


def _not_run(skipped: list[tuple[str, int, str]]) -> str:
    """``sst2 seed 21: hpo, setfit; mr seed 21: all`` from the (task, seed, method) runs a time limit cut."""
    by: dict[tuple[str, int], list[str]] = {}
    for task, seed, method in skipped:
        by.setdefault((task, seed), []).append(method)
    return "; ".join(f"{TASKS[t].title} seed {s}: {', '.join(m)}" for (t, s), m in by.items())


def summarize(rows: list[dict[str, Any]], args: argparse.Namespace, *, final: bool) -> str:
    """The table and its notes; outside smoke mode also ``fewshot.{md,json,png}`` under ``--out``."""
    tasks, seeds, smollm_seeds = args.task_list, args.seed_list, args.smollm2_seed_list
    wanted = [m for m in METHODS if any(m in GROUPS[g] for g in args.groups)]
    summary = summarise(rows, tasks, wanted)
    budget = {
        "tasks": tasks,
        "seeds": seeds,
        "n_trials": args.n_trials,
        "max_test": args.max_test,
        "final_seeds": 1,
        "plain_finetune": PLAIN,
        "setfit": {**SETFIT, "num_iterations": args.setfit_iterations},
        "smollm2": {"seeds": smollm_seeds, "max_test": args.smollm2_max_test, "n_trials": args.smollm2_trials},
        "threads": args.threads,
        "time_limit": args.time_limit,
    }
    metrics = {
        t: yaml.safe_load(TASKS[t].space.read_text(encoding="utf-8"))["task"].get("metric", "accuracy") for t in tasks
    }
    elapsed = time.perf_counter() - args.start + args.earlier_seconds
    note = (
        f"\nTest score (%) mean (std) over LM-BFF split seeds {seeds} (no std: one seed; n/a: not run or failed); "
        f"SmolLM2 rows: seeds {smollm_seeds}, {args.smollm2_max_test} test rows, {args.smollm2_trials} trials, "
        "in-context only. "
        f"Metrics: {', '.join(f'{TASKS[t].title} {m}' for t, m in metrics.items())}. "
        f"Test: {args.max_test or 'all'} rows per task "
        "(a seeded sample of the LM-BFF test file; AG News: of its test file). "
        f"Budget: {args.n_trials} trials for promptsearch (+ its baseline) and for the Trainer HPO; one final seed; "
        f"SetFit {SETFIT['num_epochs']} epoch, batch {SETFIT['batch_size']}, num_iterations {args.setfit_iterations}. "
        "finetune = promptsearch's trial 0 (lr 2e-5, batch 8, 10 epochs, best dev epoch), its time that trial's; "
        "promptsearch's time includes it and the final retrain. "
        f"Wall time: the sum over tasks and seeds, on CPU with {args.threads} torch threads, on a 2-core machine "
        f"shared with other jobs (timings are noisy). Total {elapsed:.0f} s"
        + ("" if final else " so far (the run is still going)")
        + ".\n"
    )
    errors = [f"- {s['method']}: {e}" for s in summary for e in s["errors"]]
    if errors:
        note += "\nErrors:\n" + "\n".join(errors) + "\n"
    if args.skipped:
        note += f"\nNot run (--time-limit {args.time_limit:.0f} s reached): " + _not_run(args.skipped) + ".\n"
    text = table(summary, tasks) + note
    if not args.smoke:
        record = {
            **record_header(
                "fewshot", threads=args.threads, device="cpu", packages=["setfit", "sentence-transformers"]
            ),
            "finished": final,
            "budget": budget,
            "metrics": metrics,
            "summary": summary,
            "runs": rows,
            "skipped": args.skipped,
            "seconds_total": round(elapsed, 1),
        }
        write_results(args.out, "fewshot", record, text, title="Few-shot accuracy (LM-BFF protocol)")
        plot(summary, tasks, args.out / "fewshot.png")
    return text


# --- main --------------------------------------------------------------------------------------------------------


def _attempt(
    rows: list[dict[str, Any]],
    base: dict[str, Any],
    fn: Callable[[], dict[str, dict[str, Any]]],
    args: argparse.Namespace,
) -> None:
    """Run one method (``fn`` returns its rows by method name) unless ``--time-limit`` has passed.

    A failure becomes a row with its error (the table shows n/a), not a crashed benchmark; after each method
    the results written so far are rewritten, so a stopped run still leaves its table.
    """
    print(
        f"{time.strftime('%H:%M:%S')} {base['task']} seed {base['seed']}: {base['method']} ...",
        file=sys.stderr,
        flush=True,
    )
    if any(r["task"] == base["task"] and r["seed"] == base["seed"] and r["method"] == base["method"] for r in rows):
        return  # done by an earlier run (--resume)
    if args.deadline is not None and time.perf_counter() > args.deadline:
        args.skipped.append((base["task"], base["seed"], base["method"]))
        return
    try:
        found = fn()
    except Exception as exc:  # recorded, shown in the table's notes and in the JSON
        traceback.print_exc(file=sys.stderr)
        rows.append({**base, "test": None, "seconds": None, "error": f"{type(exc).__name__}: {exc}"[:300]})
        return
    for method, row in found.items():
        rows.append({**base, "method": method, **row})
        print(f"  {method}: test {row.get('test')} in {row.get('seconds')} s", file=sys.stderr, flush=True)
    if not args.smoke:
        summarize(rows, args, final=False)


def _run_seed(
    rows: list[dict[str, Any]],
    task: Task,
    seed: int,
    groups: list[str],
    args: argparse.Namespace,
    models: dict[str, str | None],
    tmp: Path,
) -> None:
    """Every method asked for on one task and split seed."""
    data = _seed_data(task, args.data_dir, seed, args.max_test, tmp)
    raw = _minilm_space(task, data, seed, args.n_trials, models["smoke"])
    base = {"task": task.name, "seed": seed, "test_rows": args.max_test}
    if "search" in groups:
        _attempt(
            rows,
            {**base, "method": "promptsearch"},
            lambda: dict(zip(GROUPS["search"], run_search(raw).values(), strict=True)),
            args,
        )
    if "hpo" in groups:
        _attempt(rows, {**base, "method": "hpo"}, lambda: {"hpo": run_hpo(raw, args.n_trials, seed, tmp)}, args)
    if "setfit" in groups:
        _attempt(
            rows,
            {**base, "method": "setfit"},
            lambda: {"setfit": run_setfit(raw, args.setfit_iterations, seed, tmp)},
            args,
        )
    if "smollm2" in groups and seed in args.smollm2_seed_list:
        small = _seed_data(task, args.data_dir, seed, args.smollm2_max_test, tmp)
        craw = _causal_space(task, small, seed, args.smollm2_trials, str(models["causal"]))
        base = {**base, "test_rows": args.smollm2_max_test}
        _attempt(
            rows, {**base, "method": "smollm2 zero-shot"}, lambda: {"smollm2 zero-shot": run_zero_shot(craw)}, args
        )
        _attempt(
            rows,
            {**base, "method": "promptsearch smollm2"},
            lambda: {"promptsearch smollm2": run_search(craw)["best"]},
            args,
        )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="tiny random models, one seed, 1 trial")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="datasets in the layout of ../shared/data")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {list(TASKS)}")
    parser.add_argument("--seeds", default="13,21,42,87,100", help="LM-BFF split seeds (comma-separated)")
    parser.add_argument("--methods", default=",".join(GROUPS), help=f"comma-separated, of {list(GROUPS)}")
    parser.add_argument("--n-trials", type=int, default=8, help="trial budget of promptsearch and of the Trainer HPO")
    parser.add_argument("--max-test", type=int, default=None, help="test rows per task (a seeded sample); all if unset")
    parser.add_argument(
        "--setfit-iterations", type=int, default=5, help="SetFit num_iterations (pairs = 2 x it x rows)"
    )
    parser.add_argument("--smollm2-seeds", default="13", help="split seeds of the SmolLM2 rows")
    parser.add_argument("--smollm2-max-test", type=int, default=200, help="test rows of the SmolLM2 rows")
    parser.add_argument("--smollm2-trials", type=int, default=4, help="sampled trials of promptsearch with SmolLM2")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds; no method starts after them")
    parser.add_argument("--resume", action="store_true", help="keep the runs in --out/fewshot.json, run the rest")
    args = parser.parse_args(argv)
    args.start = time.perf_counter()
    args.deadline = None if args.time_limit is None else args.start + args.time_limit
    args.skipped = []
    args.earlier_seconds = 0.0

    args.data_dir = args.data_dir.resolve()
    tasks = [t for t in args.tasks.split(",") if t]
    groups = [g for g in args.methods.split(",") if g]
    for name, given, known in [("--tasks", tasks, TASKS), ("--methods", groups, GROUPS)]:
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"{name}: unknown {unknown}; available: {list(known)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    smollm_seeds = [int(s) for s in args.smollm2_seeds.split(",") if s.strip()]
    quiet(args.threads)
    rows: list[dict[str, Any]] = _resume(args) if args.resume else []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models: dict[str, str | None] = {"smoke": None, "causal": "smollm2"}
        if args.smoke:
            models = {"smoke": tiny_bert(tmp), "causal": tiny_causal(tmp)}
            seeds, smollm_seeds = seeds[:1], seeds[:1]
            args.n_trials, args.smollm2_trials, args.setfit_iterations = 1, 1, 1
            args.max_test, args.smollm2_max_test = 16, 16
        args.smollm2_seed_list, args.seed_list, args.task_list, args.groups = smollm_seeds, seeds, tasks, groups
        for seed in seeds:  # seed by seed: a --time-limit cuts the last seeds, not the last tasks
            for task_name in tasks:
                _run_seed(rows, TASKS[task_name], seed, groups, args, models, tmp)
    text = summarize(rows, args, final=True)
    print(text)
    return 1 if args.smoke and any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
