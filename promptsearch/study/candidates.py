"""Generated candidates: label words ranked by the model (LM-BFF) and instructions it proposes (APE).

``prompt.label_words: {auto: {top_k: N}}``: an mlm or causal model reads every train prompt (the
first template, no instruction or demonstrations) and gives a probability to each vocabulary word at the
``{label}`` slot. Only whole words are candidates: one token of the vocabulary that decodes to an
alphabetic word and tokenizes back to that same token where the label goes (no sub-word pieces, no special
tokens). Each class ranks the words by their mean log-probability over its own train prompts (LM-BFF's
automatic label words); a word that several classes rank goes to the class under which it is most likely,
words that differ only in case are dropped from every class that shares them, and each class keeps its
``top_k`` (a class left with fewer takes its next best words that no class has chosen). Maps combine one
word per class; they are ranked by their zero-shot accuracy on the train prompts (LM-BFF's re-ranking) and
the best ``maps`` (default ``top_k``) are offered as choices.

``prompt.instruction: {auto: {n: N}}``: an instruction-following causal LM reads a meta-prompt (APE's:
"I gave a friend an instruction ... Here are the input-output pairs", shipped here and overridable) with
a handful of labelled train examples, and writes one task description per proposal (sampled, seeded).
Proposals are cleaned to one sentence and de-duplicated (also against the hand-written ones).

Both are computed once per study by the process that creates it, stored as the study's user attribute
``candidates`` with what they came from, and read back by every worker and every resumed run, so all
trials choose among the same list; nothing is generated again.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.io.data import Example, TaskData
from promptsearch.models.heads import LabelWordHead
from promptsearch.space.config import PromptConfig, TrialConfig
from promptsearch.space.dimensions import Fixed
from promptsearch.space.registry import head_names, head_traits, quoted
from promptsearch.space.search_space import GENERATED_PREFIX, SearchSpace, possible_values
from promptsearch.space.spec import AutoInstructions, AutoLabelWords, ModelSpec
from promptsearch.study.records import CANDIDATES_ATTR, store_candidates, stored_candidates_raw

if TYPE_CHECKING:
    import optuna
    import torch

    from promptsearch.models.features import Encoded
    from promptsearch.models.runtime import ModelRuntime

__all__ = [
    "CANDIDATES_ATTR",
    "DEFAULT_META_PROMPT",
    "describe",
    "ensure_candidates",
    "generate_candidates",
    "generated_parts",
    "propose_instructions",
    "propose_label_words",
]

logger = logging.getLogger(__name__)
POOL = 300  # words per class read from the top of its ranking (LM-BFF prunes the vocabulary the same way)
MAX_PRODUCT = 5000  # label-word maps scored at most; beyond it, maps pair words of the same rank
EXAMPLE_WORDS = 60  # an example's text is cut to this many words in the meta-prompt

DEFAULT_META_PROMPT = """I gave a friend an instruction and some inputs. The friend read the instruction and \
wrote an output for every one of the inputs. Here are the input-output pairs:

{examples}

Each output is one of: {labels}. What was the instruction? Answer with the instruction alone, in one sentence."""


# --- label words ------------------------------------------------------------------------------------


def slot_logprobs(runtime: ModelRuntime, encoded: Encoded, *, batch_size: int = 8) -> torch.Tensor:
    """Log-probabilities ``[rows, vocab]`` of the next token at each prompt's ``{label}`` slot."""
    import torch

    from promptsearch.models.features import collate

    assert encoded.slots is not None
    answer = runtime.answer
    if not isinstance(answer, LabelWordHead):
        raise ConfigError(f"the {runtime.head} head has no vocabulary at a {{label}} slot to score")
    model = runtime.model
    model.eval()
    pad_id = int(runtime.tokenizer.pad_token_id)
    out = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            index = list(range(start, min(start + batch_size, len(encoded))))
            batch = collate(encoded, index, pad_id, runtime.device)
            slots = torch.tensor([encoded.slots[i] for i in index], device=runtime.device)
            logits = answer.vocab_logits(model, batch, slots)
            out.append(torch.log_softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out)


