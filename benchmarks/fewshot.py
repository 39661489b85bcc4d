"""Few-shot accuracy: promptsearch against plain fine-tuning, Trainer HPO, SetFit and SmolLM2 zero-shot, on
LM-BFF's 16-shot protocol, with the three targets of issue 15 (winner vs SetFit, winner vs its own baseline,
selection regret).

Data: LM-BFF's 16-shot splits ``k-shot/<TASK>/16-<seed>/`` (16 rows per class in train and 16 in dev) for SST-2,
MR, SUBJ, RTE and MRPC; for AG News, 16 per class (train and dev) drawn from ``agnews/train.jsonl`` with the
seed. Test: the task's LM-BFF test file, capped by ``--max-test`` to a seeded sample. Every method gets the same
train and dev rows; how each uses them:

- ``finetune`` (plain fine-tuning, MiniLM with a classification head on the text alone; lr 2e-5, batch 8, the
  space's epochs): promptsearch's baseline. Cross-validated over train and dev to choose its epoch, then
  trained on all of them and tested: the same final rule as promptsearch's pick;
- ``hpo``: ``Trainer.hyperparameter_search`` (Optuna) over MiniLM's training values in the task's space, no
  prompt: trains on train, chooses on dev, the best values trained again and tested;
- ``setfit``: SetFit with the MiniLM body (1 epoch, 20 pair iterations, as in the SetFit paper), trained on
  train and dev together (SetFit chooses nothing, so dev is more training rows);
- ``smollm2 zero-shot``: SmolLM2-135M-Instruct with the space's first template and label words, no
  instruction, no demonstrations, no calibration: nothing is chosen, dev is unused;
- ``promptsearch``: the space shipped for the task (``search_spaces/fewshot/<task>.yaml``: SmolLM2 in context or
  MiniLM fine-tuned), its data set to the seed's split, ``--n-trials`` trials + its baseline, its default
  scoring (cross-validation / leave-one-out over train and dev), race and one final seed. Its pick's test score
  is the row; the run also records its baseline's, the verdict, and every trial's test score (an oracle
  that reads test, here only) for the selection regret.

Targets (issue 15), on the mean over SST-2, MR and SUBJ: promptsearch >= SetFit + 3 points and >= 77; its
pick beats its baseline on test in >= 80 % of (task, seed) runs; median selection regret <= 3 points.

    python benchmarks/fewshot.py --data-dir ../shared/data --tasks sst2,mr,subj --seeds 13,21,42,87,100 \\
        --max-test 500 --out benchmarks/results --resume

Several machines (or processes) can run disjoint seeds into their own ``--out`` folders;
``--merge A B ...`` then joins their ``fewshot.json`` into ``--out``. ``--smoke`` runs every method on tiny
random models built offline (seconds; for CI).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
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

SETFIT = {"batch_size": 16, "num_epochs": 1}  # SetFit's defaults; pairs per run: --setfit-iterations
TARGET_TASKS = ("sst2", "mr", "subj")  # the targets are judged on the mean over these


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    kshot: str | None  # LM-BFF's folder name under k-shot/; None: few-shot sampled from a full train file

    @property
    def space(self) -> Path:
        return REPO / "search_spaces" / "fewshot" / f"{self.name}.yaml"


TASKS = {
    t.name: t
    for t in [
        Task("sst2", "SST-2", "SST-2"),
        Task("mr", "MR", "mr"),
        Task("subj", "SUBJ", "subj"),
        Task("rte", "RTE", "RTE"),
        Task("mrpc", "MRPC", "MRPC"),
        Task("agnews", "AG News", None),
    ]
}
METHODS = ["finetune", "hpo", "setfit", "smollm2 zero-shot", "promptsearch", "promptsearch embedding"]
GROUPS = {  # --methods names -> the rows they produce, in the order they run (a --time-limit cuts the last)
    "search": ["finetune", "promptsearch"],
    "setfit": ["setfit"],
    "zeroshot": ["smollm2 zero-shot"],
    "hpo": ["hpo"],
    "embedding": ["promptsearch embedding"],
}
USES = {  # how each method uses the labelled rows (the table's notes)
    "finetune": "cross-validates train+dev for its epoch, trains on all",
    "hpo": "trains on train, chooses on dev",
    "setfit": "trains on train+dev, chooses nothing",
    "smollm2 zero-shot": "uses neither",
    "promptsearch": "scores trials and races on train+dev (folds / leave-one-out), final model on all",
    "promptsearch embedding": "as promptsearch",
}
# ``promptsearch embedding`` (issue 20): the task's space with MiniLM's embedding head alone, methods embedding
# (a logistic regression on the frozen body) and contrastive (SetFit's recipe), the same budget as promptsearch
SETFIT_MODEL = {
    "id": "minilm-setfit",
    "name": "default",
    "head": "embedding",
    "max_length": 128,
    "train": {
        "method": ["embedding", "contrastive"],
        "learning_rate": 2.0e-5,
        "epochs": 1,
        "batch_size": 16,
        "pairs_per_row": [5, 20],
        "logistic_c": {"low": 0.1, "high": 10.0, "log": True},
    },
}


# --- data and spaces ----------------------------------------------------------------------------------------


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


def _space_raw(task: Task, seed_data: dict[str, Any], seed: int, n_trials: int, models: dict[str, Any]) -> dict:
    """The task's shipped space on the seed's split, ``n_trials`` trials, one final seed (smoke: tiny models)."""
    raw = yaml.safe_load(task.space.read_text(encoding="utf-8"))
    raw["name"] = f"{task.name}-{seed}"
    raw["task"].pop("few_shot", None)
    raw["task"].pop("data", None)
    raw["task"].update(copy.deepcopy(seed_data))
    raw["search"].update({"n_trials": n_trials, "final_seeds": 1})
    for model in raw["model"]:
        model["name"] = models["causal"] if model["head"] == "causal" else models["encoder"] or model["name"]
        if models["smoke"] and "epochs" in model.get("train", {}):
            model["train"]["epochs"] = 1
    if models["smoke"]:
        raw["baseline"]["epochs"] = 1
    return raw


def _embedding_only(raw: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """The space with MiniLM's embedding head alone (methods embedding and contrastive); the baseline stays
    plain fine-tuning of a classification head on the same body."""
    out = copy.deepcopy(raw)
    setfit = copy.deepcopy(SETFIT_MODEL)
    setfit["name"] = models["encoder"] or setfit["name"]
    if models["smoke"]:
        setfit["train"]["pairs_per_row"] = 1
    out["model"] = [setfit]
    for key in ("calibration", "chat"):  # label-word and chat settings of the causal model
        out["prompt"].pop(key, None)
    out["baseline"] = {k: v for k, v in out["baseline"].items() if k != "model"}
    return out


def _model(raw: dict[str, Any], head: str) -> dict[str, Any]:
    return next(m for m in raw["model"] if m["head"] == head)


def _bench_space(raw: dict[str, Any]) -> Any:
    from promptsearch import Space

    return Space.from_dict(raw, path=REPO / "search_spaces" / "fewshot" / "bench.yaml")


def materialize_causal(folder: Path) -> str:
    """SmolLM2 dequantised from its GGUF once and saved as safetensors: each study then loads it in about a
    second instead of a minute. The weights are the ones the GGUF gives (transformers dequantises on load)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptsearch.models.runtime import resolve_model
    from promptsearch.space.spec import ModelSpec

    if (folder / "config.json").is_file():
        return str(folder)
    name, gguf = resolve_model(ModelSpec(name="smollm2", head="causal"))
    loaded = AutoModelForCausalLM.from_pretrained(name, gguf_file=gguf)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses save_pretrained; a plain copy does not
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(folder)
    AutoTokenizer.from_pretrained(name, gguf_file=gguf).save_pretrained(folder)
    return str(folder)


