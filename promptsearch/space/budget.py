"""Budget presets (``search.budget: light | medium | heavy``): how much a search spends, in one word.

A preset sets the four keys that decide what a run costs together: ``search.n_trials`` (how many configs are
tried), ``search.evaluation.folds`` (how many trainings score each one), ``search.finalists`` (how many are raced
again before test) and ``search.final_seeds`` (how many test runs compare the chosen config with the baseline),
in the spirit of DSPy's ``auto`` presets. A key the space writes wins over its preset. ``medium`` is the defaults
of a space that names no budget, so naming none changes nothing.

:data:`BUDGETS` is the one table: the schema's description, the ``--budget`` help and the docs read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptsearch.errors import did_you_mean

__all__ = ["BUDGETS", "BUDGET_KEYS", "MEDIUM", "BudgetPreset", "apply_budget", "budget_preset", "budget_table"]


@dataclass(frozen=True)
class BudgetPreset:
    """What one preset sets; ``why`` says what it is for and why these values."""

    name: str
    n_trials: int
    folds: int
    finalists: int
    final_seeds: int
    why: str

    @property
    def fold_trainings(self) -> int:
        """Trainings the search runs at most (the baseline and each sampled trial, once per fold, before pruning)."""
        return (self.n_trials + 1) * self.folds

    def describe(self) -> str:
        """``light: 8 trials, 2 folds, 1 finalist, 2 final seeds``."""
        finalists = f"{self.finalists} finalist{'s' if self.finalists != 1 else ''}"
        return f"{self.name}: {self.n_trials} trials, {self.folds} folds, {finalists}, {self.final_seeds} final seeds"


BUDGETS: Mapping[str, BudgetPreset] = {
    p.name: p
    for p in (
        BudgetPreset(
            "light",
            n_trials=8,
            folds=2,
            finalists=1,
            final_seeds=2,
            why="a first look: 2 folds train on half the labelled rows each (a third of medium's training per "
            "trial), 1 finalist still races the search's best against the baseline on fresh seeds, and 2 "
            "final seeds are the fewest that show a spread",
        ),
        BudgetPreset(
            "medium",
            n_trials=20,
            folds=4,
            finalists=3,
            final_seeds=3,
            why="the defaults: 4 folds train on three quarters of the rows, 3 finalists race before test",
        ),
        BudgetPreset(
            "heavy",
            n_trials=50,
            folds=5,
            finalists=5,
            final_seeds=5,
            why="a final comparison: 5 folds and 5 final seeds, as few-shot papers report mean (std) over 5 "
            "splits or seeds (LM-BFF, SetFit), and 5 finalists for a search 2.5 times as long",
        ),
    )
}
MEDIUM = BUDGETS["medium"]
BUDGET_KEYS = ("search.n_trials", "search.evaluation.folds", "search.finalists", "search.final_seeds")


def budget_preset(name: str) -> BudgetPreset:
    """The preset called ``name``; a ``ValueError`` naming the three otherwise."""
    preset = BUDGETS.get(name) if isinstance(name, str) else None
    if preset is None:
        hint = did_you_mean(name, BUDGETS) if isinstance(name, str) else ""
        raise ValueError(f"expected one of {', '.join(BUDGETS)}, but found {name!r}" + (f";{hint}" if hint else ""))
    return preset


def apply_budget(search: Mapping[str, Any]) -> dict[str, Any]:
    """The ``search`` section (as written) with its preset's values for the budget keys it does not write.

    A section without ``budget`` comes back unchanged; an unknown name too (the schema's check reports it).
    ``evaluation.folds`` is filled only in ``mode: cv`` (``mode: dev`` is one train/dev split).
    """
    name = search.get("budget")
    if name is None or not isinstance(name, str) or name not in BUDGETS:
        return dict(search)
    preset = BUDGETS[name]
    out = dict(search)
    for key in ("n_trials", "finalists", "final_seeds"):
        if out.get(key) is None:
            out[key] = getattr(preset, key)
    evaluation = out.get("evaluation")
    if evaluation is None:
        out["evaluation"] = {"folds": preset.folds}
    elif isinstance(evaluation, Mapping) and "folds" not in evaluation and evaluation.get("mode") != "dev":
        out["evaluation"] = {**evaluation, "folds": preset.folds}
    return out


def budget_table() -> str:
    """The presets as a Markdown table (the docs print it)."""
    rows = [
        "| budget | search.n_trials | search.evaluation.folds | search.finalists | search.final_seeds | why |",
        "|---|---|---|---|---|---|",
    ]
    for p in BUDGETS.values():
        rows.append(f"| {p.name} | {p.n_trials} | {p.folds} | {p.finalists} | {p.final_seeds} | {p.why} |")
    return "\n".join(rows)
