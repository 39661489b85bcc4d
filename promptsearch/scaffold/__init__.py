"""``promptsearch init``: a search space written from a user's data (profile -> plan -> words -> write)."""

from __future__ import annotations

from promptsearch.scaffold.create import InitResult, default_name, init_space
from promptsearch.scaffold.plan import DataPlan, plan_data
from promptsearch.scaffold.profile import DataProfile, SplitProfile, profile_data
from promptsearch.scaffold.words import LabelWords, TextLengths, choose_label_words
from promptsearch.scaffold.write import space_text

__all__ = [
    "DataPlan",
    "DataProfile",
    "InitResult",
    "LabelWords",
    "SplitProfile",
    "TextLengths",
    "choose_label_words",
    "default_name",
    "init_space",
    "plan_data",
    "profile_data",
    "space_text",
]