def whole_word(runtime: ModelRuntime, token_id: int, whitespace: str) -> str | None:
    """The word that ``token_id`` is, when it is a whole alphabetic word scored as exactly this token."""
    from promptsearch.models.heads.base import _word_ids

    tokenizer = runtime.tokenizer
    if token_id in tokenizer.all_special_ids:
        return None
    piece = str(tokenizer.convert_ids_to_tokens(token_id))
    if piece.startswith("##"):  # a WordPiece continuation
        return None
    text = str(tokenizer.decode([token_id]))
    word = text.strip()
    if len(word) < 2 or not word.isalpha():
        return None
    continuation = runtime.answer.traits.continuation
    if continuation and whitespace and not text.startswith(whitespace):
        return None  # the variant without the space the template puts before the label
    ids = _word_ids(tokenizer, word, whitespace, keep_whitespace=continuation)
    return word if ids == [token_id] else None


def propose_label_words(
    runtime: ModelRuntime, space: SearchSpace, data: TaskData, options: AutoLabelWords
) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Generated label-word maps (``auto-1``, ...) and what they came from (see the module docstring)."""
    import torch

    from promptsearch.models.heads import slot_whitespace

    if not isinstance(runtime.answer, LabelWordHead):
        names = head_names(lambda t: t.label_words)
        raise ConfigError(f"generated label words need a head among {quoted(names)}, not '{runtime.head}'")
    labels = space.spec.task.labels
    template_key = options.template if options.template is not None else next(iter(space.templates))
    template = space.templates[template_key].source
    chat = bool((possible_values(space.params.get("prompt.chat", Fixed(False))) or (False,))[0])
    chat = chat and runtime.answer.traits.chat
    prompt = PromptConfig(template=template, label_words={lab: lab for lab in labels}, chat=chat)
    encoded = runtime.encoder.encode(prompt, data.train, data.train, label_words=False)
    logp = slot_logprobs(runtime, encoded)
    gold = torch.tensor(encoded.labels)
    by_class = torch.stack([logp[gold == c].mean(dim=0) for c in range(len(labels))])  # [classes, vocab]
    whitespace = "" if chat else slot_whitespace(template)

    words: dict[int, str | None] = {}
    candidates: set[int] = set()
    for c in range(len(labels)):
        for token_id in by_class[c].topk(min(POOL, by_class.shape[1])).indices.tolist():
            if token_id not in words:
                words[token_id] = whole_word(runtime, token_id, whitespace)
            if words[token_id] is not None:
                candidates.add(token_id)
    owner = {t: int(by_class[:, t].argmax()) for t in candidates}  # a word belongs to one class only

    def rank(c: int) -> list[int]:
        return sorted(candidates, key=lambda t: (-float(by_class[c, t]), t))

    ranked = [rank(c) for c in range(len(labels))]
    per_class = [[t for t in ranked[c] if owner[t] == c] for c in range(len(labels))]
    lowered = [{str(words[t]).lower() for t in ids} for ids in per_class]
    for c, ids in enumerate(per_class):  # "Great" in one class and "great" in another: shared, dropped
        others = set().union(*(low for d, low in enumerate(lowered) if d != c))
        per_class[c] = [t for t in ids if str(words[t]).lower() not in others][: options.top_k]
    for c in range(len(labels)):  # a class that owns too few words takes its next best ones nobody has chosen
        taken = {str(words[t]).lower() for ids in per_class for t in ids}
        for t in ranked[c]:
            if len(per_class[c]) >= options.top_k:
                break
            if str(words[t]).lower() not in taken:
                per_class[c].append(t)
                taken.add(str(words[t]).lower())
    empty = [labels[c] for c, ids in enumerate(per_class) if not ids]
    if empty:
        raise ConfigError(
            f"prompt.label_words.auto: no whole-word label word found for {empty} with template {template!r}; "
            "write their words by hand or use a template whose {label} slot takes a word"
        )
    combos: Sequence[tuple[int, ...]]
    total = 1
    for ids in per_class:
        total *= len(ids)
    if total <= MAX_PRODUCT:
        combos = list(itertools.product(*per_class))
    else:
        depth = min(len(ids) for ids in per_class)
        combos = [tuple(ids[i] for ids in per_class) for i in range(depth)]
    scored = []
    for order, combo in enumerate(combos):
        predicted = logp[:, list(combo)].argmax(dim=1)
        accuracy = float((predicted == gold).float().mean())
        likelihood = sum(float(by_class[c, t]) for c, t in enumerate(combo))
        scored.append((-accuracy, -likelihood, order, combo))
    scored.sort()
    maps: dict[str, dict[str, str]] = {}
    info_maps: dict[str, Any] = {}
    for i, (neg_acc, _, _, combo) in enumerate(scored[: options.maps or options.top_k], start=1):
        key = f"{GENERATED_PREFIX}{i}"
        maps[key] = {labels[c]: str(words[t]) for c, t in enumerate(combo)}
        info_maps[key] = {"train_accuracy": round(-neg_acc, 4)}
    info = {
        "model": runtime.spec.name,
        "head": runtime.head,
        "template": template,
        "chat": chat,
        "train_prompts": len(encoded),
        "ranked_by": "mean log-probability at the {label} slot over each class's train prompts (LM-BFF)",
        "words": {
            labels[c]: [[str(words[t]), round(float(by_class[c, t]), 4)] for t in ids]
            for c, ids in enumerate(per_class)
        },
        "maps": info_maps,
        "maps_ranked_by": "zero-shot accuracy on the train prompts (LM-BFF's re-ranking)",
    }
    return maps, info


# --- instructions -----------------------------------------------------------------------------------


def _examples_text(rows: Sequence[Example]) -> str:
    def cut(text: str) -> str:
        words = text.split()
        return " ".join(words[:EXAMPLE_WORDS]) + (" ..." if len(words) > EXAMPLE_WORDS else "")

    return "\n\n".join(f"Input: {' | '.join(cut(v) for v in ex.fields.values())}\nOutput: {ex.label}" for ex in rows)


def _pick_examples(train: Sequence[Example], k: int, rng: random.Random) -> list[Example]:
    """``k`` train rows, round-robin over the classes (each class shuffled), in a shuffled order."""
    by_label: dict[str, list[Example]] = {}
    for ex in train:
        by_label.setdefault(ex.label, []).append(ex)
    pools = [rng.sample(rows, len(rows)) for _, rows in sorted(by_label.items())]
    picked: list[Example] = []
    for i in range(max(len(p) for p in pools)):
        for pool in pools:
            if i < len(pool) and len(picked) < k:
                picked.append(pool[i])
    rng.shuffle(picked)
    return picked


_LEAD = re.compile(
    r"^(?:the\s+)?(?:instruction|task)(?:\s+(?:was|is))?\s*:\s*|^(?:the\s+)?instruction\s+(?:was|is)\s+", re.I
)


def clean_instruction(text: str) -> str:
    """One generated proposal as one instruction: its first line, without a lead-in, quotes or echoed examples,
    cut after its first sentence."""
    line = next((raw.strip() for raw in text.splitlines() if raw.strip()), "")
    line = re.sub(r"^(?:[-*•]|\d+[.)])\s*", "", line)  # a bullet or a number
    line = _LEAD.sub("", line).strip().strip("\"'`“”").strip()
    line = re.split(r"\s(?:Input|Output):", line)[0]  # an example the model copied
    sentence = re.match(r"^(.+?[.!?])(?:\s|$)", line)
    line = sentence.group(1) if sentence else line
    return re.sub(r"\s+", " ", line).strip()[:300]


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def propose_instructions(
    runtime: ModelRuntime,
    space: SearchSpace,
    data: TaskData,
    options: AutoInstructions,
    *,
    seed: int,
    existing: Sequence[str] = (),
) -> tuple[dict[str, str], dict[str, Any]]:
    """Up to ``options.n`` distinct generated instructions (``auto-1``, ...) and what they came from."""
    import torch

    tokenizer = runtime.tokenizer
    model: Any = runtime.model  # generate() is typed loosely by transformers
    model.eval()
    meta = options.meta_prompt or DEFAULT_META_PROMPT
    labels = ", ".join(space.spec.task.labels)
    chat = bool(getattr(tokenizer, "chat_template", None))
    rng = random.Random(seed)
    seen = {_norm(t) for t in existing}
    found: dict[str, str] = {}
    proposals: list[dict[str, Any]] = []
    attempts = 3 * options.n
    for attempt in range(attempts):
        if len(found) >= options.n:
            break
        rows = _pick_examples(data.train, options.examples, rng)
        text = meta.replace("{examples}", _examples_text(rows)).replace("{labels}", labels)
        if chat:
            message = [{"role": "user", "content": text}]
            text = str(tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True))
        else:
            text += "\n\nInstruction:"
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=not chat).to(runtime.device)
        torch.manual_seed(seed * 1009 + attempt)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=options.temperature,
                top_p=0.95,
                max_new_tokens=options.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        raw = str(tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
        cleaned = clean_instruction(raw)
        kept = bool(cleaned) and _norm(cleaned) not in seen and bool(_norm(cleaned))
        proposals.append({"raw": raw[:500], "instruction": cleaned, "kept": kept, "examples": [ex.row for ex in rows]})
        if kept:
            seen.add(_norm(cleaned))
            found[f"{GENERATED_PREFIX}{len(found) + 1}"] = cleaned
    if len(found) < options.n:
        logger.warning(
            "prompt.instruction.auto: %d distinct instruction(s) from %d proposals (asked for %d)",
            len(found),
            len(proposals),
            options.n,
        )
    info = {
        "model": runtime.spec.name,
        "chat_template": chat,
        "meta_prompt": meta,
        "examples_per_proposal": options.examples,
        "temperature": options.temperature,
        "max_new_tokens": options.max_new_tokens,
        "seed": seed,
        "proposals": proposals,
    }
    return found, info


# --- once per study ---------------------------------------------------------------------------------


def _generator_spec(space: SearchSpace, name: str | None, *, heads: Sequence[str]) -> ModelSpec:
    """The model named by an ``auto`` option (a model id, or a model name), else the first with one of ``heads``."""
    if name is not None and name in space.models:
        return space.model_spec(name)
    if name is not None:
        return ModelSpec(name=name, head=head_names(lambda t: t.generates)[0])
    for model_id in space.models or [None]:
        spec = space.model_spec(model_id)
        if spec.head in heads:
            return spec
    raise ConfigError(f"no model of this space has a head among {list(heads)}")


def generate_candidates(space: SearchSpace, data: TaskData, device: torch.device) -> dict[str, Any]:
    """Generate what the space's ``auto`` options ask for (loading the models they need, once each)."""
    from promptsearch.models.runtime import ModelRuntime

    labels = space.spec.task.labels
    loaded: dict[tuple[str, str], ModelRuntime] = {}

    def runtime(spec: ModelSpec, head: str) -> ModelRuntime:
        key = (spec.model_dump_json(exclude={"head", "multi_token"}), head)
        if key not in loaded:
            t0 = time.perf_counter()
            loaded[key] = ModelRuntime(spec, labels, device, head=head)
            logger.info("candidates: loaded %s (%s) in %.1f s", spec.name, head, time.perf_counter() - t0)
        return loaded[key]

    out: dict[str, Any] = {"instructions": {}, "label_words": {}, "sources": {}}
    t0 = time.perf_counter()
    if space.auto_label_words is not None:
        options = space.auto_label_words
        spec = _generator_spec(space, options.model, heads=head_names(lambda t: t.label_words))
        maps, info = propose_label_words(runtime(spec, spec.head), space, data, options)
        out["label_words"] = maps
        out["sources"]["label_words"] = {"options": options.model_dump(mode="json"), **info}
    if space.auto_instructions is not None:
        options_i = space.auto_instructions
        spec = _generator_spec(space, options_i.model, heads=head_names(lambda t: t.generates))
        texts, info = propose_instructions(
            runtime(spec, spec.head if head_traits(spec.head).generates else head_names(lambda t: t.generates)[0]),
            space,
            data,
            options_i,
            seed=space.spec.search.seed,
            existing=list(space.instructions.values()),
        )
        out["instructions"] = texts
        out["sources"]["instructions"] = {"options": options_i.model_dump(mode="json"), **info}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["data_fingerprint"] = data.fingerprint
    return out