# --- methods -----------------------------------------------------------------------------------------------------


def run_search(raw: dict[str, Any], device: str) -> dict[str, dict[str, Any]]:
    """One promptsearch study in memory: rows for its baseline (``finetune``) and its pick (``promptsearch``),
    with the verdict and every trial's test score (the oracle of the selection regret)."""
    import warnings

    from promptsearch import ExperimentalWarning, Study
    from promptsearch.study.final import evaluate_config
    from promptsearch.study.protocol import Protocol
    from promptsearch.study.records import baseline_trial, searched_best_trial, stored_race, trial_records

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study = Study(_bench_space(raw), device=device).optimize()
        final = study.final_evaluation()
    seconds = time.perf_counter() - t0
    assert final is not None, "the benchmark's spaces have a test split"
    best, base = study.best_trial, baseline_trial(study.optuna_study)
    assert best is not None and base is not None
    pick, base_test = final["best"]["test"]["mean"], final["baseline"]["test"]["mean"]
    race = stored_race(study.optuna_study) or {}
    race_mean = next((s["mean"] for s in race.get("standings", []) if s["trial"] == best.number), None)

    t1 = time.perf_counter()
    protocol = Protocol(study.runner)
    oracle: dict[str, float] = {str(best.number): pick, str(base.number): base_test}
    for record in trial_records(study.optuna_study):
        if record.is_complete and record.config is not None and str(record.number) not in oracle:
            outcome, _, _ = evaluate_config(protocol, record, record.config, 1)
            oracle[str(record.number)] = outcome["test"]["mean"]
    params = study.optuna_study.trials[best.number].params
    verdict = final["verdict"]
    # search.finalists: 0 would have taken the best search value: its test score, for the race's worth
    searched = searched_best_trial(study.optuna_study)
    values = {str(r.number): r.dev for r in trial_records(study.optuna_study) if r.is_complete and r.dev is not None}
    return {
        "finetune": {"test": base_test, "dev": base.dev, "seconds": round(_trial_seconds(study, base.number), 2)},
        "promptsearch": {
            "test": pick,
            "dev": best.dev,
            "race_mean": race_mean,
            "seconds": round(seconds, 2),
            "oracle_seconds": round(time.perf_counter() - t1, 2),
            "baseline_test": base_test,
            "beats_baseline": pick > base_test,
            "picked_baseline": bool(best.is_baseline),
            "verdict": {k: verdict[k] for k in ("label", "delta", "ci_low", "ci_high")},
            "gap_warning": final.get("gap_warning") is not None,
            "pick": {"trial": best.number, "model": best.config.model if best.config else None, "params": params},
            "oracle": oracle,
            "oracle_best": max(oracle.values()),
            "regret": max(oracle.values()) - pick,
            "trials": len(oracle),
            "search_values": values,
            "no_race_pick": None if searched is None else searched.number,
            "no_race_test": None if searched is None else oracle.get(str(searched.number)),
        },
    }


