"""The JSON schema → GBNF compiler: the grammar admits only JSON documents valid against the schema.

Every string is real JSON (no raw control characters, only the escapes JSON defines, no lone
surrogate escapes); numbers are JSON numbers; whitespace between tokens is bounded. Keywords:

- ``type`` (a name or a list), ``nullable`` (OpenAPI), ``enum``, ``const``;
- objects: ``properties`` (written in the order given; optional ones may be left out),
  ``required``, ``additionalProperties`` (false, true or a schema; when absent, objects with
  declared properties get no others, as llama.cpp does, and objects without any take any keys);
- arrays: ``items``, ``prefixItems`` (and draft-7 list ``items`` / ``additionalItems``),
  ``minItems``, ``maxItems``;
- ``anyOf``; ``oneOf`` is compiled as ``anyOf`` (the output matches at least one branch: give
  branches that do not overlap, e.g. by a ``const`` tag, to get exactly one); ``allOf`` is merged
  into one schema (an error names what cannot be merged); ``$ref`` to ``#``, ``#/$defs/…``,
  ``#/definitions/…`` or any local JSON pointer, recursion included (a cycle that consumes no
  input is refused);
- strings: ``minLength``/``maxLength`` (any size up to the limit, via shallow repetition),
  ``pattern`` (see :mod:`.regex`), ``format`` date, time, date-time, uuid, email;
- numbers: ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` — exact for
  integers; for ``number`` the bounds are rounded inward to integers and exponents are left out.

Annotations (``title``, ``description``, ``default``, ``examples``, ``$schema``, ``x-…``) are
ignored. Any other keyword is a :class:`GrammarError` naming it and where it is, never ignored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema
import jsonschema.exceptions

from haven.engine.json_grammar.formats import FORMATS
from haven.engine.json_grammar.gbnf import RuleSet, literal
from haven.engine.json_grammar.limits import DEFAULT_LIMITS, GrammarLimits, limit_error
from haven.engine.json_grammar.numbers import MAX_DIGITS, integer_range
from haven.engine.json_grammar.regex import pattern_gbnf, raw_class
from haven.errors import GrammarError

_RAW = raw_class()
PRIMITIVES = (
    r"""ws ::= | " " | "\n" [ \t]{0,20}