def stored_candidates(study: optuna.Study) -> dict[str, Any] | None:
    return stored_candidates_raw(study)


def ensure_candidates(
    space: SearchSpace,
    study: optuna.Study,
    data: TaskData,
    device: torch.device | str | None,
    *,
    wait: float = 0.0,
    poll: float = 2.0,
) -> SearchSpace:
    """``space`` with the study's generated candidates: read back when stored, else generated and stored now.

    A worker that joins a study passes ``wait`` (seconds): it waits for the process that created the study
    to store them rather than generating a second, different list.
    """
    if not space.needs_generation:
        return space
    stored = stored_candidates(study)
    deadline = time.monotonic() + wait
    while stored is None and time.monotonic() < deadline:
        time.sleep(poll)
        stored = stored_candidates(study)
    if stored is None and wait > 0:
        raise ConfigError(
            f"study '{study.study_name}' has no generated candidates yet (the space asks for auto instructions or "
            f"label words), and none appeared within {wait:.0f} s; start the study with `promptsearch run` first"
        )
    if stored is None:
        from promptsearch.models.device import resolve_device

        dev = device if not isinstance(device, str) and device is not None else resolve_device(device)
        logger.info("generating candidates for study '%s'", study.study_name)
        stored = generate_candidates(space, data, dev)
        store_candidates(study, stored)
    return space.with_candidates(stored)


