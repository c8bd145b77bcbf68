"""IncrementalDetokenizer: whole characters only, whatever the token boundaries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from haven.engine.detokenizer import IncrementalDetokenizer


def _detok_for(pieces: list[bytes]) -> IncrementalDetokenizer:
    return IncrementalDetokenizer(lambda i: pieces[i])


def test_chinese_character_split_over_three_tokens_is_emitted_once_complete() -> None:
    raw = "你好".encode()  # 6 bytes, 3 per character
    pieces = [raw[0:1], raw[1:2], raw[2:4], raw[4:6]]
    detok = _detok_for(pieces)
    assert [detok.push(i) for i in range(4)] == ["", "", "你", "好"]
    assert detok.flush() == ""


def test_emoji_split_and_ascii_around_it() -> None:
    raw = "a😀b".encode()
    detok = _detok_for([raw[:2], raw[2:4], raw[4:]])
    assert detok.push(0) == "a"
    assert detok.push(1) == ""
    assert detok.push(2) == "😀b"


def test_incomplete_sequence_at_end_is_replaced_on_flush() -> None:
    detok = _detok_for([b"ok", "你".encode()[:2]])
    assert detok.push(0) == "ok"
    assert detok.push(1) == ""
    assert detok.flush() == "\ufffd"
    # flush resets: the detokenizer can be reused
    assert detok.push(0) == "ok"


def test_invalid_byte_is_replaced_immediately_not_held() -> None:
    detok = _detok_for([b"\xffx"])
    assert detok.push(0) == "\ufffdx"


@given(st.text(), st.lists(st.integers(min_value=0, max_value=64), max_size=20))
def test_any_byte_split_gives_the_same_text(text: str, cuts: list[int]) -> None:
    raw = text.encode()
    bounds = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    pieces = [raw[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    detok = _detok_for(pieces)
    out = [detok.push(i) for i in range(len(pieces))]
    assert "".join(out) + detok.flush() == text
    # every emitted piece is valid text on its own (no surrogates / replacement chars)
    assert all("\ufffd" not in o for o in out)


@given(st.binary(max_size=40), st.lists(st.integers(min_value=0, max_value=40), max_size=10))
def test_arbitrary_bytes_match_one_shot_decode_with_replacement(raw: bytes, cuts: list[int]) -> None:
    bounds = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    pieces = [raw[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    detok = _detok_for(pieces)
    out = "".join(detok.push(i) for i in range(len(pieces))) + detok.flush()
    assert out == raw.decode("utf-8", errors="replace")
