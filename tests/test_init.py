"""`promptsearch init`: data files that are not shipped, written here, in; a space that validates and runs out.

The fast tests read the data and write the space without the models' tokenizers (the label words are then the
class names); the slow ones run ``init`` as users do (with the installed models' tokenizers), validate the file
as written, and run a search on it with the tiny model in place of the listed ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptsearch.cli import main
from promptsearch.errors import ConfigError, DataError
from promptsearch.io.data import load_task_data
from promptsearch.scaffold import (
    choose_label_words,
    default_name,
    init_space,
    plan_data,
    profile_data,
    space_text,
)
from promptsearch.scaffold.models import MINILM, SETFIT, SMOLLM2
from promptsearch.scaffold.words import ModelTokens, text_lengths
from promptsearch.scaffold.write import SpaceOptions
from promptsearch.space.search_space import load_space
from promptsearch.study.checks import check_space_data

REPO = Path(__file__).resolve().parents[1]
SST2_TEXTS = [
    json.loads(line)["text"]
    for name in ("train.jsonl", "dev.jsonl")
    for line in (REPO / "data" / "sst2" / "16-13" / name).read_text(encoding="utf-8").splitlines()
]
TOPICS = ["business", "sci/tech", "sports", "weather", "world"]  # 'weather' is the rare class


# --- the three data files of the issue, written here --------------------------------------------------------


def write_csv(path: Path) -> Path:
    """A CSV with an id, a text and a label column (40 rows, two classes)."""
    import pandas as pd

    rows = [{"id": i, "review": SST2_TEXTS[i], "sentiment": ("bad", "good")[i % 2]} for i in range(40)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_pairs(path: Path) -> Path:
    """A JSONL of sentence pairs (24 rows, two classes)."""
    rows = [
        {"premise": SST2_TEXTS[i], "hypothesis": SST2_TEXTS[i + 1], "label": ("entailment", "not_entailment")[i % 2]}
        for i in range(24)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, *, per_class: int = 12, rare: int = 3) -> Path:
    """A Parquet file with five classes, one of them rare, and a numeric column that is neither text nor label."""
    import pandas as pd

    labels = [t for t in TOPICS if t != "weather" for _ in range(per_class)] + ["weather"] * rare
    texts = [SST2_TEXTS[i % len(SST2_TEXTS)] + f" ({i})" for i in range(len(labels))]
    frame = pd.DataFrame({"text": texts, "category": labels, "score": [i / 7 for i in range(len(labels))]})
    frame.to_parquet(path, index=False)
    return path


WRITERS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "csv": ("reviews.csv", write_csv),
    "pairs": ("pairs.jsonl", write_pairs),
    "parquet": ("topics.parquet", write_parquet),
}


# --- reading the data ---------------------------------------------------------------------------------------


def test_csv_text_and_label_are_found(tmp_path: Path) -> None:
    profile = profile_data(write_csv(tmp_path / "reviews.csv"))
    assert profile.text_fields == ("review",) and profile.label_field == "sentiment"
    assert profile.labels == ("bad", "good") and profile.train.counts == {"bad": 20, "good": 20}
    assert profile.dev is None and profile.test is None


def test_jsonl_pairs_are_found(tmp_path: Path) -> None:
    profile = profile_data(write_pairs(tmp_path / "pairs.jsonl"))
    assert profile.text_fields == ("premise", "hypothesis") and profile.pair
    assert profile.labels == ("entailment", "not_entailment")


def test_parquet_five_classes_and_a_rare_one(tmp_path: Path) -> None:
    profile = profile_data(write_parquet(tmp_path / "topics.parquet"))
    assert profile.text_fields == ("text",) and profile.label_field == "category"
    assert profile.labels == tuple(TOPICS) and profile.train.counts["weather"] == 3
    plan = plan_data(profile)
    assert plan.few_shot is None and plan.dev_from_train is not None  # small: every row, a quarter is dev
    assert plan.folds == 4


def test_a_large_file_is_sampled_few_shot(tmp_path: Path) -> None:
    profile = profile_data(write_parquet(tmp_path / "big.parquet", per_class=80, rare=100))
    plan = plan_data(profile)
    assert plan.few_shot is not None and (plan.few_shot.k, plan.few_shot.dev_k) == (16, 16)
    assert plan.dev_from_train is None and not plan.warnings


def test_a_large_file_with_a_rare_class_samples_what_the_rare_class_has(tmp_path: Path) -> None:
    profile = profile_data(write_parquet(tmp_path / "big.parquet", per_class=100, rare=10))
    plan = plan_data(profile)
    assert plan.few_shot is not None and (plan.few_shot.k, plan.few_shot.dev_k) == (5, 5)
    assert any("class 'weather' has only 10 train rows" in w for w in plan.warnings)


def test_the_k_shot_layout_by_folder_or_by_its_train_file(repo_root: Path) -> None:
    folder = repo_root / "data" / "sst2" / "16-13"
    by_folder = profile_data(folder)
    by_file = profile_data(folder / "train.jsonl")
    for profile in (by_folder, by_file):
        assert profile.dev is not None and profile.dev.rows == 32 and profile.train.rows == 32
    assert by_folder.kind == "folder" and by_file.kind == "file"
    assert plan_data(by_file).few_shot is None


def test_flags_override_the_guesses(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "pairs.jsonl")
    profile = profile_data(path, text=["hypothesis"], label="label", labels=["not_entailment", "entailment"])
    assert profile.text_fields == ("hypothesis",) and profile.labels == ("not_entailment", "entailment")


def test_the_label_words_fall_back_to_one_token(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    reader = {"tiny": ModelTokens(tok.tokenize, unknown=tok.unk_token)}
    words = choose_label_words(["xyzzy", "good", "not_good"], reader)
    assert dict(words.names) == {"xyzzy": "xyzzy", "good": "good", "not_good": "not good"}
    # a part of the name when one is a known token, else the class's letter (xyzzy is the first class: A)
    assert words.single is not None and dict(words.single) == {"xyzzy": "A", "good": "good", "not_good": "not"}
    assert set(words.several) == {"not_good", "xyzzy"}  # two tokens, and an unknown word
    lengths = text_lengths([*profile_data(REPO / "data" / "sst2" / "16-13").labelled()], tok.tokenize, "tiny")
    assert 0 < lengths.median <= lengths.p95 <= lengths.longest and lengths.measured == 64


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_the_written_space_validates_as_written(kind: str, tmp_path: Path) -> None:
    """Without tokenizers (fast): the YAML parses, its data loads, and validate's data checks pass."""
    file, write = WRITERS[kind]
    (tmp_path / "data").mkdir()
    data = write(tmp_path / "data" / file)
    profile = profile_data(data)
    plan = plan_data(profile)
    words = choose_label_words(profile.labels, {})
    lengths = {"minilm": text_lengths(list(profile.labelled()), None, "words")}
    for models in ([MINILM, SETFIT], [MINILM, SETFIT, SMOLLM2]):
        text = space_text(profile, plan, words, models, lengths, SpaceOptions(name=kind, base_dir=tmp_path / "spaces"))
        path = tmp_path / "spaces" / f"{kind}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        space = load_space(path)
        check_space_data(space, load_task_data(space.spec.task, space.base_dir))
        assert space.spec.task.text_fields == list(profile.text_fields)
        for line in text.splitlines():  # every key is commented (a list item's first key included)
            if re.match(r"\s*(- )?[A-Za-z_\"]+.*:", line) and not line.lstrip().startswith("#"):
                assert "#" in line or line.strip() in ("task:", "prompt:", "search:"), line


