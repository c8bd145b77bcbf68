"""A deterministic byte-level BPE vocabulary carrying a model family's real special tokens.

The vocabulary is GPT-2 style (``tokenizer.ggml.model = "gpt2"``): the 256 byte symbols
(GPT-2's byte-to-unicode mapping) come first, then merges learned from the small bilingual
text in :mod:`haven.models.factory.corpus` (so everyday English and Chinese become
multi-byte tokens), then, for the big vocabularies, synthesised merges (concatenations of
existing tokens) until the ordinary-token count of the real model is reached. Special
tokens follow at their real offsets (e.g. Qwen2.5 ``<|im_start|>`` = 151644 at size 0.5b),
with the token types convert_hf_to_gguf.py gives them: CONTROL for ``special`` tokens and
tokens that look special (``<|…|>``, ``<｜…｜>``), USER_DEFINED for the others (``<think>``,
``<tool_call>``), UNUSED for the padding rows of the embedding.

Learning is a heap-driven BPE over word counts: a few hundred milliseconds, cached per
process, and independent of the seed (the seed only changes weights).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache

from haven.models.factory.corpus import CORPUS

# gguf.TokenType values (kept literal so this module needs only the standard library).
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5

# Pre-tokenisation for learning, close to the Qwen2 / Llama 3 split regex: contractions,
# letters with one leading non-letter, single digits, punctuation runs, newlines, spaces.
_PRETOKENIZE = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\w]?[^\W\d_]+|\d| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character mapping (printable bytes map to themselves)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def encode_bytes(text: str) -> str:
    """``text`` as its UTF-8 bytes mapped to GPT-2 symbols (how tokens are stored in the vocab)."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


@dataclass(frozen=True)
class SpecialToken:
    text: str
    offset: int  # id = first special id + offset
    token_type: int


@dataclass(frozen=True)
class Family:
    """A model family's special tokens and tokenizer settings (ids relative to the first special)."""

    name: str
    pre: str
    specials: tuple[SpecialToken, ...]
    bos: int
    eos: int
    eot: int
    eom: int | None
    pad: int | None
    add_bos: bool


def _special(text: str, offset: int, user_defined: bool = False) -> SpecialToken:
    return SpecialToken(text, offset, USER_DEFINED if user_defined else CONTROL)


# Qwen2.5 (tokenizer_config.json added_tokens_decoder, ids from 151643). `<tool_call>` and
# `</tool_call>` are not `special` → USER_DEFINED. Qwen2.5 itself has no thinking tokens; the
# factory appends Qwen3's next four (151665 `<tool_response>` … 151668 `</think>`, same ids
# as Qwen3) so the engine's reasoning tests can force `<think>` as a single token.
_QWEN25 = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
# DeepSeek-R1-Distill-Qwen: Qwen2.5's ids 151643… re-purposed (its tokenizer_config.json).
_R1_QWEN = (
    "<｜end▁of▁sentence｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<｜begin▁of▁sentence｜>",
    "<|EOT|>",
    "<think>",
    "</think>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
_NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"}


def _llama3_texts() -> list[str]:
    """Llama 3.1's 256 special tokens (ids 128000–128255), reserved ones included."""
    texts = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|reserved_special_token_2|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    ]
    texts += [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + 256 - len(texts))]
    return texts


def _family_from_texts(
    name: str,
    pre: str,
    texts: list[str] | tuple[str, ...],
    *,
    bos: int,
    eos: int,
    eot: int,
    eom: int | None,
    pad: int | None,
    add_bos: bool,
) -> Family:
    specials = tuple(_special(t, i, user_defined=t in _NOT_SPECIAL) for i, t in enumerate(texts))
    return Family(name, pre, specials, bos=bos, eos=eos, eot=eot, eom=eom, pad=pad, add_bos=add_bos)


@cache
def family(template: str, arch: str) -> Family:
    """Special tokens and settings for a chat ``template`` on an ``arch``'s vocabulary."""
    if template == "qwen2.5":
        return _family_from_texts("qwen2.5", "qwen2", _QWEN25, bos=0, eos=2, eot=2, eom=None, pad=0, add_bos=False)
    if template == "llama3":
        return _family_from_texts(
            "llama3", "llama-bpe", _llama3_texts(), bos=0, eos=9, eot=9, eom=8, pad=None, add_bos=True
        )
    if template == "deepseek-r1" and arch == "qwen2":
        return _family_from_texts(
            "deepseek-r1-qwen", "deepseek-r1-qwen", _R1_QWEN, bos=3, eos=0, eot=0, eom=None, pad=0, add_bos=True
        )
    if template == "deepseek-r1":
        # DeepSeek-R1-Distill-Llama keeps Llama 3.1's layout and re-purposes 128000/128001 and 128011–128015.
        texts = _llama3_texts()
        texts[0], texts[1] = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
        texts[11:16] = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "<｜▁pad▁｜>"]
        return _family_from_texts(
            "deepseek-r1-llama", "llama-bpe", texts, bos=0, eos=1, eot=1, eom=None, pad=1, add_bos=True
        )
    raise KeyError(template)


