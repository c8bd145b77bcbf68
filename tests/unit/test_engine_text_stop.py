"""StopMatcher: stop strings across token boundaries, validation of the stop list."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.engine.stop import StopMatcher
from haven.errors import InvalidRequestError


def _stream(matcher: StopMatcher, pieces: list[str]) -> tuple[str, str | None]:
    out = []
    for piece in pieces:
        text, stop = matcher.push(piece)
        out.append(text)
        if stop is not None:
            return "".join(out), stop
    out.append(matcher.flush())
    return "".join(out), matcher.matched


def test_stop_split_across_tokens_is_found_and_not_emitted() -> None:
    m = StopMatcher(["###"])
    assert m.push("Hello #") == ("Hello ", None)
    assert m.push("#") == ("", None)
    assert m.push("# world") == ("", "###")
    assert m.matched == "###"
    assert m.push("more") == ("", "###")


def test_held_back_prefix_is_released_when_it_stops_matching() -> None:
    m = StopMatcher(["STOP"])
    assert m.push("ST") == ("", None)
    assert m.push("AR") == ("STAR", None)
    assert m.flush() == ""
    assert m.matched is None


def test_flush_returns_partial_prefix_at_end_of_text() -> None:
    m = StopMatcher(["</answer>"])
    assert m.push("42</ans") == ("42", None)
    assert m.flush() == "</ans"


def test_earliest_starting_stop_wins_even_when_a_later_one_completes_first() -> None:
    m = StopMatcher(["STOPA", "TOP"])
    assert m.push("xxSTOP") == ("xx", None)  # "TOP" is complete but "STOPA" started earlier
    assert m.push("Ayy") == ("", "STOPA")
    m2 = StopMatcher(["STOPA", "TOP"])
    assert m2.push("xxSTOP") == ("xx", None)
    assert m2.push("Xyy") == ("S", "TOP")


def test_no_stops_passes_text_through() -> None:
    m = StopMatcher([])
    assert m.push("abc") == ("abc", None)


@pytest.mark.parametrize(
    ("stops", "message"),
    [
        ([""], "must not be empty"),
        ([1], "must be strings, got int"),
        ([None], "must be strings, got NoneType"),
        (["a"] * 17, "At most 16 stop strings"),
        (["x" * 1001], "at most 1000 characters"),
        (42, "must be a string or a list of strings"),
    ],
)
def test_bad_stop_lists_are_rejected_with_a_clear_message(stops: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as info:
        StopMatcher(stops)  # type: ignore[arg-type]
    assert info.value.param == "stop"
    assert info.value.status_code == 400


def test_sixteen_stops_of_1000_chars_are_allowed() -> None:
    assert len(StopMatcher(["x" * 999 + str(i % 10) for i in range(16)]).stops) == 16


_alphabet = st.sampled_from("abc#")


@given(
    st.text(alphabet=_alphabet, max_size=30),
    st.lists(st.text(alphabet=_alphabet, min_size=1, max_size=4), min_size=1, max_size=3),
    st.lists(st.integers(min_value=0, max_value=30), max_size=10),
)
def test_any_split_gives_the_same_result_as_one_push(text: str, stops: list[str], cuts: list[int]) -> None:
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = _stream(StopMatcher(stops), [text])
    assert _stream(StopMatcher(stops), pieces) == whole
    # and the one-push result is the text up to the earliest-starting (then shortest) stop
    hits = sorted((text.find(s), len(s), s) for s in stops if s in text)
    expected = (text[: hits[0][0]], hits[0][2]) if hits else (text, None)
    assert whole == expected


def test_an_unarmed_matcher_emits_stops_but_holds_a_tail_that_may_begin_one() -> None:
    # min_tokens not yet generated: a complete stop is text; a possible start is held for the armed text.
    m = StopMatcher(["###"])
    assert m.push("a###b", armed=False) == ("a###b", None)
    assert m.push("c##", armed=False) == ("c", None)
    assert m.push("#d") == ("", "###")


@pytest.mark.parametrize(("armed", "rest", "matched"), [(False, "ab", None), (True, "", "ab")])
def test_a_flush_matches_a_held_stop_only_when_armed(armed: bool, rest: str, matched: str | None) -> None:
    m = StopMatcher(["ab", "abcd"])
    assert m.push("xab", armed=False) == ("x", None)  # "ab" may begin "abcd": held
    assert m.flush(armed=armed) == rest and m.matched == matched