json-hex4 ::= [0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}
"""
    f"""json-char ::= {_RAW} | "\\\\" (["\\\\/bfnrt] | "u" json-hex4)
key-char ::= {_RAW}
"""
    r"""json-string ::= "\"" json-char* "\""
json-int ::= "-"? ("0" | [1-9] [0-9]{0,15})
json-number ::= json-int ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?
json-boolean ::= "true" | "false"
json-null ::= "null"
json-value ::= json-object | json-array | json-string | json-number | json-boolean | json-null
json-member ::= json-string ":" ws json-value
json-object ::= "{" ws (json-member ("," ws json-member)* ws)? "}"
json-array ::= "[" ws (json-value ("," ws json-value)* ws)? "]"
"""
)

ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "$anchor",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentEncoding",
        "contentMediaType",
        "discriminator",
        "$defs",
        "definitions",
    }
)
OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties"})
ARRAY_KEYWORDS = frozenset({"items", "prefixItems", "additionalItems", "minItems", "maxItems"})
STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern", "format"})
NUMBER_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
SUPPORTED = (
    OBJECT_KEYWORDS
    | ARRAY_KEYWORDS
    | STRING_KEYWORDS
    | NUMBER_KEYWORDS
    | {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "nullable"}
)
# Keywords that constrain nothing with these values: accepted.
_NO_OP = {"uniqueItems": False, "minProperties": 0}
TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
_MAX_REF_HOPS = 64


def _is_annotation(key: str) -> bool:
    return key in ANNOTATIONS or key.startswith("x-")


def schema_depth_ok(schema: Any, limits: GrammarLimits, *, param: str) -> None:
    """Refuse a schema document nested deeper than ``max_schema_depth`` or with more than
    ``max_schema_nodes`` values (iterative: no recursion, linear time)."""
    stack: list[tuple[Any, int]] = [(schema, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_schema_nodes:
            raise limit_error(
                "The JSON schema's size",
                f"more than {limits.max_schema_nodes} values",
                "max_schema_nodes",
                limits.max_schema_nodes,
                param=param,
            )
        if depth > limits.max_schema_depth:
            raise limit_error(
                "The JSON schema's nesting depth",
                f"more than {limits.max_schema_depth}",
                "max_schema_depth",
                limits.max_schema_depth,
                param=param,
            )
        if isinstance(node, Mapping):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list | tuple):
            stack.extend((v, depth + 1) for v in node)


def check_schema(schema: Any, *, limits: GrammarLimits = DEFAULT_LIMITS, param: str = "json_schema") -> None:
    """Depth limit, then the JSON-Schema meta-schema: GrammarError with a readable location."""
    if not isinstance(schema, Mapping | bool):
        raise GrammarError(f"A JSON schema must be an object, not {type(schema).__name__}.", param=param)
    schema_depth_ok(schema, limits, param=param)
    if isinstance(schema, bool):
        return
    plain = dict(schema)
    try:
        jsonschema.validators.validator_for(plain).check_schema(plain)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise GrammarError(f"Invalid JSON schema at {where}: {exc.message}.", param=param) from exc
    except (OverflowError, ValueError, re.error) as exc:  # a ``pattern`` Python's re cannot compile
        raise GrammarError(f"Invalid JSON schema: {exc}.", param=param) from None
    except RecursionError:  # unreachable below max_schema_depth; never a 500
        raise GrammarError("The JSON schema is nested too deeply to check.", param=param) from None


def compile_schema(
    schema: Mapping[str, Any] | bool, *, limits: GrammarLimits = DEFAULT_LIMITS, param: str = "json_schema"
) -> str:
    """GBNF text whose ``root`` accepts exactly (a well-behaved subset of) the JSON valid against ``schema``."""
    check_schema(schema, limits=limits, param=param)
    compiler = _Compiler(schema, limits, param)
    root = compiler.visit(schema, "#", frozenset())
    return PRIMITIVES + compiler.rules.text(root)


def _types_of(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if declared is not None:
        types = [declared] if isinstance(declared, str) else list(declared)
    else:
        keys = set(schema)
        types = [
            t
            for t, kws in (
                ("object", OBJECT_KEYWORDS),
                ("array", ARRAY_KEYWORDS),
                ("string", STRING_KEYWORDS),
                ("number", NUMBER_KEYWORDS),
            )
            if keys & kws
        ] or list(TYPES)
    if schema.get("nullable") is True and "null" not in types:
        types.append("null")
    if "number" in types and "integer" in types:
        types.remove("integer")
    return types


class _Compiler:
    def __init__(self, root: Mapping[str, Any] | bool, limits: GrammarLimits, param: str) -> None:
        self.root = root
        self.limits = limits
        self.param = param
        self.rules = RuleSet(limits, param=param)
        self.ref_names: dict[str, str] = {}
        self._validator: Any = None

    def error(self, message: str) -> GrammarError:
        return GrammarError(message, param=self.param)

    # --- dispatch ---------------------------------------------------------------------------
    def visit(self, schema: Any, path: str, unguarded: frozenset[str]) -> str:
        self.rules.tick()
        if schema is True:
            return "json-value"
        if schema is False:
            raise self.error(f"The schema 'false' at {path} matches nothing; it is not supported.")
        if not isinstance(schema, Mapping):
            raise self.error(f"The schema at {path} must be an object or a boolean.")
        self._check_keywords(schema, path)
        constraining = {k: v for k, v in schema.items() if not _is_annotation(k)}
        if "$ref" in constraining:
            ref = constraining.pop("$ref")
            if not constraining:
                return self._ref(ref, path, unguarded)
            target, hops = self._deref(ref, path)
            return self.visit(self._merge_all([target, constraining], path), path, unguarded | hops)
        if "allOf" in constraining:
            members = list(constraining.pop("allOf"))
            return self.visit(self._merge_all([constraining, *members], path), path, unguarded)
        for key in ("anyOf", "oneOf"):
            if key in constraining:
                branches = list(constraining.pop(key))
                if constraining:  # siblings apply to every branch
                    branches = [self._merge_all([constraining, b], f"{path}/{key}") for b in branches]
                return self._alternatives(
                    [self.visit(b, f"{path}/{key}/{i}", unguarded) for i, b in enumerate(branches)], path
                )
        if "const" in constraining or "enum" in constraining:
            return self._enum(constraining, path)
        if not constraining:
            return "json-value"
        alts = [self._typed(t, constraining, path, unguarded) for t in _types_of(constraining)]
        return self._alternatives(alts, path)

    def _check_keywords(self, schema: Mapping[str, Any], path: str) -> None:
        for key, value in schema.items():
            if key in SUPPORTED or _is_annotation(key):
                continue
            if key in _NO_OP and value == _NO_OP[key]:
                continue
            raise self.error(f"JSON schema keyword '{key}' at {path} is not supported for constrained output.")

    def _check_alternatives(self, what: str, count: int) -> None:
        if count > self.limits.max_alternatives:
            raise limit_error(what, count, "max_alternatives", self.limits.max_alternatives, param=self.param)

    def _alternatives(self, alts: Sequence[str], path: str) -> str:
        unique = list(dict.fromkeys(a for a in alts))
        self._check_alternatives(f"The number of alternatives at {path}", len(unique))
        if len(unique) == 1:
            return unique[0]
        return self.rules.add("alt", " | ".join(unique))

    # --- $ref -------------------------------------------------------------------------------
    def _pointer(self, ref: Any, path: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise self.error(f"Only local '$ref's (starting with '#') are supported, got {ref!r} at {path}.")
        if ref != "#" and not ref.startswith("#/"):
            raise self.error(f"'$ref' {ref!r} at {path}: only JSON-pointer refs ('#/…') are supported, not anchors.")
        node: Any = self.root
        for raw in ref[2:].split("/") if ref != "#" else ():
            part = raw.replace("%25", "%").replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise self.error(f"'$ref' {ref!r} at {path} points to nothing in this schema.")
        return node

    def _deref(self, ref: str, path: str) -> tuple[Any, frozenset[str]]:
        """The schema ``ref`` names, following ``$ref``-only chains (bounded); the refs passed."""
        seen = [ref]
        node = self._pointer(ref, path)
        while isinstance(node, Mapping) and set(node) - ANNOTATIONS == {"$ref"}:
            nxt = node["$ref"]
            if nxt in seen or len(seen) > _MAX_REF_HOPS:
                raise self.error(f"'$ref' {ref!r} at {path} is a cycle of references to references.")
            seen.append(nxt)
            node = self._pointer(nxt, path)
        return node, frozenset(seen)

    def _ref(self, ref: Any, path: str, unguarded: frozenset[str]) -> str:
        if ref in unguarded:
            raise self.error(
                f"'$ref' {ref!r} at {path} recurses without consuming any output (left recursion); "
                "put the recursion inside an object or array."
            )
        known = self.ref_names.get(ref)
        if known is not None:
            return known
        target = self._pointer(ref, path)
        name = self.rules.reserve("ref-" + ref.rsplit("/", 1)[-1])
        self.ref_names[ref] = name
        self.rules.define(name, self.visit(target, ref, unguarded | {ref}))
        return name

    # --- allOf ------------------------------------------------------------------------------
    def _merge_all(self, members: Sequence[Any], path: str) -> Any:
        """One schema equivalent to all of ``members`` (anyOf/oneOf inside are distributed)."""
        flat: list[Mapping[str, Any]] = []
        queue = list(members)
        hops = 0
        while queue:
            m = queue.pop(0)
            hops += 1
            if hops > self.limits.max_alternatives:
                raise self.error(f"allOf at {path} is too large to merge.")
            if m is True:
                continue
            if m is False or not isinstance(m, Mapping):
                raise self.error(f"allOf at {path} contains a schema that matches nothing.")
            self._check_keywords(m, path)
            m = {k: v for k, v in m.items() if not _is_annotation(k)}
            if "$ref" in m:
                target, _ = self._deref(m.pop("$ref"), path)
                queue[:0] = [target, m]
                continue
            if "allOf" in m:
                queue[:0] = [*m.pop("allOf"), m]
                continue
            flat.append(m)
        branches: list[dict[str, Any]] = [{}]
        for m in flat:
            m = dict(m)
            options: list[dict[str, Any]] = [{}]
            for key in ("anyOf", "oneOf"):
                if key in m:
                    options = [
                        self._merge2(o, b if isinstance(b, Mapping) else {}, path)
                        for o in options
                        for b in m.pop(key)
                        if b is not False
                    ]
            branches = [self._merge2(self._merge2(b, m, path), o, path) for b in branches for o in options]
            self._check_alternatives(f"The branches of allOf at {path}", len(branches))
        return branches[0] if len(branches) == 1 else {"anyOf": branches}

    def _merge2(self, a: Mapping[str, Any], b: Mapping[str, Any], path: str) -> dict[str, Any]:
        out = dict(a)
        for key, vb in b.items():
            if _is_annotation(key):
                continue
            if key not in out:
                out[key] = vb
                continue
            va = out[key]
            if key == "type":
                ta = {va} if isinstance(va, str) else set(va)
                tb = {vb} if isinstance(vb, str) else set(vb)
                both = ta & tb
                if "number" in ta and "integer" in tb or "integer" in ta and "number" in tb:
                    both.add("integer")
                if not both:
                    raise self.error(
                        f"allOf at {path}: the types {sorted(ta)} and {sorted(tb)} have nothing in common."
                    )
                out[key] = sorted(both)
            elif key == "properties":
                merged = dict(va)
                for name, sub in vb.items():
                    merged[name] = {"allOf": [merged[name], sub]} if name in merged else sub
                out[key] = merged
            elif key == "required":
                out[key] = list(dict.fromkeys([*va, *vb]))
            elif key == "enum":
                out[key] = [v for v in va if v in vb]
            elif key in ("minLength", "minItems", "minimum", "exclusiveMinimum"):
                out[key] = max(va, vb)
            elif key in ("maxLength", "maxItems", "maximum", "exclusiveMaximum"):
                out[key] = min(va, vb)
            elif key in ("items", "additionalProperties", "additionalItems"):
                if va is False or vb is False:
                    out[key] = False
                elif va is True or vb is True:
                    out[key] = vb if va is True else va
                else:
                    out[key] = {"allOf": [va, vb]}
            elif va != vb:
                raise self.error(f"allOf at {path}: cannot merge two different values of '{key}'.")
        self._apply_closed_objects(out, a, path)
        self._apply_closed_objects(out, b, path)
        return out

    def _apply_closed_objects(self, out: dict[str, Any], member: Mapping[str, Any], path: str) -> None:
        """A member with ``additionalProperties`` false (or a schema) constrains the others' properties."""
        extra = member.get("additionalProperties")
        if extra is None or extra is True or "properties" not in out:
            return
        own = set(member.get("properties") or {})
        props = dict(out["properties"])
        for name in list(props):
            if name in own:
                continue
            if extra is False:
                if name in (out.get("required") or ()):
                    raise self.error(f"allOf at {path}: property {name!r} is required but forbidden.")
                del props[name]
            else:
                props[name] = {"allOf": [props[name], extra]}
        out["properties"] = props

    # --- values -----------------------------------------------------------------------------
    def _enum(self, schema: Mapping[str, Any], path: str) -> str:
        values = [schema["const"]] if "const" in schema else list(schema.get("enum") or ())
        if "const" in schema and "enum" in schema:
            values = [v for v in values if v in schema["enum"]]
        rest = {k: v for k, v in schema.items() if k not in ("const", "enum")}
        if rest:
            values = [v for v in values if self._valid(v, rest)]
        if not values:
            raise self.error(f"The enum/const at {path} has no value that satisfies the rest of the schema.")
        literals = [literal(json.dumps(v, ensure_ascii=False)) for v in values]
        return self._alternatives(literals, path)

    def _valid(self, value: Any, schema: Mapping[str, Any]) -> bool:
        if self._validator is None:
            root = self.root if isinstance(self.root, Mapping) else {}
            self._validator = jsonschema.validators.validator_for(dict(root))(dict(root))
        try:
            return bool(self._validator.evolve(schema=dict(schema)).is_valid(value))
        except Exception:  # a value the validator cannot judge (an unresolvable ref…) is kept
            return True

    def _typed(self, kind: str, schema: Mapping[str, Any], path: str, unguarded: frozenset[str]) -> str:
        if kind == "string":
            return self._string(schema, path)
        if kind == "integer":
            return self._integer(schema, path)
        if kind == "number":
            return self._number(schema, path)
        if kind == "boolean":
            return "json-boolean"
        if kind == "null":
            return "json-null"
        if kind == "object":
            return self._object(schema, path)
        if kind == "array":
            return self._array(schema, path)
        raise self.error(f"Unknown type {kind!r} at {path}.")

    def _count(self, schema: Mapping[str, Any], key: str) -> int | None:
        value = schema.get(key)
        if value is None:
            return None
        if value > self.limits.max_length:
            raise limit_error(key, value, "max_length", self.limits.max_length, param=self.param)
        return int(value)

    def _string(self, schema: Mapping[str, Any], path: str) -> str:
        lo, hi = self._count(schema, "minLength") or 0, self._count(schema, "maxLength")
        pattern, fmt = schema.get("pattern"), schema.get("format")
        if (pattern is not None or fmt is not None) and (lo or hi is not None):
            raise self.error(f"minLength/maxLength at {path} cannot be combined with pattern or format.")
        if pattern is not None and fmt is not None:
            raise self.error(f"pattern and format at {path} cannot be combined.")
        if pattern is not None:
            body = pattern_gbnf(pattern, self.rules, param=self.param)
        elif fmt is not None:
            if fmt not in FORMATS:
                raise self.error(
                    f"String format {fmt!r} at {path} is not supported (supported: {', '.join(sorted(FORMATS))})."
                )
            body = self.rules.add(f"format-{fmt}", FORMATS[fmt])
        elif lo == 0 and hi is None:
            return "json-string"
        else:
            if hi is not None and hi < lo:
                raise self.error(f"maxLength {hi} at {path} is below minLength {lo}.")
            body = self.rules.repeat("json-char", lo, hi, what=f"the string length at {path}")
        return self.rules.add("string", f'"\\"" {body} "\\""')

    def _bounds(self, schema: Mapping[str, Any], path: str, *, integral: bool) -> tuple[int | None, int | None]:
        lo: int | None = None
        hi: int | None = None
        limit = 10 ** (MAX_DIGITS + 2)
        for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            value = schema.get(key)
            if value is None or isinstance(value, bool):
                continue
            if not math.isfinite(value) or abs(value) > limit:
                raise self.error(f"{key} {value!r} at {path} is out of the supported range (±1e{MAX_DIGITS + 2}).")
            exclusive = key.startswith("exclusive")
            if key.endswith("imum") and "inimum" in key:
                bound = math.floor(value) + 1 if exclusive else math.ceil(value)
                lo = bound if lo is None else max(lo, bound)
            else:
                bound = math.ceil(value) - 1 if exclusive else math.floor(value)
                hi = bound if hi is None else min(hi, bound)
        # draft-4 boolean exclusive bounds
        if schema.get("exclusiveMinimum") is True and lo is not None and schema.get("minimum") == lo:
            lo += 1
        if schema.get("exclusiveMaximum") is True and hi is not None and schema.get("maximum") == hi:
            hi -= 1
        if lo is not None and hi is not None and lo > hi:
            raise self.error(f"No {'integer' if integral else 'number'} at {path} satisfies its bounds.")
        return lo, hi

    def _integer(self, schema: Mapping[str, Any], path: str) -> str:
        lo, hi = self._bounds(schema, path, integral=True)
        if lo is None and hi is None:
            return "json-int"
        return self.rules.add("integer", " | ".join(integer_range(lo, hi)))

    def _number(self, schema: Mapping[str, Any], path: str) -> str:
        lo, hi = self._bounds(schema, path, integral=False)
        if lo is None and hi is None:
            return "json-number"
        frac = '("." [0-9]{1,15})?'
        alts: list[str] = []
        # v ≥ 0: integer part in [max(lo, 0), hi - 1] with any fraction, or exactly hi.
        if hi is None or hi >= 0:
            low = max(lo, 0) if lo is not None else 0
            top = None if hi is None else hi - 1
            if top is None or low <= top:
                alts += [f"({a}) {frac}" for a in integer_range(low, top)]
            if hi is not None and hi >= low:
                alts.append(f'"{hi}"')
        # v < 0: "-" magnitude, magnitude's integer part in [max(-hi, 0), -lo - 1] with any fraction, or exactly -lo.
        if lo is None or lo < 0:
            low = max(-hi, 0) if hi is not None else 0
            top = None if lo is None else -lo - 1
            if top is None or low <= top:
                alts += [f'"-" ({a}) {frac}' for a in integer_range(low, top)]
            if lo is not None and -lo >= max(low, 1):
                alts.append(f'"-{-lo}"')
        return self.rules.add("number", " | ".join(alts))

    def _object(self, schema: Mapping[str, Any], path: str) -> str:
        props: Mapping[str, Any] = schema.get("properties") or {}
        required = list(dict.fromkeys(schema.get("required") or ()))
        extra = schema.get("additionalProperties")
        if not props and not required and extra in (None, True):
            return "json-object"
        extra_value: str | None = None
        if extra is True or (extra is None and not props):
            extra_value = "json-value"
        elif isinstance(extra, Mapping):
            extra_value = self.visit(extra, f"{path}/additionalProperties", frozenset())
        names = list(props) + [r for r in required if r not in props]
        members: list[tuple[str, bool]] = []
        for name in names:
            sub = props.get(name, extra if isinstance(extra, Mapping) else True)
            where = f"{path}/properties/{json.dumps(name, ensure_ascii=False)}"
            if sub is False or (name not in props and extra is False):
                if name in required:
                    raise self.error(f"Property {name!r} at {path} is required but can never be valid.")
                continue
            value = self.visit(sub, where, frozenset())
            kv = self.rules.add(
                f"{path_hint(name)}-kv", f'{literal(json.dumps(name, ensure_ascii=False))} ":" ws {value}'
            )
            members.append((kv, name in required))
        tail = None
        if extra_value is not None:
            key = self._key_not_in(names)
            tail = self.rules.add("extra-kv", f'{key} ":" ws {extra_value}')
        body = self._members(members, tail)
        if not body:
            return self.rules.add("object", '"{" ws "}"')
        if any(required for _, required in members):
            return self.rules.add("object", f'"{{" ws {body} ws "}}"')
        return self.rules.add("object", f'"{{" ws ({body} ws)? "}}"')

    def _members(self, items: Sequence[tuple[str, bool]], tail: str | None) -> str:
        """Comma-separated members: every required item, optional ones or not, in order, then any tail."""
        after = self.rules.add("more-extra", f'("," ws {tail})*') if tail else ""
        first = f"({tail} {after})?" if tail else ""
        for kv, required in reversed(items):
            if required:
                after_new = f'"," ws {kv} {after}'.strip()
                first = f"{kv} {after}".strip()
            else:
                after_new = f'("," ws {kv})? {after}'.strip()
                first = f"{kv} {after} | {first}".strip() if first else f"({kv} {after})?"
            after = self.rules.add("more", after_new)
            first = self.rules.add("members", first) if "|" in first or " " in first else first
        return first

    def _key_not_in(self, names: Sequence[str]) -> str:
        """A JSON string key (no escapes) that is none of ``names``: a trie of the names, each node
        allowing the string to end (unless a name ends there) or to leave the trie."""
        plain = [n for n in names if n and all(c not in '"\\' and ord(c) >= 0x20 and ord(c) != 0x7F for c in n)]
        if not plain:
            if "" in names:
                return self.rules.add("key", '"\\"" key-char+ "\\""')
            return self.rules.add("key", '"\\"" key-char* "\\""')
        trie: dict[str, Any] = {}
        for n in plain:
            node = trie
            for c in n:
                node = node.setdefault(c, {})
            node[""] = {}
        ends_empty = "" in names

        def build(node: Mapping[str, Any], depth: int) -> str:
            # iterative enough: depth is bounded by the longest name, names are bounded by the schema size
            self.rules.tick()
            alts = []
            if "" not in node and not (depth == 0 and ends_empty):
                alts.append('"\\""')
            children = [c for c in node if c]
            for c in children:
                alts.append(f"{literal(c)} {build(node[c], depth + 1)}")
            alts.append(f'{raw_class("".join(children))} key-char* "\\""')
            return self.rules.add("key-rest", " | ".join(alts))

        return f'"\\"" {build(trie, 0)}'

    def _array(self, schema: Mapping[str, Any], path: str) -> str:
        items = schema.get("items")
        prefix: list[Any] = list(schema.get("prefixItems") or ())
        rest: Any = items
        if isinstance(items, list):  # draft 4-2019: items as a tuple
            prefix, rest = items, schema.get("additionalItems")
        lo = self._count(schema, "minItems") or 0
        hi = self._count(schema, "maxItems")
        if hi is not None and hi < lo:
            raise self.error(f"maxItems {hi} at {path} is below minItems {lo}.")
        if hi is not None:
            prefix = prefix[:hi]
        if rest is None:
            rest = bool(not prefix or lo > len(prefix))
        elements = [self.visit(s, f"{path}/prefixItems/{i}", frozenset()) for i, s in enumerate(prefix)]
        tail: str | None = None
        tail_lo, tail_hi = max(0, lo - len(prefix)), None if hi is None else hi - len(prefix)
        if rest is not False and tail_hi != 0:
            tail = self.visit(rest, f"{path}/items", frozenset())
        elif lo > len(prefix):
            raise self.error(f"minItems {lo} at {path} needs more items than prefixItems allows.")
        required = min(lo, len(prefix))
        # after[i]: elements i.. when one is already written; truncation allowed from `required` on.
        after = ""
        if tail is not None:
            sep = self.rules.add("more-item", f'"," ws {tail}')
            after = self.rules.repeat(sep, tail_lo, tail_hi, what=f"the item count at {path}")
        first = ""
        if tail is not None and not prefix:
            more = self.rules.repeat(
                self.rules.add("more-item", f'"," ws {tail}'),
                max(0, tail_lo - 1),
                None if tail_hi is None else tail_hi - 1,
                what=f"the item count at {path}",
            )
            first = f"{tail} {more}".strip()  # optional as a whole when minItems is 0 (below)
        for i in range(len(prefix) - 1, 0, -1):
            seq = f'"," ws {elements[i]} {after}'.strip()
            after = self.rules.add("more-items", seq if i < required else f"({seq})?")
        if prefix:
            first = f"{elements[0]} {after}".strip()
            first = self.rules.add("items", first)
        elif first:
            first = self.rules.add("items", first)
        if not first:
            return self.rules.add("array", '"[" ws "]"')
        if lo > 0:
            return self.rules.add("array", f'"[" ws {first} ws "]"')
        return self.rules.add("array", f'"[" ws ({first} ws)? "]"')


def path_hint(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)[:24] or "p"