def _trial_seconds(study: Any, number: int) -> float:
    trial = study.optuna_study.trials[number]
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def run_zero_shot(raw: dict[str, Any], device: str) -> dict[str, Any]:
    """SmolLM2 with the space's first template and label words; no instruction, demonstrations or calibration."""
    import warnings

    from promptsearch import ExperimentalWarning, evaluate

    causal = {k: v for k, v in _model(raw, "causal").items() if k not in ("id", "train")}
    prompt = raw["prompt"]
    name, template = next(iter(prompt["template"].items()))
    words = next(iter(prompt["label_words"].values()))
    fixed = {
        "name": f"{raw['name']}-zero-shot",
        "task": raw["task"],
        "model": causal,
        "prompt": {"template": template, "label_words": words, "chat": False},
        "train": {"method": "none"},
    }
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        result = evaluate(_bench_space(fixed), None, device=device, seed=0)
    return {"test": result.test, "dev": result.dev, "seconds": round(time.perf_counter() - t0, 2), "prompt": name}


def run_hpo(raw: dict[str, Any], n_trials: int, seed: int, out: Path) -> dict[str, Any]:
    """Trainer HPO over MiniLM's training values of the space (no prompt), as a user of transformers runs it."""
    from promptsearch.io.data import load_task_data
    from promptsearch.models.runtime import resolve_model_name

    t0 = time.perf_counter()
    space = _bench_space(raw)
    task = space.spec.task
    data = load_task_data(task, space.base_dir)
    encoder = _model(raw, "classification")
    result = trainer_search(
        resolve_model_name(encoder["name"]),
        train=data.train,
        dev=data.dev,
        test=data.test,
        text_fields=task.text_fields,
        labels=task.labels,
        metric=task.metric,
        hp_space=hp_space_from(encoder["train"]),
        n_trials=n_trials,
        seed=seed,
        max_length=int(encoder.get("max_length", 128)),
        out=out / f"hpo-{raw['name']}",
    )
    return {**result, "seconds": round(time.perf_counter() - t0, 2)}


