"""ReasoningSplitter / split_reasoning: <think> blocks, split tags, both template styles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from haven.engine.reasoning import ReasoningSplitter, Segment, split_reasoning


def _merge(segments: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for kind, text in segments:
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def _run(pieces: list[str], opened: bool = False) -> list[Segment]:
    s = ReasoningSplitter(opened=opened)
    got: list[Segment] = []
    for p in pieces:
        got += s.push(p)
    return _merge(got + s.flush())


def test_think_block_then_answer_strips_newlines_after_tags() -> None:
    assert split_reasoning("<think>\nLet me see.\n</think>\n\nThe answer is 4.") == (
        "Let me see.\n",
        "The answer is 4.",
    )


def test_template_opened_think_starts_as_reasoning() -> None:
    # DeepSeek-R1 distills: the generation prompt ends with "<think>\n"
    assert split_reasoning("\nhmm</think>\n\nHi", opened=True) == ("hmm", "Hi")


def test_tags_split_across_pushes() -> None:
    s = ReasoningSplitter()
    assert s.push("<th") == []
    assert s.push("ink>abc</th") == [("reasoning", "abc")]
    assert s.push("ink>  ok") == [("content", "ok")]
    assert s.flush() == []


def test_content_before_a_mid_stream_think_is_content() -> None:
    assert _run(["Sure. <think>why</think> done"]) == [
        ("content", "Sure. "),
        ("reasoning", "why"),
        ("content", "done"),
    ]


def test_unclosed_think_is_reasoning() -> None:
    assert split_reasoning("<think>still thinking") == ("still thinking", "")


def test_partial_tag_at_end_is_flushed_as_its_kind() -> None:
    assert _run(["answer <thi"]) == [("content", "answer <thi")]
    assert _run(["idea </thi"], opened=True) == [("reasoning", "idea </thi")]


def test_no_tags_is_all_content_with_whitespace_kept() -> None:
    assert split_reasoning("  plain <b>text</b>") == ("", "  plain <b>text</b>")


def test_custom_tags() -> None:
    s = ReasoningSplitter(open_tag="[T]", close_tag="[/T]")
    assert _merge(s.push("[T]x[/T]y") + s.flush()) == [("reasoning", "x"), ("content", "y")]


_pieces = st.lists(st.sampled_from(["<think>", "</think>", "<", "think", ">", "</", "\n", " ", "a", "好", "/"]))


@given(_pieces, st.lists(st.integers(min_value=0, max_value=200), max_size=12), st.booleans())
def test_any_split_gives_the_same_segments_as_one_push(parts: list[str], cuts: list[int], opened: bool) -> None:
    text = "".join(parts)
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = _run([text], opened)
    assert _run(pieces, opened) == whole
    reasoning, content = split_reasoning(text, opened=opened)
    assert reasoning == "".join(t for k, t in whole if k == "reasoning")
    assert content == "".join(t for k, t in whole if k == "content")
    # text without an opening tag is passed through untouched
    if not opened and "<think>" not in text:
        assert (reasoning, content) == ("", text)
