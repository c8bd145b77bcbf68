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
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

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
                    language="en",
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
                language="en",
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
                language="en",
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
                language=row.get("language") or "en",
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


def import_files(paths: Sequence[Path], format: str, suite: str) -> list[SuiteItem]:
    """Every item of every file (one suite); raises before anything is returned if any file is bad."""
    if format not in IMPORTERS:
        raise SuiteFormatError(f"Unknown suite format {format!r}; formats: {', '.join(FORMATS)}.")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", suite):
        raise SuiteFormatError(f"Suite name {suite!r} must be letters, digits, '-', '_' or '.'.")
    if not paths:
        raise SuiteFormatError("No files to import.")
    items: list[SuiteItem] = []
    seen: dict[str, Path] = {}
    for path in paths:
        file_items = IMPORTERS[format](Path(path), suite)
        if not file_items:
            raise SuiteFormatError(f"{path}: no items in the file.")
        for item in file_items:
            if item.item_id in seen:
                raise SuiteFormatError(
                    f"{path}: field 'id': duplicate item id {item.item_id!r} (also in {seen[item.item_id]})."
                )
            seen[item.item_id] = Path(path)
        items.extend(file_items)
    return items