def test_default_names() -> None:
    assert default_name("data/sst2/16-13/train.jsonl") == "sst2"
    assert default_name("my reviews (2024).csv") == "my-reviews-2024"
    assert default_name("stanfordnlp/imdb") == "imdb"
    assert default_name("glue:sst2") == "glue-sst2"


# --- bad input: one message, exit 2 -------------------------------------------------------------------------


def _init(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["init", *args])
    captured = capsys.readouterr()
    return code, captured.err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _init([str(tmp_path / "nope.csv"), "-o", str(tmp_path / "s.yaml")], capsys)
    assert code == 2 and f"DATA {tmp_path / 'nope.csv'}: no such file" in err and "Traceback" not in err
    assert not (tmp_path / "s.yaml").exists()


def test_no_label_column_to_guess(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"body": t, "note": t[::-1]}) + "\n" for t in SST2_TEXTS[:10]))
    code, err = _init([str(path), "-o", str(tmp_path / "s.yaml")], capsys)
    assert code == 2
    assert f"{path}: could not tell which column holds the label (columns: body, note; none has a few repeated " in err
    assert "pass --label FIELD" in err


def test_one_class_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",positive\n' for t in SST2_TEXTS[:10]))
    code, err = _init([str(path), "-o", str(tmp_path / "s.yaml")], capsys)
    assert code == 2
    assert "the label field 'label' holds one class only ('positive', 10 rows); a classifier needs at least two" in err


