"""Tokens a grammar-constrained generation must not pick: byte sequences that are never valid UTF-8.

llama.cpp's grammar decodes each token's bytes leniently: an overlong ``C1 81`` reads as ``A``,
``ED A0 80`` as the surrogate U+D800, ``F8…`` as a code point past U+10FFFF. The text Haven
returns is decoded strictly (invalid bytes become U+FFFD, one per bad byte), so such a token
would make the output differ from what the grammar checked (a ``maxLength`` 5 string came back
9 characters long from a random-weight model). Banning, for constrained requests only, the tokens
that contain such a sequence, or that end in the lead byte ``E0``/``F0`` (which could start an
overlong form in the next token; real vocabularies spell those scripts with merged tokens), closes
that gap. Surrogates and code points past U+10FFFF split across tokens are refused by the grammar's
own character class (:func:`.regex.raw_class`).
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

import llama_cpp.llama_cpp as ll

_UNSAFE = re.compile(
    rb"[\xC0\xC1\xF5-\xFF]"  # bytes that never occur in UTF-8
    rb"|\xE0[\x80-\x9F]|\xF0[\x80-\x8F]"  # overlong 3- and 4-byte forms
    rb"|\xED[\xA0-\xBF]"  # surrogates
    rb"|\xF4[\x90-\xBF]"  # past U+10FFFF
    rb"|[\xE0\xF0]\Z"  # a lead byte that could start an overlong form in the next token
)


def unsafe_utf8_tokens(vocab: Any, n_vocab: int) -> tuple[int, ...]:
    """Ids of the tokens whose bytes could decode differently in llama.cpp's grammar and in Haven.

    Reads the vocabulary with its own buffer (safe beside the scheduler thread's decoding)."""
    buf = ctypes.create_string_buffer(256)
    out = []
    for token in range(n_vocab):
        n = ll.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(vocab, token, big, len(big), 0, False)
            piece = big.raw[:n]
        else:
            piece = buf.raw[:n]
        if _UNSAFE.search(piece):
            out.append(token)
    return tuple(out)
