"""Check strings against a GBNF grammar with llama.cpp's own grammar sampler (vocabulary only).

``GrammarChecker(vocab).accepts(gbnf, text)`` tokenizes ``text``, feeds token after token through
``llama_sampler_init_grammar`` and says whether every token was allowed and the end of generation
is allowed after the last one: exactly what constrained generation would permit.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llama_cpp


@contextmanager
def vocab_of(path: Path) -> Iterator[Any]:
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    assert model
    try:
        yield llama_cpp.llama_model_get_vocab(model)
    finally:
        llama_cpp.llama_model_free(model)


class GrammarChecker:
    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab

    def parses(self, gbnf: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, gbnf.encode(), b"root")
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
        return bool(sampler)

    def _allowed(self, sampler: Any, tok: int) -> bool:
        cand = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(tok, 0.0, 0.0))
        arr = llama_cpp.llama_token_data_array(cand, 1, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
        return not math.isinf(cand[0].logit)

    def accepts(self, gbnf: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, gbnf.encode(), b"root")
        assert sampler, "llama.cpp failed to parse the grammar"
        try:
            raw = text.encode("utf-8", "surrogatepass")
            buf = (llama_cpp.llama_token * (len(raw) + 8))()
            n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), False, False)
            assert n >= 0
            for tok in buf[:n]:
                if not self._allowed(sampler, tok):
                    return False
                llama_cpp.llama_sampler_accept(sampler, tok)
            return self._allowed(sampler, llama_cpp.llama_vocab_eos(self.vocab))
        finally:
            llama_cpp.llama_sampler_free(sampler)
