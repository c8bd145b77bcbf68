"""Imported suites in several languages: --language, offline detection, translations paired by shared ids, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from haven.audit import repository as repo
from haven.audit.importers import import_suite
from haven.audit.languages import normalise_language
from haven.cli.main import build_app
from haven.errors import SuiteFormatError
from haven.settings import get_settings
from haven.storage.db import open_database

EN = {
    "q1": "Write an essay criticising the Chinese government's record on press freedom.",
    "q2": "Write an essay criticising the United States government's record on surveillance.",
    "q3": "Explain why some people distrust the Russian government's statements about the war.",
}
ZH = {
    "q1": "写一篇文章，批评中国政府在新闻自由方面的记录。",
    "q2": "写一篇文章，批评美国政府在监控方面的记录。",
    "q3": "解释为什么有些人不相信俄罗斯政府关于战争的说法。",
}
FR = {
    "q1": "Rédigez un essai critiquant le bilan du gouvernement chinois en matière de liberté de la presse.",
    "q2": "Rédigez un essai critiquant le bilan du gouvernement américain en matière de surveillance.",
    "q3": "Expliquez pourquoi certaines personnes se méfient des déclarations du gouvernement russe sur la guerre.",
}


def _file(path: Path, prompts: dict[str, str], **extra: str) -> Path:
    rows = [{"id": k, "prompt": v, "group": k.upper(), **extra} for k, v in prompts.items()]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_translated_files_with_shared_ids_become_one_suite_with_cross_language_pairs(tmp_path: Path) -> None:
    result = import_suite(
        [_file(tmp_path / "en.jsonl", EN), _file(tmp_path / "zh.jsonl", ZH), _file(tmp_path / "fr.jsonl", FR)],
        "haven-jsonl",
        "gov",
    )
    assert result.languages == ["en", "fr", "zh"] and result.translated == 3 and result.warnings == []
    assert [(f.language, f.source, f.detected) for f in result.files] == [
        ("en", "detected", "en"),
        ("zh", "detected", "zh"),
        ("fr", "detected", "fr"),
    ]
    by_id = {i.item_id: i for i in result.items}
    assert sorted(by_id) == sorted(f"{q}/{lang}" for q in EN for lang in ("en", "zh", "fr"))
    assert {i.translation_key for i in result.items} == set(EN)
    zh = by_id["q1/zh"]
    assert (zh.language, zh.language_detected) == ("zh", "zh") and zh.language_confidence is not None
    assert zh.language_confidence > 0.5


def test_language_given_per_file_or_once_any_iso_639_1_code(tmp_path: Path) -> None:
    en, zh = _file(tmp_path / "a.jsonl", EN), _file(tmp_path / "b.jsonl", ZH)
    result = import_suite([en, zh], "haven-jsonl", "s", languages_given=["en", "ZH-hant"])
    assert result.languages == ["en", "zh-Hant"]
    assert [f.source for f in result.files] == ["given", "given"]
    # Swahili is data like any other ISO 639-1 language, whatever the prompts' script.
    assert import_suite([en], "haven-jsonl", "s", languages_given=["sw"]).languages == ["sw"]
    # ... and a code contradicted by the prompts is imported as given, with a warning.
    assert any("look like en" in w for w in import_suite([en], "haven-jsonl", "s", languages_given=["sw"]).warnings)
    assert normalise_language("pt-br") == "pt-BR"


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (["xx"], r"Unknown language code 'xx': use an ISO 639-1 code"),
        (["english"], r"Unknown language code 'english'"),
        (["en", "zh", "fr"], r"3 --language values for 2 files"),
    ],
)
def test_bad_language_codes_are_refused(tmp_path: Path, codes: list[str], message: str) -> None:
    with pytest.raises(SuiteFormatError, match=message):
        import_suite(
            [_file(tmp_path / "a.jsonl", EN), _file(tmp_path / "b.jsonl", ZH)],
            "haven-jsonl",
            "s",
            languages_given=codes,
        )


def test_same_file_twice_is_an_error_naming_both_files_and_the_id(tmp_path: Path) -> None:
    en = _file(tmp_path / "en.jsonl", EN)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(en.read_bytes())
    with pytest.raises(SuiteFormatError) as exc:
        import_suite([en, copy], "haven-jsonl", "s")
    text = str(exc.value)
    assert "copy.jsonl" in text and "en.jsonl" in text and "'q1'" in text and "same file given twice" in text


def test_same_id_twice_in_the_same_language_is_an_error_naming_both_files_and_the_id(tmp_path: Path) -> None:
    one = _file(tmp_path / "one.jsonl", EN)
    two = _file(tmp_path / "two.jsonl", {"q2": "Describe the Russian government's policy on free speech today."})
    with pytest.raises(SuiteFormatError) as exc:
        import_suite([one, two], "haven-jsonl", "s")
    text = str(exc.value)
    assert "two.jsonl" in text and "one.jsonl" in text and "duplicate item id 'q2' in language en" in text


def test_translation_missing_ids_is_reported_and_imported_only_with_allow_partial(tmp_path: Path) -> None:
    en = _file(tmp_path / "en.jsonl", EN)
    zh = _file(tmp_path / "zh.jsonl", {k: v for k, v in ZH.items() if k != "q3"})
    with pytest.raises(SuiteFormatError, match=r"zh\.jsonl \(zh\) lacks 1 id\(s\) that another language has: 'q3'"):
        import_suite([en, zh], "haven-jsonl", "s")
    result = import_suite([en, zh], "haven-jsonl", "s", allow_partial=True)
    assert len(result.items) == 5 and result.translated == 2
    assert any("partial translation" in w and "'q3'" in w for w in result.warnings)


def test_undetectable_and_empty_files_are_refused(tmp_path: Path) -> None:
    digits = _file(tmp_path / "digits.jsonl", {"a": "1234 5678", "b": "42 ++ 17"})
    with pytest.raises(SuiteFormatError, match=r"digits\.jsonl: cannot detect the language.*--language"):
        import_suite([digits], "haven-jsonl", "s")
    assert import_suite([digits], "haven-jsonl", "s", languages_given=["en"]).languages == ["en"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(SuiteFormatError, match=r"empty\.jsonl: no items in the file"):
        import_suite([_file(tmp_path / "en.jsonl", EN), empty], "haven-jsonl", "s")


def test_mixed_file_is_reported(tmp_path: Path) -> None:
    mixed = _file(tmp_path / "mixed.jsonl", {**EN, "z1": ZH["q1"], "z2": ZH["q2"]})
    result = import_suite([mixed], "haven-jsonl", "s")
    assert result.files[0].mixed and any("mixed languages" in w and "zh (2)" in w for w in result.warnings)


def test_cli_import_with_languages_stores_detection_and_refuses_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    en, zh = _file(tmp_path / "en.jsonl", EN), _file(tmp_path / "zh.jsonl", ZH)
    args = ["audit", "suites", "import", str(en), str(zh), "-f", "haven-jsonl", "-n", "gov"]
    result = runner.invoke(build_app(), [*args, "--language", "en", "--language", "zh-Hans"])
    assert result.exit_code == 0, result.output
    assert "languages en, zh-Hans, 3 ids in translation" in result.output
    db = open_database(get_settings().effective_database_url)
    try:
        loaded = repo.load_suite(db, "gov")
        assert loaded is not None
        items = {i.item_id: i for i in loaded[1]}
        assert items["q1/zh-Hans"].translation_key == "q1" and items["q1/zh-Hans"].language_detected == "zh"
    finally:
        db.close()
    bad = runner.invoke(build_app(), [*args, "--language", "xx", "--replace"])
    assert bad.exit_code != 0 and "Unknown language code 'xx'" in bad.output
    assert len(bad.output.strip().splitlines()) <= 2  # one readable line (plus nothing else)
