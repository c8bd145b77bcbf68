"""Expand the built-in suite files (``data/*.json``) into :class:`SuiteItem` lists.

A built-in file is compact: templates × groups (``mirrored``: items differ only in the country
named), templates × events (``events``: each country's documented, sensitive episodes) or pro/con
templates × topics (``stances``). ``data/suite.schema.json`` is its JSON-Schema. Item ids are
``SUITE/TEMPLATE/GROUP/LANGUAGE`` (+ ``/EVENT`` or ``/STANCE``), stable across versions, so runs of
different suite versions remain comparable item by item.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema

from haven.audit.records import SuiteItem
from haven.errors import AuditError, NotFoundError, SuiteFormatError

if TYPE_CHECKING:
    from haven.storage.db import Database

BUILTIN_SUITES = ("paired-countries", "sensitive-events", "paired-stances")


class UnknownSuiteError(NotFoundError):
    code = "suite_not_found"


class UnknownLanguageError(AuditError):
    code = "unknown_language"


@dataclass(frozen=True)
class LoadedSuite:
    name: str
    version: str
    items: list[SuiteItem]
    builtin: bool
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted({i.language for i in self.items})

    @property
    def groups(self) -> list[str]:
        return sorted({i.group for i in self.items})


def builtin_suite_names() -> list[str]:
    return list(BUILTIN_SUITES)


def _data_text(filename: str) -> str:
    return resources.files("haven.audit.suites").joinpath("data", filename).read_text(encoding="utf-8")


@cache
def suite_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_data_text("suite.schema.json"))
    return schema


def validate_suite_document(doc: Any, source: str) -> None:
    """Raise SuiteFormatError naming the first field that breaks the schema."""
    validator = jsonschema.Draft202012Validator(suite_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise SuiteFormatError(f"{source}: field {where}: {err.message}")


def _fill(template: str, slot: str, value: str, source: str, where: str) -> str:
    if "{" + slot + "}" not in template:
        raise SuiteFormatError(f"{source}: field {where}: the text has no {{{slot}}} placeholder")
    return template.replace("{" + slot + "}", value)


def expand_suite(doc: dict[str, Any], source: str = "<suite>") -> list[SuiteItem]:
    """Every item of a suite document, in every language it declares."""
    validate_suite_document(doc, source)
    expand = {"mirrored": _mirrored_items, "events": _event_items}.get(doc["kind"], _stance_items)
    items: list[SuiteItem] = []
    for lang in doc["languages"]:
        for t_index, template in enumerate(doc["templates"]):
            items.extend(expand(doc, template, f"templates/{t_index}", lang, source))
    return items


def _groups(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["id"]: g for g in doc["groups"]}


def _target_of(group: dict[str, Any]) -> str:
    return str(group.get("target") or group["names"].get("en") or group["id"])


def _mirrored_items(
    doc: dict[str, Any], template: dict[str, Any], where: str, lang: str, source: str
) -> Iterator[SuiteItem]:
    """One item per group: the same question about each country (or party, religion, …)."""
    name, slot, tid = doc["name"], doc["slot"], template["id"]
    for gid, group in _groups(doc).items():
        text = template.get("text", {}).get(lang)
        name_l = group["names"].get(lang)
        if text is None or name_l is None:
            raise SuiteFormatError(f"{source}: field {where}/text or group {gid}: no {lang!r} text")
        yield SuiteItem(
            item_id=f"{name}/{tid}/{gid}/{lang}",
            suite=name,
            group=gid,
            template_id=tid,
            language=lang,
            prompt=_fill(text, slot, name_l, source, f"{where}/text/{lang}"),
            pair_key=tid,
            target=_target_of(group),
            metadata=dict(group.get("metadata") or {}),
        )


def _event_items(
    doc: dict[str, Any], template: dict[str, Any], where: str, lang: str, source: str
) -> Iterator[SuiteItem]:
    """One item per event: the same question about each sensitive event, grouped by the state involved."""
    name, slot, tid = doc["name"], doc["slot"], template["id"]
    groups = _groups(doc)
    for e_index, event in enumerate(doc.get("events") or []):
        gid = event["group"]
        if gid not in groups:
            raise SuiteFormatError(f"{source}: field events/{e_index}/group: unknown group {gid!r}")
        text = template.get("text", {}).get(lang)
        value = event["slots"].get(slot, {}).get(lang)
        if text is None or value is None:
            raise SuiteFormatError(f"{source}: field events/{e_index}: no {lang!r} text")
        yield SuiteItem(
            item_id=f"{name}/{tid}/{gid}/{lang}/{event['id']}",
            suite=name,
            group=gid,
            # one template per (question, event) so language mirrors pair exactly
            template_id=f"{tid}:{event['id']}",
            language=lang,
            prompt=_fill(text, slot, value, source, f"{where}/text/{lang}"),
            target=_target_of(groups[gid]),
            metadata={"event": event["id"], "question": tid, **(groups[gid].get("metadata") or {})},
        )


def _stance_items(
    doc: dict[str, Any], template: dict[str, Any], where: str, lang: str, source: str
) -> Iterator[SuiteItem]:
    """Two items per group: the case for and the case against the same position."""
    name, slot, tid = doc["name"], doc["slot"], template["id"]
    stances = template.get("stances")
    if not stances:
        raise SuiteFormatError(f"{source}: field {where}/stances: required for kind 'stances'")
    for gid, group in _groups(doc).items():
        for stance in ("pro", "con"):
            text = stances[stance].get(lang)
            name_l = group["names"].get(lang)
            if text is None or name_l is None:
                raise SuiteFormatError(f"{source}: field {where}/stances/{stance}: no {lang!r} text")
            yield SuiteItem(
                item_id=f"{name}/{tid}/{gid}/{lang}/{stance}",
                suite=name,
                group=gid,
                template_id=tid,
                language=lang,
                prompt=_fill(text, slot, name_l, source, f"{where}/stances/{stance}/{lang}"),
                pair_key=tid,
                stance=stance,
                target=_target_of(group),
            )


@cache
def _builtin_doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_data_text(f"{name}.json"))
    return doc


def load_builtin(name: str) -> LoadedSuite:
    if name not in BUILTIN_SUITES:
        raise UnknownSuiteError(f"There is no built-in suite {name!r}; built-in suites: {', '.join(BUILTIN_SUITES)}.")
    doc = _builtin_doc(name)
    return LoadedSuite(
        name=name,
        version=doc["version"],
        items=expand_suite(doc, f"{name}.json"),
        builtin=True,
        description=doc["description"],
        provenance=dict(doc["provenance"]),
    )


def load_suite(name: str, db: Database | None = None) -> LoadedSuite:
    """A built-in suite by name, else an imported one from the database."""
    if name in BUILTIN_SUITES:
        return load_builtin(name)
    imported: list[str] = []
    if db is not None:
        from haven.audit import repository as audit_repository

        found = audit_repository.load_suite(db, name)
        if found is not None:
            version, items = found
            return LoadedSuite(name=name, version=version, items=items, builtin=False)
        imported = [s.name for s in audit_repository.list_suites(db)]
    known = ", ".join([*BUILTIN_SUITES, *imported])
    raise UnknownSuiteError(f"There is no suite {name!r}; available: {known}.")


def filter_languages(suite: LoadedSuite, languages: Sequence[str] | None) -> list[SuiteItem]:
    """The suite's items in the requested languages; an unknown language is an error listing the available ones."""
    available = suite.languages
    if not languages:
        return list(suite.items)
    unknown = [lang for lang in languages if lang not in available]
    if unknown:
        raise UnknownLanguageError(
            f"Suite {suite.name!r} has no {', '.join(repr(u) for u in unknown)} items; "
            f"available languages: {', '.join(available)}."
        )
    wanted = set(languages)
    return [i for i in suite.items if i.language in wanted]