def test_unknown_text_field_gets_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "reviews.csv")
    code, err = _init([str(path), "--text", "reviews", "-o", str(tmp_path / "s.yaml")], capsys)
    assert code == 2 and "--text 'reviews': " in err and "did you mean 'review'?" in err


def test_labels_flag_must_cover_the_data(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "reviews.csv")
    with pytest.raises(DataError, match=re.escape("holds 'good' (20 rows), which --labels does not list")):
        profile_data(path, labels=["bad"])


def test_overwrite_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "reviews.csv")
    space = tmp_path / "reviews.yaml"
    space.write_text("# mine\n")
    code, err = _init([str(path), "-o", str(space)], capsys)
    assert code == 2 and "the file exists (a regular file); promptsearch init never writes over a file unasked" in err
    assert space.read_text() == "# mine\n"
    with pytest.raises(ConfigError, match="expected the path of a regular file to write, but it is a folder"):
        init_space(path, out=tmp_path, force=True)


def test_hub_name_offline_is_one_line(tmp_path: Path) -> None:
    """A real subprocess: a Hub name that cannot load (offline here) is one message and exit 2."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "promptsearch", "init", "someone/x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "DATA someone/x: no such file or folder, and loading it as a Hugging Face Hub dataset failed" in done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.iterdir())


# --- as users run it: init -> validate -> run (slow) ---------------------------------------------------------


def _tiny_models(space: Path, tiny_model: Path) -> Path:
    """The written space with the tiny model in place of the listed ones, sized for a test (a copy)."""
    raw: dict[str, Any] = yaml.safe_load(space.read_text(encoding="utf-8"))
    train = {"method": "full", "learning_rate": 1.0e-3, "epochs": 2, "batch_size": 8}
    raw["model"] = [{"id": "minilm", "name": str(tiny_model), "max_length": 128, "train": train}]
    raw["prompt"].pop("chat", None)
    raw["prompt"].pop("calibration", None)
    raw["search"].update({"n_trials": 1, "finalists": 1, "final_seeds": 1})
    if "test" in raw["task"]["data"].get("files", {}):  # the first 64 test rows: the mechanics, not the score
        test = space.parent / "test-64.jsonl"
        lines = (space.parent / raw["task"]["data"]["files"]["test"]).read_text(encoding="utf-8").splitlines()
        test.write_text("\n".join(lines[:64]) + "\n", encoding="utf-8")
        raw["task"]["data"]["files"]["test"] = test.name
    raw["search"]["evaluation"]["folds"] = 2
    raw["baseline"]["epochs"] = 2
    tiny = space.with_name(space.stem + "-tiny.yaml")
    tiny.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return tiny


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_init_validate_run(
    kind: str, tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    file, write = WRITERS[kind]
    (tmp_path / "data").mkdir()
    data = write(tmp_path / "data" / file)
    monkeypatch.chdir(tmp_path)
    assert main(["init", str(data)]) == 0
    out = capsys.readouterr().out
    name = default_name(data)
    space = tmp_path / f"{name}.yaml"
    assert f"wrote {name}.yaml" in out and f"next: promptsearch run {name}.yaml" in out
    assert "class balance:" in out
    if kind == "parquet":
        assert "warning: class 'weather' has 3 labelled row(s), fewer than 8" in out
        assert "'sci/tech' is several tokens" in space.read_text()
    assert main(["validate", str(space)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"ok: space '{name}'")
    tiny = _tiny_models(space, tiny_model)
    code = main(["run", str(tiny), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "best_prompt.yaml").is_file()
    if kind == "csv":  # no test split: the printed next steps train the best prompt, then predict with it
        assert f"then: promptsearch train runs/{name}/best_prompt.yaml --save-model runs/{name}/model" in out
        assert "dev_from_train" in (tmp_path / "run" / "best_prompt.yaml").read_text()  # train carves dev alike
        model = tmp_path / "model"
        assert main(["train", str(tmp_path / "run" / "best_prompt.yaml"), "--save-model", str(model)]) == 0
        assert main(["predict", str(model), "--input", str(data), "--output", str(tmp_path / "pred.csv")]) == 0
        assert len((tmp_path / "pred.csv").read_text().splitlines()) == 41  # the header and every row


@pytest.mark.slow
def test_new_user_flow_on_the_shipped_split(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """init on data/sst2/16-13/train.jsonl (its dev.jsonl is found), then run, then predict."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["init", str(REPO / "data" / "sst2" / "16-13" / "train.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "dev.jsonl next to train.jsonl is the dev split" in out and "wrote sst2.yaml" in out
    assert "../test.jsonl next to train.jsonl is the test split" in out  # LM-BFF's layout: beside the seed folder
    assert "next: promptsearch run sst2.yaml --save-model runs/sst2/model" in out
    assert main(["validate", "sst2.yaml"]) == 0
    capsys.readouterr()
    tiny = _tiny_models(work / "sst2.yaml", tiny_model)
    model = work / "model"
    assert main(["run", str(tiny), "--device", "cpu", "--save-model", str(model)]) == 0, capsys.readouterr().err
    assert (work / "runs" / "sst2" / "report.md").is_file()
    rows = work / "new.jsonl"
    rows.write_text('{"text": "a gorgeous , witty , seductive movie ."}\n{"text": "nothing happens ."}\n')
    assert main(["predict", str(model), "--input", str(rows), "--output", str(work / "pred.jsonl")]) == 0
    preds = [json.loads(line) for line in (work / "pred.jsonl").read_text().splitlines()]
    assert len(preds) == 2 and all(p["prediction"] in ("negative", "positive") for p in preds)


