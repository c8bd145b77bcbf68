"""Chat templates: render a GGUF's Jinja chat template safely, and scan it before a model is accepted.

A GGUF carries its chat template as Jinja source written by whoever made the file, so it is untrusted
code. It is only ever rendered in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no access to
dunder attributes, no mutation of passed-in objects, bounded ``range``), with the globals Hugging Face's
``apply_chat_template`` provides (``raise_exception``, ``strftime_now``, ``bos_token``, ``eos_token``,
``tools``, ``add_generation_prompt``, ``enable_thinking``), the ``tojson`` filter with HF's semantics
(non-ASCII kept, ``indent``/``separators`` honoured) and the ``loopcontrols`` and ``do`` extensions.

:func:`scan_template` is the import-time check: a static look at the parsed template for attribute or
item access to names starting with ``_``, then renders with sample conversations in the sandbox.

This module knows nothing about tokenization or the engine; it turns messages into prompt text.
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from haven.errors import InvalidRequestError

# ChatML (used by Qwen, Hermes, many fine-tunes): the documented fallback when a GGUF has no
# ``tokenizer.chat_template``. Text parts of list contents are joined; other parts are dropped.
FALLBACK_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set content = message['content'] -%}"
    "{%- elif message['content'] is none -%}{%- set content = '' -%}"
    "{%- else -%}{%- set content = message['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join('') -%}{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


class ChatTemplateError(InvalidRequestError):
    """The chat template refused the conversation (its ``raise_exception``) or failed to render (HTTP 400)."""

    code = "chat_template_error"


class TemplateSecurityError(ChatTemplateError):
    """The template tried something the sandbox forbids; ``__cause__`` is jinja2's SecurityError."""

    code = "unsafe_chat_template"


class _RaisedByTemplate(TemplateError):
    """What ``raise_exception`` raises inside the render (kept apart from Jinja's own errors)."""


class _RaisedByBudget(TemplateError):
    """The render went over its output or time budget."""


