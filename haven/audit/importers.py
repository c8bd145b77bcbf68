"""Import external prompt suites into Haven's item format.

Formats (``haven audit suites import PATH... --format F --name NAME``):

* ``anthropic-csv``: Anthropic's political-neutrality-eval ``eval_set.csv``. Each row gives two
  mirrored items, ``prompt_a``/``prompt_b``, whose groups are ``prompt_a_group``/``prompt_b_group``;
  they share a ``pair_key`` (the row), so the audit compares the two sides of every row.
  ``stance_a``/``stance_b`` are kept in the item's metadata under ``stance``.
* ``speechmap-jsonl``: SpeechMap questions; ``category`` → group, ``id`` → item id, ``domain`` →
  template (the unit the bootstrap resamples) and metadata, ``question`` → prompt.
* ``promptfoo-csv``: ``subject,prompt`` rows; where the subject occurs in the prompt, rows whose
  prompts are identical but for the subject become mirrors (same pair_key).
* ``haven-jsonl``: our own plain format, one item per line (``suites/data/haven-jsonl.schema.json``).

Any malformed input raises :class:`~haven.errors.SuiteFormatError` naming the file, line and field;
callers store the items only after every file parsed, in one transaction.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from haven.audit import languages
from haven.audit.records import SuiteItem
from haven.errors import SuiteFormatError

FORMATS = ("anthropic-csv", "speechmap-jsonl", "promptfoo-csv", "haven-jsonl")
ANTHROPIC_COLUMNS = (
    "template_category",
    "template",
    "stance_a",
    "stance_b",
    "prompt_a",
    "prompt_b",
    "prompt_a_group",
    "prompt_b_group",
)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SuiteFormatError(f"{path}: no such file.") from None
    except UnicodeDecodeError as exc:
        raise SuiteFormatError(f"{path}: not UTF-8 text (byte {exc.start}).") from None
    except OSError as exc:
        raise SuiteFormatError(f"{path}: cannot be read ({exc.strerror}).") from None


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; the header must have the required columns."""
    text = _read_text(path)
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise SuiteFormatError(f"{path}: line 1: missing column(s) {', '.join(missing)} in the header.")
    try:
        for row in reader:
            line = reader.line_num
            if None in row or any(v is None for v in row.values()):
                raise SuiteFormatError(f"{path}: line {line}: expected {len(header)} columns.")
            yield line, row
    except csv.Error as exc:
        raise SuiteFormatError(f"{path}: line {reader.line_num}: {exc}.") from None


def _require(path: Path, line: int, row: dict[str, Any], fields: Sequence[str]) -> None:
    for name in fields:
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise SuiteFormatError(f"{path}: line {line}: field {name!r} is missing or empty.")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteFormatError(f"{path}: line {line_no}: not valid JSON ({exc.msg}).") from None
        if not isinstance(obj, dict):
            raise SuiteFormatError(f"{path}: line {line_no}: expected a JSON object.")
        yield line_no, obj


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "x"


def import_anthropic_csv(path: Path, suite: str) -> list[SuiteItem]:
    items: list[SuiteItem] = []
    for line, row in _csv_rows(path, ANTHROPIC_COLUMNS):
        _require(path, line, row, ANTHROPIC_COLUMNS)
        pair = f"{path.stem}/{line}"
        template = f"{row['template_category']}:{_slug(row['template'])}"
        base: dict[str, Any] = {
            k: row[k] for k in ("split", "main_category", "topic_name", "partisan", "template") if k in row
        }
        for side in ("a", "b"):
            group = row[f"prompt_{side}_group"]
            items.append(
                SuiteItem(
                    item_id=f"{suite}/{pair}/{side}",
                    suite=suite,
                    group=group,
                    template_id=template,
                    language="",
                    prompt=row[f"prompt_{side}"],
                    pair_key=f"{pair}:{template}",
                    target=row[f"stance_{side}"],
                    metadata={**base, "stance": row[f"stance_{side}"], "side": side},
                )
            )
    return items


def import_speechmap_jsonl(path: Path, suite: str) -> list[SuiteItem]:
    items = []
    for line, row in _jsonl_rows(path):
        _require(path, line, row, ("id", "category", "question"))
        domain = row.get("domain") if isinstance(row.get("domain"), str) else None
        extra = {k: v for k, v in row.items() if k not in ("id", "category", "question")}
        items.append(
            SuiteItem(
                item_id=f"{suite}/{row['id']}",
                suite=suite,
                group=row["category"],
                template_id=_slug(domain) if domain else "speechmap",
                language="",
                prompt=row["question"],
                metadata=extra,
            )
        )
    return items


