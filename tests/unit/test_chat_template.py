"""Chat templates: sandboxed rendering with HF globals, the fallback, the safety scan, reasoning detection."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError

from haven.engine.chat_template import (
    FALLBACK_TEMPLATE,
    ChatTemplate,
    ChatTemplateError,
    TemplateSecurityError,
    prompt_opens_reasoning,
    scan_template,
)
from haven.errors import InvalidRequestError
from haven.models.factory.templates import chat_template

SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ ''['__class__'] }}",
    "{{ (''|attr('__class__')) }}",
    "{{ messages.__class__ }}",
]
USER = [{"role": "user", "content": "Hello"}]


def test_renders_qwen_template_with_tools_and_generation_prompt() -> None:
    template = ChatTemplate(chat_template("qwen2.5"))
    tools = [{"type": "function", "function": {"name": "f", "description": "é", "parameters": {}}}]
    text = template.render(USER, tools=tools)
    assert text.endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    assert '{"type": "function", "function": {"name": "f", "description": "é", "parameters": {}}}' in text
    assert not template.render(USER, add_generation_prompt=False).endswith("<|im_start|>assistant\n")


def test_hf_globals_bos_eos_strftime_and_tojson_semantics() -> None:
    source = (
        "{{ bos_token }}|{{ eos_token }}|{{ strftime_now('%Y') | length }}|{{ {'k': '<ü>'} | tojson }}|"
        "{{ [1, 2] | tojson(indent=2) }}|{{ enable_thinking }}|{{ custom }}|"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{% do (1 + 1) %}{{ m.role }}"
        "{% endfor %}"
    )
    text = ChatTemplate(source, bos_token="<s>", eos_token="</s>").render(USER * 2, enable_thinking=False, custom=7)
    assert text == '<s>|</s>|4|{"k": "<ü>"}|[\n  1,\n  2\n]|False|7|user'


def test_immutable_sandbox_refuses_mutating_passed_objects() -> None:
    with pytest.raises(TemplateSecurityError):
        ChatTemplate("{% do messages.append({'role': 'x'}) %}").render(USER)


def test_raise_exception_is_a_400_with_the_templates_message() -> None:
    template = ChatTemplate("{{ raise_exception('System role not supported') }}")
    with pytest.raises(ChatTemplateError) as caught:
        template.render(USER)
    assert isinstance(caught.value, InvalidRequestError) and caught.value.status_code == 400
    assert caught.value.message == "the chat template refused the conversation: System role not supported"


def test_fallback_is_chatml_and_used_when_the_model_has_none() -> None:
    template = ChatTemplate(None)
    assert template.is_fallback and template.source == FALLBACK_TEMPLATE
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}, {"type": "text", "text": "b"}]
    text = template.render([{"role": "system", "content": "S"}, {"role": "user", "content": parts}])
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nab<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("name", ["qwen2.5", "deepseek-r1", "llama3"])
def test_real_family_templates_pass_the_scan(name: str) -> None:
    assert scan_template(chat_template(name), "<s>", "</s>").safe


@pytest.mark.parametrize("payload", SSTI)
def test_ssti_payloads_fail_the_scan(payload: str) -> None:
    scan = scan_template(payload)
    assert not scan.safe
    assert scan.reason is not None and "__" in scan.reason


@pytest.mark.parametrize("payload", [SSTI[0], SSTI[1], "{{ messages.__class__.__name__ }}"])
def test_ssti_payloads_raise_security_error_when_rendered_anyway(payload: str) -> None:
    with pytest.raises(TemplateSecurityError) as caught:
        ChatTemplate(payload).render(USER)
    assert isinstance(caught.value.__cause__, SecurityError)
    assert "unsafe" in caught.value.message


def test_attr_filter_payload_never_reaches_the_class() -> None:
    # |attr goes through the sandbox too: the dunder comes back undefined, never the real str class.
    text = ChatTemplate("{{ (''|attr('__class__')) is defined }}").render(USER)
    assert text == "False"
    # Item access to a dunder is an undefined value too: renders as nothing, leaks nothing.
    assert ChatTemplate("[{{ ''['__class__'] }}]").render(USER) == "[]"


def test_broken_templates_are_flagged() -> None:
    assert scan_template("{% for %}").reason is not None and "does not parse" in str(scan_template("{% for %}").reason)
    refusing = scan_template("{{ raise_exception('never') }}")
    assert not refusing.safe and "never" in str(refusing.reason)
    crashing = scan_template("{{ messages[0]['content'] + 1 }}")
    assert not crashing.safe and "rendering a single user message" in str(crashing.reason)


def test_templates_may_refuse_optional_shapes() -> None:
    # Like Gemma's: no system role. Refusing system messages or tools is not unsafe.
    source = (
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "{{ m.role }}:{{ m.content }}\n{% endfor %}"
    )
    assert scan_template(source).safe


def test_prompt_opens_reasoning() -> None:
    r1 = ChatTemplate(chat_template("deepseek-r1")).render(USER)
    assert r1.endswith("<｜Assistant｜><think>\n") and prompt_opens_reasoning(r1)
    assert prompt_opens_reasoning("...<think>")
    assert not prompt_opens_reasoning(ChatTemplate(chat_template("qwen2.5")).render(USER))
    assert not prompt_opens_reasoning("<think>x</think>")


def test_runaway_templates_are_stopped() -> None:
    # range() is capped at 100,000 by the sandbox, but nesting multiplies: 10^10 lines would never finish.
    bomb = "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endfor %}"
    scan = scan_template(bomb)
    assert not scan.safe and "ran away" in str(scan.reason)
    with pytest.raises(ChatTemplateError) as caught:
        ChatTemplate(bomb).render(USER)
    assert "exceeds 33,554,432 characters" in caught.value.message


def test_hf_generation_blocks_render_their_content() -> None:
    source = "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    assert ChatTemplate(source).render(USER) == "[Hello]"
    assert scan_template(source).safe


# --- bounds: hostile templates (issue 11) -------------------------------------------------------------

HOSTILE = {
    "silent nested loops": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% set x = a * b %}{% endfor %}{% endfor %}",
        "took longer than",
    ),
    "a printing loop": ("{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}", "took"),
    "lipsum(10**7)": ("{% set x = lipsum(10**7) %}ok", "lipsum() asked for too much text"),
    "string repetition": ("{% set x = 'a' * 10**10 %}ok", "a repeated sequence exceeds"),
    "list repetition": ("{% set x = [1] * 10**9 %}", "a repeated sequence exceeds"),
    "a huge power": ("{{ 10 ** (10 ** 10) }}", "the exponent 10000000000 is too large"),
    "string doubling": (
        "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "the chat template ran away",  # its memory or its time, whichever runs out first
    ),
    "ljust": ("{{ 'a'.ljust(10**10) }}", "a padded string exceeds"),
    "center filter": ("{{ 'a'|center(10**10) }}", "a filter's width exceeds"),
    "format width": ("{{ '{:>9999999999}'.format(1) }}", "a format width is too large"),
    "percent width": ("{{ '%9999999999d' % 1 }}", "a %-format width is too large"),
    "format filter width": ("{{ '%9999999999d'|format(1) }}", "a %-format width is too large"),
    "recursion": ("{% macro f(n) %}{{ f(n+1) }}{% endmacro %}{{ f(0) }}", "recursed too deeply"),
    "overflow": ("{{ [1.5] | map('int') | list }}{{ (1e308 * 10) | int }}", "OverflowError"),
}


@pytest.fixture
def short_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    import haven.engine.chat_template as module

    monkeypatch.setattr(module, "SCAN_SECONDS", 0.3)
    monkeypatch.setattr(module, "RENDER_SECONDS", 0.3)
    monkeypatch.setattr(module, "MAX_RENDER_MEMORY", 64 << 20)


@pytest.mark.usefixtures("short_budgets")
@pytest.mark.parametrize("source,reason", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_templates_fail_the_scan_and_a_forced_render_is_a_400(source: str, reason: str) -> None:
    scan = scan_template(source)
    assert not scan.safe and scan.reason is not None and reason in scan.reason
    with pytest.raises(ChatTemplateError) as caught:
        ChatTemplate(source).render(USER)
    assert reason in caught.value.message and caught.value.status_code == 400


def test_a_template_that_only_breaks_on_adversarial_inputs_fails_the_scan() -> None:
    # Fine on one short message; quadratic blow-up on a long conversation.
    source = "{% for m in messages %}{% for n in messages %}{{ m.content * 400 }}{% endfor %}{% endfor %}"
    assert ChatTemplate(source).render(USER)
    scan = scan_template(source)
    assert not scan.safe and "a long conversation" in (scan.reason or "")