@dataclass(frozen=True)
class Vocab:
    """Everything the GGUF ``tokenizer.ggml.*`` keys need, with absolute ids."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    bos_id: int
    eos_id: int
    eot_id: int
    eom_id: int | None
    pad_id: int | None
    add_bos: bool
    family: str


def _corpus_words() -> Counter[tuple[str, ...]]:
    words: Counter[tuple[str, ...]] = Counter()
    for piece in _PRETOKENIZE.findall(CORPUS):
        words[tuple(encode_bytes(piece))] += 1
    return words


@cache
def learned_merges() -> tuple[tuple[str, str], ...]:
    """Every merge the corpus supports (pairs seen at least twice), most frequent first.

    Ties break on the pair's text, so the result never depends on dict or set order.
    """
    counted = _corpus_words()
    seqs = [list(word) for word in counted]
    freqs = list(counted.values())
    pair_counts: defaultdict[tuple[str, str], int] = defaultdict(int)
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for idx, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:], strict=False):
            pair_counts[pair] += freqs[idx]
            where[pair].add(idx)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap:
        neg, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale heap entry: re-queue with the current count
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < 2:
            break
        merges.append(pair)
        first, second = pair
        joined = first + second
        changed: set[tuple[str, str]] = set()
        for idx in sorted(where.pop(pair)):
            seq, freq = seqs[idx], freqs[idx]
            for old in zip(seq, seq[1:], strict=False):
                pair_counts[old] -= freq
                changed.add(old)
            out: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == first and seq[i + 1] == second:
                    out.append(joined)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[idx] = out
            for new in zip(out, out[1:], strict=False):
                pair_counts[new] += freq
                where[new].add(idx)
                changed.add(new)
        pair_counts.pop(pair, None)
        for other in sorted(changed - {pair}):
            if pair_counts.get(other, 0) > 0:
                heapq.heappush(heap, (-pair_counts[other], other))
    return tuple(merges)


def _ordinary_tokens(n_tokens: int, forbidden: frozenset[str]) -> tuple[list[str], list[str]]:
    """``n_tokens`` ordinary tokens (bytes, learned, synthesised) and the merges that build them."""
    tokens = list(bytes_to_unicode().values())
    known = set(tokens)
    merges: list[str] = []
    for first, second in learned_merges():
        if len(tokens) >= n_tokens:
            break
        merges.append(f"{first} {second}")
        joined = first + second
        if joined not in known:  # two merges can spell the same token ("ab"+"c", "a"+"bc")
            known.add(joined)
            tokens.append(joined)
    if len(tokens) < n_tokens:
        # Synthesise the rest as concatenations of the tokens so far, in a fixed order. They
        # are valid BPE (both halves exist) and rank after every learned merge.
        base = list(tokens)
        for first in base:
            for second in base:
                joined = first + second
                if joined in known or joined in forbidden:
                    continue
                known.add(joined)
                tokens.append(joined)
                merges.append(f"{first} {second}")
                if len(tokens) >= n_tokens:
                    break
            if len(tokens) >= n_tokens:
                break
    return tokens, merges


def build_vocab(template: str, arch: str, n_normal_tokens: int, n_vocab: int) -> Vocab:
    """The full vocabulary: ordinary tokens, the family's specials, then UNUSED padding rows."""
    fam = family(template, arch)
    first_special = n_normal_tokens
    if first_special + len(fam.specials) > n_vocab:
        raise ValueError(f"{len(fam.specials)} special tokens do not fit a {n_vocab}-token vocabulary")
    forbidden = frozenset(s.text for s in fam.specials)
    tokens, merges = _ordinary_tokens(n_normal_tokens, forbidden)
    types = [NORMAL] * len(tokens)
    for special in fam.specials:
        tokens.append(special.text)
        types.append(special.token_type)
    for i in range(len(tokens), n_vocab):
        # convert_hf_to_gguf.py names the embedding's padding rows the same way.
        tokens.append(f"[PAD{i}]")
        types.append(UNUSED)
    return Vocab(
        tokens=tokens,
        token_types=types,
        merges=merges,
        pre=fam.pre,
        bos_id=first_special + fam.bos,
        eos_id=first_special + fam.eos,
        eot_id=first_special + fam.eot,
        eom_id=None if fam.eom is None else first_special + fam.eom,
        pad_id=None if fam.pad is None else first_special + fam.pad,
        add_bos=fam.add_bos,
        family=fam.name,
    )