def test_a_hub_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub's answer built in memory (no network here): ClassLabel names, 'validation' as dev, and a test split
    with hidden labels (-1, as GLUE's) left out."""
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )

    def split(n: int, label: Callable[[int], int]) -> datasets.Dataset:
        rows = {"sentence": SST2_TEXTS[:n], "label": [label(i) for i in range(n)]}
        return datasets.Dataset.from_dict(rows, features=features if n != 8 else None)

    loaded = datasets.DatasetDict(
        {"train": split(40, lambda i: i % 2), "validation": split(10, lambda i: i % 2), "test": split(8, lambda i: -1)}
    )
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None: asked.append((path, name)) or loaded)
    profile = profile_data("someone/reviews:plain")
    assert asked == [("someone/reviews", "plain")]
    assert profile.kind == "hub" and profile.labels == ("neg", "pos") and profile.label_field == "label"
    assert profile.dev is not None and profile.dev.rows == 10 and profile.test is None
    assert any(note.startswith("the Hub's test split is left out") for note in profile.notes)
    words = choose_label_words(profile.labels, {})
    lengths = {"minilm": text_lengths(list(profile.labelled()), None, "words")}
    text = space_text(profile, plan_data(profile), words, [MINILM, SETFIT], lengths, SpaceOptions("reviews", tmp_path))
    raw = yaml.safe_load(text)
    assert raw["task"]["data"] == {"hub": {"path": "someone/reviews", "name": "plain"}}
    assert raw["task"]["splits"] == {"train": "train", "dev": "validation", "test": None}
    path = tmp_path / "reviews.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_space(path).spec.task.data.hub.path == "someone/reviews"  # type: ignore[union-attr]


def test_warnings(tmp_path: Path) -> None:
    from promptsearch.scaffold.create import data_warnings

    folder = tmp_path / "split"
    folder.mkdir()
    long = " ".join(["word"] * 300)
    train = [{"text": t, "label": str(i % 2)} for i, t in enumerate([long, *SST2_TEXTS[:19]])]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train[1:5]))  # 4 texts of train
    profile = profile_data(folder)
    plan = plan_data(profile)
    lengths = text_lengths(list(profile.labelled()), None, "words")
    found = data_warnings(profile, plan, lengths, choose_label_words(profile.labels, {}))
    assert found == [
        "4 text(s) appear in both train and dev: dev scores are lenient; remove them from one of the two files",
        "1 of 24 rows are longer than 256 words (the longest has 300): a prompt over model.max_length drops its "
        "demonstrations, then cuts the text",
        "the classes are numbers (0, 1): the instruction and label words are made from them; write words that say "
        "what each class means in prompt.label_words and prompt.instruction",
        "no test split: the report has no test score and no verdict against plain fine-tuning; keep labelled rows "
        "apart in a file and pass it with --test",
    ]


def test_budget_is_a_preset_name_and_is_written(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "reviews.csv")
    with pytest.raises(
        ConfigError, match=re.escape("--budget: expected one of light, medium, heavy, but found 'lite'")
    ):
        init_space(data, budget="lite")
    result = init_space(data, budget="light")
    assert "budget: light" in result.text
