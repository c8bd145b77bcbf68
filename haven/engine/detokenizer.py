"""Incremental detokenization: token ids in, text out, never a broken UTF-8 character.

A single token's bytes may end in the middle of a multi-byte UTF-8 sequence (byte-level BPE
splits Chinese characters and emoji across tokens). The detokenizer keeps those bytes until
the sequence completes, so every string it returns is whole characters. Invalid bytes (a
model may generate any byte sequence) become U+FFFD as soon as they are known to be invalid,
which keeps the held-back buffer at most three bytes long.

It knows nothing about llama.cpp: the caller passes ``token_to_piece`` (id → raw bytes).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable


class IncrementalDetokenizer:
    """Turns a stream of token ids into text, holding back incomplete UTF-8 sequences."""

    def __init__(self, token_to_piece: Callable[[int], bytes]) -> None:
        self._token_to_piece = token_to_piece
        # The stdlib incremental decoder already implements exactly the buffering rule we need:
        # it keeps a trailing incomplete sequence and replaces bytes that can never be valid.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ('' while a character is incomplete)."""
        return self.push_bytes(self._token_to_piece(token_id))

    def push_bytes(self, piece: bytes) -> str:
        """Add raw bytes directly (used when the caller already has the piece)."""
        return self._decoder.decode(piece, final=False)

    def flush(self) -> str:
        """Return what is still held back; an unfinished sequence becomes U+FFFD."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