def generated_parts(study: optuna.Study, config: TrialConfig) -> dict[str, Any]:
    """Which parts of ``config``'s prompt were generated: ``{"instruction": {"key", "source"}, ...}``."""
    stored = stored_candidates(study) or {}
    sources = stored.get("sources") or {}
    out: dict[str, Any] = {}
    for key, text in (stored.get("instructions") or {}).items():
        if text == config.prompt.instruction and text:
            info = sources.get("instructions") or {}
            out["instruction"] = {"key": key, "source": f"proposed by {info.get('model')} (APE-style meta-prompt)"}
    for key, words in (stored.get("label_words") or {}).items():
        if dict(words) == dict(config.prompt.label_words):
            info = sources.get("label_words") or {}
            out["label_words"] = {
                "key": key,
                "source": f"ranked by {info.get('model')} ({info.get('head')} head) at the label slot of "
                f"{info.get('template')!r} over {info.get('train_prompts')} train prompts",
            }
    return out


def describe(generated: Mapping[str, Any] | None) -> list[tuple[int, str]]:
    """The generated candidates and what they came from, as ``(indent level, text)`` lines (render, reports)."""
    if not generated:
        return []
    sources = generated.get("sources") or {}
    lines: list[tuple[int, str]] = []
    words = sources.get("label_words")
    if words:
        lines.append(
            (
                0,
                f"generated label words (prompt.label_words), ranked by {words['model']} ({words['head']} head) "
                f"at the {{label}} slot of {words['template']!r} over {words['train_prompts']} train prompts:",
            )
        )
        for label, ranked in words["words"].items():
            lines.append((1, f"{label}: " + ", ".join(f"{w} ({score:.2f})" for w, score in ranked)))
        for key, mapping in (generated.get("label_words") or {}).items():
            accuracy = words["maps"][key]["train_accuracy"]
            lines.append((1, f"{key}: {json.dumps(mapping)} (zero-shot train accuracy {100 * accuracy:.1f})"))
    instructions = sources.get("instructions")
    if instructions:
        kept = sum(bool(p["kept"]) for p in instructions["proposals"])
        lines.append(
            (
                0,
                f"generated instructions (prompt.instruction), proposed by {instructions['model']} from "
                f"{instructions['examples_per_proposal']} labelled train examples each ({kept} distinct of "
                f"{len(instructions['proposals'])} proposals):",
            )
        )
        lines += [(1, f"{key}: {text!r}") for key, text in (generated.get("instructions") or {}).items()]
    return lines