def run_setfit(raw: dict[str, Any], iterations: int, seed: int, out: Path) -> dict[str, Any]:
    """SetFit on train and dev together (it chooses nothing); the text fields of a pair are joined by a space."""
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

    name = resolve_model_name(_model(raw, "classification")["name"])
    model = SetFitModel.from_pretrained(name, labels=list(task.labels))
    args = TrainingArguments(
        output_dir=str(out / f"setfit-{raw['name']}"),
        num_iterations=iterations,
        seed=seed,
        report_to="none",
        show_progress_bar=False,
        save_strategy="no",
        **SETFIT,
    )
    rows = [*data.train, *data.dev]
    train = Dataset.from_dict({"text": texts(rows), "label": [ex.label for ex in rows]})
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
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def summarise(rows: list[dict[str, Any]], tasks: list[str], methods: list[str]) -> list[dict[str, Any]]:
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        per_task = {t: [r["test"] for r in mine if r["task"] == t and r.get("test") is not None] for t in tasks}
        means = {t: statistics.fmean(v) for t, v in per_task.items() if v}
        target = [t for t in TARGET_TASKS if t in tasks]
        out.append(
            {
                "method": method,
                "tasks": {t: {"scores": v, "cell": _cell(v)} for t, v in per_task.items()},
                "average": statistics.fmean(means.values()) if len(means) == len(tasks) else None,
                "target_average": statistics.fmean(means[t] for t in target)
                if all(t in means for t in target) and target
                else None,
                "seconds": round(sum(r["seconds"] for r in mine if r.get("seconds") is not None), 1),
                "runs": len(mine),
                "errors": sorted({r["error"] for r in mine if r.get("error")}),
            }
        )
    return out


def targets(rows: list[dict[str, Any]], summary: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    """Issue 15's three targets on SST-2, MR and SUBJ, and the same figures per task."""
    ps = [r for r in rows if r["method"] == "promptsearch" and r.get("test") is not None]
    by = {s["method"]: s for s in summary}

    def figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
        if not runs:
            return {"runs": 0}
        regrets = [100 * r["regret"] for r in runs]
        deltas = [100 * (r["test"] - r["baseline_test"]) for r in runs]
        raced = [100 * (r["test"] - r["no_race_test"]) for r in runs if r.get("no_race_test") is not None]
        return {
            "runs": len(runs),
            "race_gain": None
            if not raced
            else {
                "mean": statistics.fmean(raced),
                "std": statistics.stdev(raced) if len(raced) > 1 else 0.0,
                "runs": len(raced),
                "changed": sum(1 for x in raced if x != 0),
            },
            "beats_baseline": sum(r["beats_baseline"] for r in runs) / len(runs),
            "verdicts": {
                lab: sum(r["verdict"]["label"] == lab for r in runs)
                for lab in ("better", "no clear difference", "worse")
            },
            "delta_vs_baseline": {
                "mean": statistics.fmean(deltas),
                "std": statistics.stdev(deltas) if len(deltas) > 1 else 0.0,
            },
            "regret": {
                "median": statistics.median(regrets),
                "mean": statistics.fmean(regrets),
                "std": statistics.stdev(regrets) if len(regrets) > 1 else 0.0,
            },
            "picked_baseline": sum(r["picked_baseline"] for r in runs),
            "picked_model": {
                m: sum((r["pick"]["model"] or "") == m for r in runs)
                for m in sorted({r["pick"]["model"] or "" for r in runs})
            },
        }

    on = [t for t in TARGET_TASKS if t in tasks]
    main = figures([r for r in ps if r["task"] in on])
    ps_avg = (by.get("promptsearch") or {}).get("target_average")
    setfit_avg = (by.get("setfit") or {}).get("target_average")
    met = {
        "setfit_plus_3": None if ps_avg is None or setfit_avg is None else ps_avg >= setfit_avg + 0.03,
        "at_least_77": None if ps_avg is None else ps_avg >= 0.77,
        "beats_baseline_80pct": None if not main["runs"] else main["beats_baseline"] >= 0.8,
        "median_regret_3": None if not main["runs"] else main["regret"]["median"] <= 3.0,
    }
    return {
        "tasks": on,
        "promptsearch_average": ps_avg,
        "setfit_average": setfit_avg,
        "overall": main,
        "met": met,
        "per_task": {t: figures([r for r in ps if r["task"] == t]) for t in tasks},
    }


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "**not met**")


