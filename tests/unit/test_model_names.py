"""Model names: ``name[:tag]`` parsing, normalisation and every rejected shape."""

from __future__ import annotations

import pytest

from haven.errors import InvalidModelNameError
from haven.models.names import ModelName, name_from_filename, normalize_name, parse_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("deepseek-r1:1.5b", ModelName("deepseek-r1", "1.5b")),
        ("llama3", ModelName("llama3", "latest")),
        ("Qwen2.5:0.5B", ModelName("qwen2.5", "0.5b")),
        ("haven-demo:tiny", ModelName("haven-demo", "tiny")),
        ("a_b.c-d:q4_k_m", ModelName("a_b.c-d", "q4_k_m")),
    ],
)
def test_valid_names_are_normalised(raw: str, expected: ModelName) -> None:
    assert parse_name(raw) == expected
    assert normalize_name(raw) == f"{expected.name}:{expected.tag}"


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("", "the name is empty"),
        ("   ", "the name is empty"),
        ("../etc:passwd", "'/' and '\\' are not allowed"),
        ("..", "'..' is not allowed"),
        ("a..b", "'..' is not allowed"),
        ("qwen:..", "'..' is not allowed"),
        ("owner/model", "'/' and '\\' are not allowed"),
        ("c:\\model", "'/' and '\\' are not allowed"),
        ("bad\x00name", "control characters are not allowed"),
        ("bad\nname", "control characters are not allowed"),
        ("esc\x1b[31m", "control characters are not allowed"),
        ("a:b:c", "only one ':'"),
        (":tag", "the name is empty"),
        ("name:", "the tag is empty"),
        ("x" * 81, "longer than 80 characters"),
        ("name:" + "t" * 65, "longer than 64 characters"),
        ("-leading", "use letters, digits"),
        ("spaces in name", "use letters, digits"),
        ("ümlaut", "use letters, digits"),
    ],
)
def test_invalid_names_give_one_clear_line(raw: str, complaint: str) -> None:
    with pytest.raises(InvalidModelNameError) as caught:
        parse_name(raw)
    message = caught.value.message
    assert complaint in message
    assert "\n" not in message and "\x00" not in message and "\x1b" not in message


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "qwen2.5-0.5b-instruct-q4_k_m"),
        ("weird name (copy).gguf", "weird-name-copy"),
        ("...gguf", "model"),
        ("a..b.gguf", "a.b"),
    ],
)
def test_default_name_from_a_file_name_is_valid(filename: str, expected: str) -> None:
    assert name_from_filename(filename) == expected
    parse_name(expected)


def test_pull_references_are_bounded_and_printable() -> None:
    from haven.models.names import MAX_REFERENCE_LENGTH, check_reference

    assert check_reference(" hf.co/owner/repo:Q4_K_M ") == "hf.co/owner/repo:Q4_K_M"
    with pytest.raises(InvalidModelNameError, match="longer than 1,024 characters") as caught:
        check_reference("hf.co/o/" + "r" * 100_000)
    assert len(caught.value.message) < 200
    assert len(check_reference("a" * MAX_REFERENCE_LENGTH)) == MAX_REFERENCE_LENGTH
    for bad in ("", "   ", "hf.co/o/r\nx", "hf.co/o /r", "hf.co/\x00"):
        with pytest.raises(InvalidModelNameError):
            check_reference(bad)