def import_promptfoo_csv(path: Path, suite: str) -> list[SuiteItem]:
    items = []
    for line, row in _csv_rows(path, ("subject", "prompt")):
        _require(path, line, row, ("subject", "prompt"))
        subject, prompt = row["subject"].strip(), row["prompt"]
        # Prompts that are identical once the subject is blanked out are mirrors of each other.
        template_text = prompt.replace(subject, "{subject}") if subject in prompt else None
        template = hashlib.sha1((template_text or prompt).encode()).hexdigest()[:12]
        items.append(
            SuiteItem(
                item_id=f"{suite}/{path.stem}/{line}",
                suite=suite,
                group=subject,
                template_id=template,
                language="",
                prompt=prompt,
                pair_key=template if template_text else None,
                target=subject,
                metadata={"template": template_text} if template_text else {},
            )
        )
    return items


@cache
def _haven_item_schema() -> dict[str, Any]:
    text = resources.files("haven.audit.suites").joinpath("data", "haven-jsonl.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def import_haven_jsonl(path: Path, suite: str) -> list[SuiteItem]:
    validator = jsonschema.Draft202012Validator(_haven_item_schema())
    items = []
    for line, row in _jsonl_rows(path):
        errors = sorted(validator.iter_errors(row), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            field = "/".join(str(p) for p in err.absolute_path) or (
                err.message.split("'")[1] if err.validator in ("required", "additionalProperties") else "(object)"
            )
            raise SuiteFormatError(f"{path}: line {line}: field {field!r}: {err.message}.")
        items.append(
            SuiteItem(
                item_id=row["id"],
                suite=suite,
                group=row["group"],
                template_id=row.get("template") or "default",
                language=row.get("language") or "",
                prompt=row["prompt"],
                pair_key=row.get("pair_key"),
                stance=row.get("stance"),
                target=row.get("target") or row["group"],
                metadata=row.get("metadata") or {},
            )
        )
    return items


IMPORTERS: dict[str, Callable[[Path, str], list[SuiteItem]]] = {
    "anthropic-csv": import_anthropic_csv,
    "speechmap-jsonl": import_speechmap_jsonl,
    "promptfoo-csv": import_promptfoo_csv,
    "haven-jsonl": import_haven_jsonl,
}


@dataclass(frozen=True)
class FileReport:
    path: Path
    language: str
    source: str
    """'given' (--language), 'rows' (the file's own language fields) or 'detected'."""
    items: int
    detected: str | None
    """The language most confidently detected in the file's prompts (ISO 639-1), if any."""
    confidence: float
    """The detector's confidence in ``detected`` for the file's prompts taken together."""
    mixed: bool
    unsure: bool


@dataclass(frozen=True)
class ImportResult:
    items: list[SuiteItem]
    files: list[FileReport]
    warnings: list[str] = field(default_factory=list)
    """Mixed or unsure files, a --language the prompts contradict, ids missing from a translation."""

    @property
    def languages(self) -> list[str]:
        return sorted({i.language for i in self.items})

    @property
    def translated(self) -> int:
        """Ids present in two or more languages (each one cross-language pair set)."""
        by_key: dict[str, set[str]] = defaultdict(set)
        for i in self.items:
            if i.translation_key is not None:
                by_key[i.translation_key].add(i.language)
        return sum(1 for langs in by_key.values() if len(langs) > 1)


def _read_file(path: Path, format: str, suite: str) -> list[SuiteItem]:
    items = IMPORTERS[format](path, suite)
    if not items:
        raise SuiteFormatError(f"{path}: no items in the file (it is empty).")
    return items


def _with_language(
    path: Path, items: list[SuiteItem], given: str | None, warnings: list[str]
) -> tuple[list[SuiteItem], FileReport]:
    """Give every item of one file its language (given, from its rows, or detected) and its detection."""
    texts = [i.prompt for i in items]
    detections = languages.detect(texts)
    summary = languages.file_language(texts, detections)
    row_langs = {i.language for i in items if i.language}
    if given is not None:
        language, source = given, "given"
        if summary.language and languages.primary(given) != summary.language and not summary.unsure:
            warnings.append(
                f"{path}: --language {given} given, but the prompts look like {summary.language} "
                f"(confidence {summary.confidence:.2f}); imported as {given}."
            )
    elif row_langs:
        if len(row_langs) != 1 or any(not i.language for i in items):
            # The rows say which language each is: keep them (normalised), detect only the rest.
            language, source = "", "rows"
        else:
            language, source = languages.normalise_language(row_langs.pop()), "rows"
    else:
        if summary.language is None:
            raise SuiteFormatError(
                f"{path}: cannot detect the language of the prompts; pass --language CODE for this file."
            )
        language, source = summary.language, "detected"
    if summary.mixed(len(items)):
        others = Counter(detections[i].language for i in summary.disagreeing)
        warnings.append(
            f"{path}: mixed languages: {len(summary.disagreeing)} of {len(items)} items look like "
            f"{', '.join(f'{k} ({v})' for k, v in others.most_common())}, not {summary.language}; "
            f"all are imported as {language or 'their own language field'}."
        )
    if summary.unsure and source == "detected":
        warnings.append(
            f"{path}: language detection unsure ({summary.language}, confidence {summary.confidence:.2f}); "
            f"imported as {language}. Pass --language to be certain."
        )
    out = []
    for item, det in zip(items, detections, strict=True):
        lang = language or (languages.normalise_language(item.language) if item.language else summary.language)
        if not lang:
            raise SuiteFormatError(f"{path}: item {item.item_id!r} has no language and none could be detected.")
        out.append(
            replace(item, language=lang, language_detected=det.language, language_confidence=round(det.confidence, 4))
        )
    report = FileReport(
        path=path,
        language=language or ",".join(sorted({i.language for i in out})),
        source=source,
        items=len(out),
        detected=summary.language,
        confidence=summary.confidence,
        mixed=summary.mixed(len(items)),
        unsure=summary.unsure,
    )
    return out, report


def import_suite(
    paths: Sequence[Path],
    format: str,
    suite: str,
    *,
    languages_given: Sequence[str] = (),
    allow_partial: bool = False,
) -> ImportResult:
    """Every item of every file (one suite), with languages; raises before anything is returned if any file is bad.

    ``languages_given`` is empty (detect, or use the rows' own ``language``), one code (every file) or one
    code per file, in order. Items sharing an id across files of different languages are one request in
    translation: their ids become ``ID/LANGUAGE`` and ``translation_key`` is the shared id. A translated file
    missing ids another language has is an error unless ``allow_partial`` (then it is a warning).
    """
    if format not in IMPORTERS:
        raise SuiteFormatError(f"Unknown suite format {format!r}; formats: {', '.join(FORMATS)}.")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", suite):
        raise SuiteFormatError(f"Suite name {suite!r} must be letters, digits, '-', '_' or '.'.")
    if not paths:
        raise SuiteFormatError("No files to import.")
    given = [languages.normalise_language(code) for code in languages_given]
    if len(given) not in (0, 1, len(paths)):
        raise SuiteFormatError(
            f"{len(given)} --language values for {len(paths)} files: give one for every file (in order) or one for all."
        )
    per_file: list[str | None] = [*given] * len(paths) if len(given) == 1 else [*given] or [None] * len(paths)
    warnings: list[str] = []
    items: list[SuiteItem] = []
    reports: list[FileReport] = []
    seen: dict[tuple[str, str], Path] = {}
    digests: dict[str, Path] = {}
    for raw_path, lang in zip(paths, per_file, strict=True):
        path = Path(raw_path)
        digest = hashlib.sha256(_read_text(path).encode()).hexdigest()
        same = digests.setdefault(digest, path)
        file_items, report = _with_language(path, _read_file(path, format, suite), lang, warnings)
        for item in file_items:
            key = (item.item_id, item.language)
            if key in seen:
                hint = " (the two files are identical: the same file given twice?)" if same != path else ""
                raise SuiteFormatError(
                    f"{path}: field 'id': duplicate item id {item.item_id!r} in language {item.language} "
                    f"(also in {seen[key]}){hint}."
                )
            seen[key] = path
        items.extend(file_items)
        reports.append(report)
    items = _pair_translations(items, seen, allow_partial, warnings)
    return ImportResult(items, reports, warnings)


def _pair_translations(
    items: list[SuiteItem], where: dict[tuple[str, str], Path], allow_partial: bool, warnings: list[str]
) -> list[SuiteItem]:
    ids_by_language: dict[str, set[str]] = defaultdict(set)
    for item in items:
        ids_by_language[item.language].add(item.item_id)
    shared = {
        i for i in set().union(*ids_by_language.values()) if sum(i in ids for ids in ids_by_language.values()) > 1
    }
    if not shared:
        # No translations: ids stay as they are; each item is its own translation key (never paired by accident).
        return [replace(i, translation_key=i.item_id) for i in items]
    everything = set().union(*ids_by_language.values())
    problems = []
    for language, ids in sorted(ids_by_language.items()):
        missing = sorted(everything - ids)
        if missing:
            files = sorted({str(where[(i.item_id, i.language)]) for i in items if i.language == language})
            problems.append(
                f"{', '.join(files)} ({language}) lacks {len(missing)} id(s) that another language has: "
                + ", ".join(repr(m) for m in missing[:5])
                + (", …" if len(missing) > 5 else "")
            )
    if problems and not allow_partial:
        raise SuiteFormatError(
            "Translated files do not have the same ids: "
            + "; ".join(problems)
            + ". Pass --allow-partial to import them anyway (unmatched items are not compared across languages)."
        )
    warnings.extend(f"partial translation: {p}." for p in problems)
    out = [replace(i, item_id=f"{i.item_id}/{i.language}", translation_key=i.item_id) for i in items]
    new_ids = Counter(i.item_id for i in out)
    if len(new_ids) != len(out):
        clash = next(i for i, count in new_ids.items() if count > 1)
        raise SuiteFormatError(f"Item id {clash!r} clashes with a translated item's id (ID/LANGUAGE); rename it.")
    return out


def import_files(paths: Sequence[Path], format: str, suite: str) -> list[SuiteItem]:
    """Items only (see import_suite); languages detected or read from the rows."""
    return import_suite(paths, format, suite).items