def targets_text(t: dict[str, Any], tasks: list[str]) -> str:
    o, met = t["overall"], t["met"]
    if not o["runs"]:
        return ""
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [
        f"\n## Targets (issue 15), over {', '.join(TASKS[x].title for x in t['tasks'])}: {o['runs']} runs\n",
        f"- promptsearch {pct(t['promptsearch_average'])} vs SetFit {pct(t['setfit_average'])} + 3: "
        f"{_yes(met['setfit_plus_3'])}; at least 77: {_yes(met['at_least_77'])}",
        f"- pick beats its own baseline on test in {100 * o['beats_baseline']:.0f} % of runs (target 80 %): "
        f"{_yes(met['beats_baseline_80pct'])}; verdicts {o['verdicts']}",
        f"- selection regret (best trial's test − pick's test, points): median {o['regret']['median']:.1f}, "
        f"mean {o['regret']['mean']:.1f} ± {o['regret']['std']:.1f} (target median ≤ 3): "
        f"{_yes(met['median_regret_3'])}",
        f"- picks by model: {o['picked_model']}; the baseline picked in {o['picked_baseline']} runs",
        *(
            [
                f"- the race (search.finalists) vs taking the best search value: pick's test "
                f"{o['race_gain']['mean']:+.1f} ± {o['race_gain']['std']:.1f} points over {o['race_gain']['runs']} "
                f"runs; different test score in {o['race_gain']['changed']}"
            ]
            if o.get("race_gain")
            else []
        ),
        "\n| task | runs | pick − baseline (points) | beats baseline | verdicts better / unclear / worse "
        "| regret median | regret mean ± std |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for task in tasks:
        f = t["per_task"][task]
        if not f["runs"]:
            continue
        v = f["verdicts"]
        lines.append(
            f"| {TASKS[task].title} | {f['runs']} "
            f"| {f['delta_vs_baseline']['mean']:+.1f} ± {f['delta_vs_baseline']['std']:.1f} "
            f"| {100 * f['beats_baseline']:.0f} % | {v['better']} / {v['no clear difference']} / {v['worse']} "
            f"| {f['regret']['median']:.1f} | {f['regret']['mean']:.1f} ± {f['regret']['std']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _embedding_text(summary: list[dict[str, Any]], tasks: list[str]) -> str:
    """Issue 20's target: promptsearch restricted to the embedding methods within 1 point of SetFit, per task."""
    by = {s["method"]: s for s in summary}
    if "promptsearch embedding" not in by or "setfit" not in by:
        return ""
    lines = ["\n## Embedding methods vs SetFit (issue 20: within 1 point on each task)\n",
             "| task | promptsearch embedding − SetFit (points) | within 1 point |", "|---|---:|---|"]  # fmt: skip
    for task in tasks:
        mine, theirs = by["promptsearch embedding"]["tasks"][task]["scores"], by["setfit"]["tasks"][task]["scores"]
        if mine and theirs:
            delta = 100 * (statistics.fmean(mine) - statistics.fmean(theirs))
            lines.append(f"| {TASKS[task].title} | {delta:+.1f} | {'yes' if delta >= -1.0 else '**no**'} |")
    return "\n".join(lines) + "\n"


def table(summary: list[dict[str, Any]], tasks: list[str]) -> str:
    head = "| method | " + " | ".join(TASKS[t].title for t in tasks) + " | average | wall time (s) | labelled rows |\n"
    head += "|---|" + "---:|" * (len(tasks) + 2) + "---|\n"
    body = ""
    for s in summary:
        avg = "n/a" if s["average"] is None else f"{100 * s['average']:.1f}"
        cells = " | ".join(s["tasks"][t]["cell"] for t in tasks)
        body += f"| {s['method']} | {cells} | {avg} | {s['seconds']:.0f} | {USES[s['method']]} |\n"
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
    ax.set_title("Few-shot test scores (16 per class); error bars: std over split seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    """What must match for --resume and --merge to join runs."""
    return {
        "n_trials": args.n_trials,
        "max_test": args.max_test,
        "setfit": {**SETFIT, "num_iterations": args.setfit_iterations},
        "final_seeds": 1,
    }


def _earlier(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    earlier = json.loads(path.read_text(encoding="utf-8"))
    found = {k: earlier.get("budget", {}).get(k) for k in _budget(args)}
    if found != _budget(args):
        raise SystemExit(f"{path} was run with another budget: {found}, not {_budget(args)}")
    return earlier


def summarize(rows: list[dict[str, Any]], args: argparse.Namespace, *, final: bool) -> str:
    """The table, the targets and their notes; outside smoke mode also ``fewshot.{md,json,png}`` under ``--out``."""
    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)] or args.task_list
    summary = summarise(rows, tasks, METHODS)
    goal = targets(rows, summary, tasks)
    seeds = sorted({r["seed"] for r in rows})
    metrics = {
        t: yaml.safe_load(TASKS[t].space.read_text(encoding="utf-8"))["task"].get("metric", "accuracy") for t in tasks
    }
    devices = sorted({r.get("device", args.device) for r in rows})
    note = (
        f"\nTest score (%): mean ± std over LM-BFF split seeds {seeds} (n/a: not run or failed). "
        f"Metrics: {', '.join(f'{TASKS[t].title} {m}' for t, m in metrics.items())}. "
        f"Test: {args.max_test or 'all'} rows per task (a seeded sample of the LM-BFF test file). "
        f"Budget: promptsearch {args.n_trials} sampled trials + its baseline, its default scoring and race, one final "
        f"seed; Trainer HPO {args.n_trials} trials; SetFit {SETFIT['num_epochs']} epoch, batch {SETFIT['batch_size']}, "
        f"{args.setfit_iterations} pair iterations. finetune is promptsearch's baseline; promptsearch's time includes "
        f"it, the race and the final test (not the oracle's scoring of every trial). Wall time: the sum over runs, "
        f"device {', '.join(devices)}.\n"
    )
    errors = [f"- {s['method']}: {e}" for s in summary for e in s["errors"]]
    if errors:
        note += "\nErrors:\n" + "\n".join(errors) + "\n"
    if args.skipped:
        note += f"\nNot run (--time-limit reached): {args.skipped}\n"
    text = table(summary, tasks) + note + targets_text(goal, tasks) + _embedding_text(summary, tasks)
    if not args.smoke:
        record = {
            **record_header(
                "fewshot", threads=args.threads, device=args.device, packages=["setfit", "sentence-transformers"]
            ),
            "finished": final,
            "budget": {**_budget(args), "tasks": tasks, "seeds": seeds},
            "metrics": metrics,
            "summary": summary,
            "targets": goal,
            "runs": rows,
            "skipped": args.skipped,
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
    """Run one method (``fn`` returns its rows by method name) unless it is done or ``--time-limit`` passed.

    A failure becomes a row with its error (the table shows n/a), not a crashed benchmark; after each method
    the results so far are rewritten, so a stopped run still leaves its table.
    """
    done = {(r["task"], r["seed"], r["method"]) for r in rows}
    if all((base["task"], base["seed"], m) in done for m in GROUPS[base["group"]]):
        return  # done by an earlier run (--resume)
    if args.deadline is not None and time.perf_counter() > args.deadline:
        args.skipped.append(f"{base['task']} seed {base['seed']}: {base['group']}")
        return
    print(
        f"{time.strftime('%H:%M:%S')} {base['task']} seed {base['seed']}: {base['group']} ...",
        file=sys.stderr,
        flush=True,
    )
    info = {k: v for k, v in base.items() if k != "group"}
    try:
        found = fn()
    except Exception as exc:  # recorded, shown in the table's notes and in the JSON
        traceback.print_exc(file=sys.stderr)
        for method in GROUPS[base["group"]]:
            rows.append(
                {**info, "method": method, "test": None, "seconds": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
            )
        return
    for method, row in found.items():
        rows.append({**info, "method": method, **row})
        print(f"  {method}: test {row.get('test')} in {row.get('seconds')} s", file=sys.stderr, flush=True)
    if not args.smoke:
        summarize(rows, args, final=False)


def _run_seed(
    rows: list[dict[str, Any]], task: Task, seed: int, args: argparse.Namespace, models: dict[str, Any], tmp: Path
) -> None:
    data = _seed_data(task, args.data_dir, seed, args.max_test, tmp)
    raw = _space_raw(task, data, seed, args.n_trials, models)
    base = {"task": task.name, "seed": seed, "test_rows": args.max_test, "device": args.device}
    work: dict[str, Callable[[], dict[str, dict[str, Any]]]] = {
        "zeroshot": lambda: {"smollm2 zero-shot": run_zero_shot(raw, args.device)},
        "setfit": lambda: {"setfit": run_setfit(raw, args.setfit_iterations, seed, tmp)},
        "hpo": lambda: {"hpo": run_hpo(raw, args.n_trials, seed, tmp)},
        "search": lambda: run_search(raw, args.device),
        "embedding": lambda: {
            "promptsearch embedding": run_search(_embedding_only(raw, models), args.device)["promptsearch"]
        },
    }
    for group in args.groups:
        _attempt(rows, {**base, "group": group}, work[group], args)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, smoke="tiny random models, one seed, 1 trial", device="cpu")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="datasets in the layout of ../shared/data")
    parser.add_argument("--tasks", default="sst2,mr,subj", help=f"comma-separated, of {list(TASKS)}")
    parser.add_argument("--seeds", default="13,21,42,87,100", help="LM-BFF split seeds (comma-separated)")
    parser.add_argument("--methods", default=",".join(GROUPS), help=f"comma-separated, of {list(GROUPS)}")
    parser.add_argument("--n-trials", type=int, default=12, help="trials of promptsearch (+ baseline) and of the HPO")
    parser.add_argument("--max-test", type=int, default=500, help="test rows per task (a seeded sample); 0: all")
    parser.add_argument(
        "--setfit-iterations", type=int, default=20, help="SetFit num_iterations (pairs = 2 x it x rows)"
    )
    parser.add_argument(
        "--causal-model", type=Path, default=None, help="SmolLM2 saved as safetensors (made if missing)"
    )
    parser.add_argument("--time-limit", type=float, default=None, help="seconds; no method starts after them")
    parser.add_argument("--resume", action="store_true", help="keep the runs in --out/fewshot.json, run the rest")
    parser.add_argument(
        "--merge", type=Path, nargs="+", default=None, help="join these folders' fewshot.json into --out"
    )
    args = parser.parse_args(argv)
    args.start = time.perf_counter()
    args.deadline = None if args.time_limit is None else args.start + args.time_limit
    args.skipped = []
    args.max_test = args.max_test or None
    args.data_dir = args.data_dir.resolve()
    args.task_list = [t for t in args.tasks.split(",") if t]
    args.groups = [g for g in args.methods.split(",") if g]
    for name, given, known in [("--tasks", args.task_list, TASKS), ("--methods", args.groups, GROUPS)]:
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"{name}: unknown {unknown}; available: {list(known)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.merge:
        found = [folder / "fewshot.json" for folder in args.merge if (folder / "fewshot.json").is_file()]
        for folder in sorted(set(args.merge) - {f.parent for f in found}):
            print(f"--merge: {folder} has no fewshot.json (a run that wrote nothing); left out", file=sys.stderr)
        rows = []
        for path in found:
            try:
                rows += _earlier(path, args)["runs"]
            except json.JSONDecodeError as exc:  # a run killed while writing it
                print(f"--merge: {path} is not JSON ({exc}); left out", file=sys.stderr)
        print(summarize(rows, args, final=True))
        return 0
    quiet(args.threads)
    rows: list[dict[str, Any]] = []
    if args.resume and (args.out / "fewshot.json").is_file():
        rows = [r for r in _earlier(args.out / "fewshot.json", args)["runs"] if not r.get("error")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.smoke:
            models = {"smoke": True, "encoder": tiny_bert(tmp), "causal": tiny_causal(tmp)}
            seeds, args.n_trials, args.setfit_iterations, args.max_test = seeds[:1], 1, 1, 16
        else:
            causal: str | None = None
            if {"search", "zeroshot"} & set(args.groups):  # the methods that read SmolLM2
                causal = materialize_causal((args.causal_model or tmp / "smollm2").resolve())
            models = {"smoke": False, "encoder": None, "causal": causal}
        for seed in seeds:  # seed by seed: a --time-limit cuts the last seeds, not the last tasks
            for task_name in args.task_list:
                _run_seed(rows, TASKS[task_name], seed, args, models, tmp)
    text = summarize(rows, args, final=True)
    print(text)
    return 1 if args.smoke and any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
