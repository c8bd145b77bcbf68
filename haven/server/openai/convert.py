"""OpenAI JSON ↔ the chat contract: requests into :mod:`haven.chat.backend` types, results into OpenAI shapes.

Shared by chat completions, legacy completions and the Responses API, so each of them maps fields
one way only. Knows OpenAI's shapes and the chat contract; nothing about generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from haven.chat import backend as chat
from haven.chat.options import check_schema, sampling_from
from haven.errors import InvalidRequestError
from haven.server.openai.protocol import ChatCompletionRequest, ChatMessage, CompletionRequest

ReasoningField = Literal["reasoning_content", "reasoning", "both"]


def messages_of(messages: Sequence[ChatMessage]) -> tuple[chat.Message, ...]:
    out = []
    for m in messages:
        role: chat.Role = "system" if m.role == "developer" else m.role
        calls = tuple(chat.ToolCall(c.id, c.function.name, c.function.arguments or "{}") for c in m.tool_calls or ())
        reasoning = m.reasoning_content if m.reasoning_content is not None else m.reasoning
        out.append(
            chat.Message(
                role=role,
                content=m.text() or "",
                reasoning=reasoning or None,
                tool_calls=calls,
                tool_call_id=m.tool_call_id,
                name=m.name,
            )
        )
    return tuple(out)


def sampling_of(r: ChatCompletionRequest | CompletionRequest) -> chat.Sampling:
    return sampling_from(
        r,
        repeat_penalty=r.repeat_penalty if r.repeat_penalty is not None else r.repetition_penalty,
        logit_bias={int(k): v for k, v in (r.logit_bias or {}).items()},
        ignore_eos=bool(r.ignore_eos),
        cache_prompt=r.cache_prompt,
        speculative=r.speculative,
        speculative_draft_max=r.speculative_draft_max,
    )


def limits_of(r: ChatCompletionRequest | CompletionRequest, max_tokens: int | None) -> chat.Limits:
    return chat.Limits(
        max_tokens=max_tokens,
        min_tokens=r.min_tokens or 0,
        stop=r.stop_tuple(),
        stop_token_ids=tuple(r.stop_token_ids or ()),
        include_stop=bool(r.include_stop_str_in_output),
    )


def output_of(r: ChatCompletionRequest) -> chat.OutputFormat:
    if r.grammar is not None:
        if r.response_format is not None and r.response_format.type != "text":
            raise_conflict()
        return chat.Grammar(r.grammar)
    fmt = r.response_format
    if fmt is None or fmt.type == "text":
        if r.json_schema is not None:  # llama-server's top-level extension
            return chat.JsonSchema(r.json_schema)
        return chat.PlainText()
    if fmt.type == "json_object":
        return chat.JsonObject()
    assert fmt.json_schema is not None
    check_schema(fmt.json_schema.schema_ or {}, "response_format.json_schema.schema")
    return chat.JsonSchema(fmt.json_schema.schema_ or {}, fmt.json_schema.name, fmt.json_schema.strict)


def raise_conflict() -> None:
    raise InvalidRequestError("grammar cannot be combined with response_format.", param="grammar")


def reasoning_of(r: ChatCompletionRequest) -> chat.Reasoning:
    """Every spelling of "think or not" clients send, in one policy (an explicit off wins)."""
    effort = r.reasoning_effort
    config = r.reasoning
    if config is not None and effort is None:
        effort = config.effort
    if isinstance(r.think, str) and effort is None:
        effort = r.think
    offs = (
        effort == "none",
        r.think is False,
        config is not None and config.enabled is False,
        r.thinking is not None and r.thinking.type == "disabled",
    )
    ons = (r.think is True, isinstance(r.think, str), r.thinking is not None and r.thinking.type == "enabled")
    enabled = False if any(offs) else True if any(ons) else None
    show = not (config is not None and config.exclude)
    level: chat.ReasoningEffort | None = None if effort is None or effort == "none" else effort
    return chat.Reasoning(enabled=enabled, effort=level, show=show)


def chat_request(r: ChatCompletionRequest, *, max_tokens: int | None) -> chat.ChatRequest:
    tools = tuple(chat.Tool(f.name, f.description, f.parameters, f.strict) for f in r.all_tools())
    return chat.ChatRequest(
        model=r.model,
        messages=messages_of(r.messages),
        tools=tools,
        tool_choice=r.tool_choice_name(),
        output=output_of(r),
        reasoning=reasoning_of(r),
        sampling=sampling_of(r),
        limits=limits_of(r, max_tokens),
        seed=r.seed,
        logprobs=(r.top_logprobs or 0) if r.logprobs else (r.n_probs or None),
        template_kwargs=dict(r.chat_template_kwargs or {}),
        context_length=r.num_ctx,
        affinity_key=r.user,  # a remote model's conversations stay on one upstream (its prefix cache)
    )


# --- results → OpenAI JSON ------------------------------------------------------------------------------


def usage_json(usage: chat.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def sum_usage(usages: Sequence[chat.Usage], *, prompts: int = 1) -> chat.Usage:
    """Every prompt counted once however many choices it had (``prompts`` distinct prompts, in order)."""
    n = max(len(usages) // max(prompts, 1), 1)
    return chat.Usage(
        prompt_tokens=sum(u.prompt_tokens for i, u in enumerate(usages) if i % n == 0),
        completion_tokens=sum(u.completion_tokens for u in usages),
        cached_tokens=sum(u.cached_tokens for i, u in enumerate(usages) if i % n == 0),
        reasoning_tokens=sum(u.reasoning_tokens for u in usages),
    )


def token_logprob_json(lp: chat.TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.bytes) or list(lp.token.encode()),
        "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in lp.top],
    }


def legacy_logprobs_json(items: Sequence[chat.TokenLogprob]) -> dict[str, Any]:
    offsets, position = [], 0
    for lp in items:
        offsets.append(position)
        position += len(lp.token)
    return {
        "tokens": [lp.token for lp in items],
        "token_logprobs": [lp.logprob for lp in items],
        "top_logprobs": [dict(lp.top) for lp in items],
        "text_offset": offsets,
    }


def tool_call_json(call: chat.ToolCall | chat.ToolCallDelta, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    return {"index": index, **out} if index is not None else out


def reasoning_json(text: str, field: ReasoningField) -> dict[str, str]:
    """The reasoning under the field name(s) the server is set to use (``reasoning_field``)."""
    if field == "both":
        return {"reasoning_content": text, "reasoning": text}
    return {field: text}


def message_json(result: chat.ChatResult, field: ReasoningField) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.content if result.content or not result.tool_calls else None,
    }
    if result.reasoning:
        message.update(reasoning_json(result.reasoning, field))
    if result.tool_calls:
        message["tool_calls"] = [tool_call_json(call) for call in result.tool_calls]
    return message
