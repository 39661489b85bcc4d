"""Tiny real models for the tests: a 2-layer BERT built from a config and a WordPiece tokenizer
built offline from the words of the shipped data. No network, a few seconds to build."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO / "data" / "sst2"


# A minimal valid space (6 lines): tests append sections to it, so their first extra line is line 7.
MINIMAL_SPACE = """\
name: tiny
task:
  data: {dir: sst2}
  labels: [negative, positive]
prompt:
  template: "{text} It was {label}."
"""


def _words(paths: list[Path]) -> list[str]:
    words: set[str] = set()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for key, value in row.items():
                if key != "label" and isinstance(value, str):
                    words.update(re.findall(r"\w+|[^\w\s]", value.lower()))
    return sorted(words)


def build_tiny_bert(directory: Path) -> Path:
    """Save a randomly initialised 2-layer BERT body (no head) and its tokenizer to ``directory``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    sources = [
        SST2 / "16-13" / "train.jsonl",
        SST2 / "16-13" / "dev.jsonl",
        REPO / "data" / "rte" / "16-13" / "train.jsonl",
    ]
    vocab = specials + _words(sources) + ["review", "sentiment", "it", "was", "great", "terrible", "good", "bad"]
    vocab = list(dict.fromkeys(vocab))
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    tokenizer.model_max_length = 256
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        hidden_dropout_prob=0.1,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_space_text(
    model_dir: Path,
    data_dir: Path,
    *,
    name: str = "tiny",
    n_trials: int = 4,
    pruner: str = "{type: successive_halving, options: {min_resource: 1, reduction_factor: 2}}",
    epochs: str = "5",
    extra_prompt: str = "",
) -> str:
    """A small SST-2 space over the tiny model (train/dev 16-shot, test capped at 64 rows)."""
    return f"""
name: {name}
task:
  data:
    dir: {data_dir}
  labels: [negative, positive]
model:
  name: {model_dir}
  max_length: 128
prompt:
  instruction: ["", "Classify the review."]
  template:
    cloze: "{{text}} It was {{label}}."
    review: "Review: {{text}} Sentiment: {{label}}"
  label_words:
    - {{negative: terrible, positive: great}}
    - {{negative: bad, positive: good}}
  demonstrations:
    count: {{low: 0, high: 2}}
    selection: [random, balanced]
{extra_prompt}
train:
  learning_rate: {{low: 1.0e-3, high: 1.0e-2, log: true}}
  epochs: {epochs}
  batch_size: [4, 8]
search:
  seed: 0
  evaluation: {{mode: dev}}  # dev repeats train (see tiny_data), so scores move with the hyperparameters
  n_trials: {n_trials}
  pruner: {pruner}
  final_seeds: 2
baseline:
  learning_rate: 3.0e-3
  epochs: {epochs}
"""


def tiny_data(directory: Path, *, test_rows: int = 64) -> Path:
    """train = SST-2 16-shot seed 13; dev repeats train; test = the first ``test_rows`` SST-2 test rows.

    A tiny random model cannot generalise from 32 rows, so its dev score would sit at 0.5 in every
    trial. Scoring it on the rows it trains on makes the score move with the hyperparameters, which is
    what the tests of pruning, best-trial choice and reporting need (they test mechanics, not accuracy).
    """
    directory.mkdir(parents=True, exist_ok=True)
    train = (SST2 / "16-13" / "train.jsonl").read_text(encoding="utf-8")
    (directory / "train.jsonl").write_text(train, encoding="utf-8")
    (directory / "dev.jsonl").write_text(train, encoding="utf-8")
    lines = (SST2 / "test.jsonl").read_text(encoding="utf-8").splitlines()[:test_rows]
    (directory / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def save_tiny_model(
    root: Path, tiny_model: Path, *, max_length: int = 128, demonstrations: bool = True, test_rows: int = 64
) -> Path:
    """``root/model``: ``tiny_model`` fine-tuned for 1 epoch on :func:`tiny_data` with one fixed prompt (and one
    balanced demonstration when ``demonstrations``), saved as ``train --save-model`` saves it."""
    from promptsearch.api import train_config

    data = tiny_data(root / "data", test_rows=test_rows)
    demos = "  demonstrations: {count: 1, selection: balanced}\n" if demonstrations else ""
    space = root / "one.yaml"
    space.write_text(
        f"""
name: one
task: {{data: {{dir: {data}}}, labels: [negative, positive]}}
model: {{name: {tiny_model}, max_length: {max_length}}}
prompt:
  template: "{{text}} It was {{label}}."
  label_words: {{negative: terrible, positive: great}}
{demos}train: {{learning_rate: 3.0e-3, epochs: 1, batch_size: 8}}
""",
        encoding="utf-8",
    )
    train_config(space, save_model=root / "model", device="cpu")
    return root / "model"


def postgres_reachable() -> bool:
    """Whether the PostgreSQL server of the test machines answers (127.0.0.1:5432, database test)."""
    try:
        import psycopg

        psycopg.connect(host="127.0.0.1", port=5432, dbname="test", user="root", connect_timeout=3).close()
        return True
    except Exception:
        return False


def build_tiny_bert_mlm(directory: Path) -> Path:
    """A tiny BERT *with* its masked-LM head, and the same offline WordPiece tokenizer."""
    from transformers import BertConfig, BertForMaskedLM

    build_tiny_bert(directory)
    config = BertConfig.from_pretrained(directory)
    import torch

    torch.manual_seed(1)
    BertForMaskedLM(config).save_pretrained(directory)
    return directory


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_causal(directory: Path, *, arch: str = "llama") -> Path:
    """A tiny decoder LM (Llama or GPT-2 layout) and a byte-level BPE tokenizer trained offline on SST-2 text.

    The BPE vocabulary is small (400), so rarer words split into several tokens, and words after a
    space get their own 'Ġ' tokens, as in real GPT-2/SmolLM tokenizers. The tokenizer has a ChatML
    chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    texts = []
    for path in [SST2 / "16-13" / "train.jsonl", SST2 / "16-13" / "dev.jsonl"]:
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    texts += ["It was great. It was terrible. Review: Sentiment: positive negative good bad"] * 20
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHATML
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(directory)
    import torch

    torch.manual_seed(2)
    size = len(tokenizer)
    if arch == "gpt2":
        ends = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
        model = GPT2LMHeadModel(GPT2Config(vocab_size=size, n_embd=32, n_layer=2, n_head=2, n_positions=512, **ends))
    else:
        config = LlamaConfig(
            vocab_size=size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    return directory