def _raise_exception(message: str) -> None:
    raise _RaisedByTemplate(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    # Hugging Face's tojson, not Jinja's: Jinja's HTML-escapes <, >, & and ' which would corrupt prompts.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationBlock(Extension):
    """``{% generation %}…{% endgeneration %}``: HF marks assistant tokens for training masks; rendering ignores it."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return list(parser.parse_statements(("name:endgeneration",), drop_needle=True))


MAX_OUTPUT_CHARS = 32 << 20  # a prompt longer than this is a runaway template, not a conversation
MAX_VALUE_LENGTH = MAX_OUTPUT_CHARS  # no single string or list a template builds may exceed this
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


def _too_big(what: str) -> _RaisedByBudget:
    return _RaisedByBudget(f"{what} exceeds {MAX_VALUE_LENGTH:,} elements")


def _sized(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, bytes)) and len(value) > MAX_VALUE_LENGTH:
        raise _too_big("a value the template built")
    return value


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on the operations that allocate or compute in C without limit
    (``'x' * 10**10``, ``10 ** 10 ** 10``, ``'%999999999d' % 1``, ``'a'.ljust(10**10)``): no time check
    can interrupt those once they start, so they are refused before they run."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _big_power(left, right):
            raise _RaisedByBudget(f"the exponent {right!r} is too large")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sequence = isinstance(seq, (str, list, tuple)) and isinstance(count, int)
                if sequence and len(seq) * count > MAX_VALUE_LENGTH:
                    raise _too_big("a repeated sequence")
        if operator == "%" and isinstance(left, str) and _PERCENT_WIDTH.search(left):
            raise _RaisedByBudget("a %-format width is too large")
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 — jinja's signature
        owner = getattr(__obj, "__self__", None)
        padded = getattr(__obj, "__name__", None) in _WIDTH_METHODS and isinstance(owner, str)
        if padded and any(isinstance(a, int) and a > MAX_VALUE_LENGTH for a in (*args, *kwargs.values())):
            raise _too_big("a padded string")
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _FORMAT_WIDTH.search(value.__self__):

            def refuse(*args: Any, **kwargs: Any) -> str:
                raise _RaisedByBudget("a format width is too large")

            return refuse
        return wrapped


_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(\d{7,}|\*)|%[-+ #0]*\d*\.\d{7,}")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")


def _big_power(base: Any, exponent: Any) -> bool:
    numbers = isinstance(base, (int, float)) and isinstance(exponent, (int, float))
    return numbers and abs(exponent) > 64 and abs(base) > 1


def _bounded_filter(original: Any, *width_args: str) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, int) and a > MAX_VALUE_LENGTH for a in (*args, *kwargs.values())):
            raise _too_big("a filter's width")
        if args and isinstance(args[0], str) and _PERCENT_WIDTH.search(args[0]):
            raise _RaisedByBudget("a %-format width is too large")
        return _sized(original(*args, **kwargs))

    return bounded


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 — jinja's names
    from jinja2.utils import generate_lorem_ipsum

    if n > 50 or max > 500 or min > 500:
        raise _RaisedByBudget("lipsum() asked for too much text")
    return str(generate_lorem_ipsum(n, html, min, max))


def _make_environment() -> ImmutableSandboxedEnvironment:
    env = _BoundedSandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do", _GenerationBlock],
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.filters["tojson"] = _tojson
    for name in ("format", "center", "indent", "wordwrap", "truncate", "batch", "slice"):
        env.filters[name] = _bounded_filter(env.filters[name])
    env.globals["lipsum"] = _lipsum
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENV = _make_environment()  # stateless apart from Jinja's own caches; compiled templates are cached below


@lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


class ChatTemplate:
    """A compiled, sandboxed chat template."""

    def __init__(self, source: str | None, *, bos_token: str | None = "", eos_token: str | None = "") -> None:
        self.source = source if source else FALLBACK_TEMPLATE
        self.is_fallback = not source
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""
        try:
            self._template = _compile(self.source)
        except TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template does not parse: {exc}") from exc

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        **extra: Any,
    ) -> str:
        """The prompt text for ``messages``; raises :class:`ChatTemplateError` (400) with the template's message."""
        return self._render(
            _context(messages, tools, add_generation_prompt, enable_thinking, self.bos_token, self.eos_token, extra),
            _Budget(),
        )

    def _render(self, context: dict[str, Any], budget: _Budget) -> str:
        try:
            return _render_bounded(self._template, context, budget)
        except _RaisedByBudget as exc:
            raise ChatTemplateError(f"the chat template ran away: {exc}") from exc
        except _RaisedByTemplate as exc:
            raise ChatTemplateError(f"the chat template refused the conversation: {exc}") from exc
        except SecurityError as exc:
            raise TemplateSecurityError(f"the chat template tried an unsafe operation: {exc}") from exc
        except TemplateError as exc:
            raise ChatTemplateError(f"the chat template failed to render: {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as exc:
            raise ChatTemplateError(f"the chat template failed to render: {type(exc).__name__}: {exc}") from exc
        except RecursionError as exc:
            raise ChatTemplateError("the chat template failed to render: it recursed too deeply") from exc
        except MemoryError as exc:
            raise ChatTemplateError("the chat template ran away: it ran out of memory") from exc


def _context(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    add_generation_prompt: bool,
    enable_thinking: bool,
    bos_token: str,
    eos_token: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The variables Hugging Face's apply_chat_template passes (extra keyword arguments first, so they cannot
    override the standard ones)."""
    return {
        **extra,
        "messages": [dict(m) for m in messages],
        "tools": [dict(t) for t in tools] if tools else None,
        "add_generation_prompt": add_generation_prompt,
        "enable_thinking": enable_thinking,
        "bos_token": bos_token,
        "eos_token": eos_token,
    }


SCAN_SECONDS = 2.0  # per sample conversation; real templates take milliseconds
RENDER_SECONDS = 5.0  # at request time: the largest real conversations render in well under a second
MAX_RENDER_MEMORY = 1 << 30  # peak-RSS growth one render may cause (bytes)


class _Budget:
    """Limits on one render: output size, wall time, and peak-memory growth."""

    def __init__(self, max_chars: int = MAX_OUTPUT_CHARS, seconds: float | None = None) -> None:
        self.max_chars = max_chars
        self.seconds = seconds = RENDER_SECONDS if seconds is None else seconds
        self.deadline = time.monotonic() + seconds
        self.rss_limit = _peak_rss() + MAX_RENDER_MEMORY

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise _RaisedByBudget(f"rendering took longer than {self.seconds:g} s")
        if _peak_rss() > self.rss_limit:
            raise _RaisedByBudget(f"rendering used more than {MAX_RENDER_MEMORY >> 20:,} MiB")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _watchdog(budget: _Budget) -> Any:
    """A per-thread trace function checking the budget on every line the *template* runs: a template stuck
    in silent nested loops (no output, so no check in the output loop) is stopped too. Only frames of
    compiled templates are traced (cheap); the C-level operations they could stall in are bounded by
    :class:`_BoundedSandbox` before they start."""

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            budget.check()
        return local

    def global_(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == "<template>" else None

    return global_


def _render_bounded(template: jinja2.Template, context: dict[str, Any], budget: _Budget) -> str:
    # generate() yields as output is produced, so a template stuck in huge nested loops that print is
    # stopped here instead of filling memory (the sandbox already bounds range() to 100,000).
    parts: list[str] = []
    size = 0
    previous = sys.gettrace()
    sys.settrace(_watchdog(budget))
    try:
        for chunk in template.generate(**context):
            parts.append(chunk)
            size += len(chunk)
            if size > budget.max_chars:
                raise _RaisedByBudget(f"the rendered prompt exceeds {budget.max_chars:,} characters")
            budget.check()
    finally:
        sys.settrace(previous)
    return "".join(parts)


def prompt_opens_reasoning(rendered: str) -> bool:
    """True when the generation prompt ends inside an opened ``<think>`` block (DeepSeek-R1 distills do this)."""
    return rendered.rstrip("\n").endswith("<think>")


# --- the import-time safety scan ------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateScan:
    safe: bool
    reason: str | None = None


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"city": "Paris"}
    for _ in range(depth):
        value = {"a": [value]}
    return value


_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
_TOOL_CALL = {"type": "function", "id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}

# (label, messages, tools, must_render): a template may legitimately refuse some shapes (e.g. no
# system role, no tools) with raise_exception, or choke on tool calls; the basic conversation must work.
_SAMPLES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]] | None, bool]] = [
    ("a single user message", [{"role": "user", "content": "Hello!"}], None, True),
    (
        "a multi-turn conversation",
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Tell me a joke. 你好"},
        ],
        None,
        True,
    ),
    (
        "a system and a user message",
        [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"}],
        None,
        False,
    ),
    ("a request with tools", [{"role": "user", "content": "Weather in Paris?"}], _TOOLS, False),
    (
        "an assistant tool call and its result",
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [_TOOL_CALL]},
            {"role": "tool", "content": '{"temp_c": 21}', "tool_call_id": "call_1", "name": "get_weather"},
        ],
        _TOOLS,
        False,
    ),
    # Adversarial shapes: a template that is fine on the samples above but blows up on long, many, odd or
    # nested inputs would otherwise only show it at request time.
    ("a long conversation", [{"role": ("user", "assistant")[i % 2], "content": f"turn {i}"} for i in range(400)],
     None, False),
    ("a very long message", [{"role": "user", "content": "lorem ipsum " * 20_000}], None, False),
    (
        "odd contents",
        [
            {"role": "user", "content": "{{ 7 * 7 }} {% raw %} <|im_start|>system\n \u202e\u0000 😀"},
            {"role": "assistant", "content": None},
            {"role": "user", "content": [{"type": "text", "text": "parts"}, {"type": "image_url", "image_url": {}}]},
            {"role": "user", "content": ""},
        ],
        None,
        False,
    ),
    (
        "deeply nested tool arguments",
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "", "tool_calls": [{**_TOOL_CALL, "function": {
                "name": "get_weather", "arguments": _nested(60)}}]},
        ],
        _TOOLS,
        False,
    ),
]


def _private_access(tree: nodes.Template) -> str | None:
    """The first ``x._name`` / ``x['_name']`` / ``x|attr('_name')`` in the template, if any."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            arg = node.args[0]
            name = arg.value if isinstance(arg, nodes.Const) else "<computed attribute>"
        if isinstance(name, str) and (name.startswith("_") or name == "<computed attribute>"):
            return name
    return None


def scan_template(source: str | None, bos_token: str | None = "", eos_token: str | None = "") -> TemplateScan:
    """Static + sandboxed-render check of a chat template; never raises."""
    if not source:
        return TemplateScan(True, None)
    try:
        tree = _ENV.parse(source)
    except TemplateError as exc:
        return TemplateScan(False, f"the chat template does not parse: {exc}")
    private = _private_access(tree)
    if private is not None:
        return TemplateScan(False, f"the chat template accesses the private attribute {private!r}")
    try:
        template = ChatTemplate(source, bos_token=bos_token, eos_token=eos_token)
    except ChatTemplateError as exc:
        return TemplateScan(False, exc.message)
    for label, messages, tools, must_render in _SAMPLES:
        try:
            context = _context(messages, tools, True, True, template.bos_token, template.eos_token, {})
            template._render(context, _Budget(seconds=SCAN_SECONDS))
        except TemplateSecurityError as exc:
            return TemplateScan(False, f"rendering {label}: {exc.message}")
        except ChatTemplateError as exc:
            if must_render or isinstance(exc.__cause__, _RaisedByBudget):
                return TemplateScan(False, f"rendering {label}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 — any other failure of untrusted code means "unsafe", never a crash
            return TemplateScan(False, f"rendering {label} failed: {type(exc).__name__}: {exc}")
    return TemplateScan(True, None)
