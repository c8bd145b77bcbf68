"""OpenAI's Responses API (``POST /v1/responses``) over the same chat backend as chat completions.

Protocol mapping only. ``input`` items become chat messages (``instructions`` → the system message,
``function_call`` items → an assistant turn's tool calls, ``function_call_output`` → tool messages,
``reasoning`` items → the next assistant turn's reasoning); the backend's events become output items:
a ``reasoning`` item (the thinking as ``reasoning_text``), a ``message`` with ``output_text`` and
``function_call`` items. Streaming sends the semantic events (``response.created``,
``response.output_item.added``, ``response.output_text.delta``, ``response.reasoning_text.delta``,
``response.function_call_arguments.delta``, … ``response.completed``); without ``stream`` the same event
sequence is built and only the final response is returned, so both answers always agree.

Storage is a seam: with a :class:`ResponseStore` (``app.state.response_store``; the accounts and
conversations storage provides one) completed responses are saved unless ``store`` is false, and
``previous_response_id`` continues one. Without a store nothing is kept and ``previous_response_id`` is a
clear 400.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from haven.chat import backend as api
from haven.errors import HavenError, InvalidRequestError, NotFoundError
from haven.server.openai.protocol import ReasoningConfig
from haven.server.openai.responses_output import ResponseBuilder, new_id
from haven.server.openai.responses_protocol import InputItem, NamedFunctionChoice, ResponsesRequest


def _messages(request: ResponsesRequest) -> tuple[api.Message, ...]:
    out: list[api.Message] = []
    if request.instructions:
        out.append(api.Message("system", request.instructions))
    items = [InputItem(role="user", content=request.input)] if isinstance(request.input, str) else request.input
    reasoning: str | None = None
    for i, item in enumerate(items):
        try:
            text = item.text()
        except ValueError as exc:
            raise InvalidRequestError(f"input[{i}]: {exc}.", param=f"input[{i}]") from None
        if item.type == "reasoning":
            reasoning = (reasoning or "") + text
        elif item.type == "function_call":
            call = api.ToolCall(item.call_id or "", item.name or "", item.arguments or "{}")
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and not last.tool_call_id:
                out[-1] = api.Message("assistant", last.content, last.reasoning, (*last.tool_calls, call))
            else:
                out.append(api.Message("assistant", "", reasoning, (call,)))
                reasoning = None
        elif item.type == "function_call_output":
            out.append(api.Message("tool", text, tool_call_id=item.call_id))
        else:
            role: api.Role = "system" if item.role in ("system", "developer") else item.role or "user"  # type: ignore[assignment]
            out.append(api.Message(role, text, reasoning if role == "assistant" else None))
            if role == "assistant":
                reasoning = None
    if not any(m.role == "user" for m in out):
        raise InvalidRequestError("input must contain at least one user message.", param="input")
    return tuple(out)


def _output(request: ResponsesRequest) -> api.OutputFormat:
    fmt = request.text.format if request.text is not None else None
    if fmt is None or fmt.type == "text":
        return api.PlainText()
    if fmt.type == "json_object":
        return api.JsonObject()
    return api.JsonSchema(fmt.schema_ or {}, fmt.name, fmt.strict)


def _reasoning(config: ReasoningConfig | None) -> api.Reasoning:
    if config is None:
        return api.Reasoning()
    if config.effort == "none" or config.enabled is False:
        return api.Reasoning(enabled=False)
    effort = None if config.effort in (None, "none") else config.effort
    return api.Reasoning(enabled=True if effort or config.enabled else None, effort=effort)


class ResponseStore(Protocol):
    """Where responses are kept, as the input items that replay them (the conversation so far)."""

    async def load(self, response_id: str) -> list[dict[str, Any]] | None:
        """The items of a stored response (its input, then its output), or None if there is none."""

    async def save(self, response_id: str, items: list[dict[str, Any]]) -> None: ...


def _input_items(request: ResponsesRequest) -> list[dict[str, Any]]:
    if isinstance(request.input, str):
        return [{"role": "user", "content": request.input}]
    return [item.model_dump(exclude_none=True) for item in request.input]


async def _with_history(request: ResponsesRequest, store: ResponseStore | None) -> ResponsesRequest:
    if request.previous_response_id is None:
        return request
    if store is None:
        raise InvalidRequestError(
            "previous_response_id is not supported: this server does not store responses; "
            "send the whole conversation in input instead.",
            param="previous_response_id",
        )
    history = await store.load(request.previous_response_id)
    if history is None:
        raise NotFoundError(f"no stored response {request.previous_response_id[:100]!r}.")
    items = [InputItem.model_validate(item) for item in history + _input_items(request)]
    return request.model_copy(update={"input": items, "previous_response_id": None})


def chat_request(request: ResponsesRequest) -> api.ChatRequest:
    choice = request.tool_choice
    tool_choice = choice.name if isinstance(choice, NamedFunctionChoice) else choice or "auto"
    tools = tuple(api.Tool(t.name, t.description, t.parameters, t.strict) for t in request.tools or ())
    return api.ChatRequest(
        model=request.model,
        messages=_messages(request),
        tools=tools,
        tool_choice=tool_choice,
        output=_output(request),
        reasoning=_reasoning(request.reasoning),
        sampling=api.Sampling(temperature=request.temperature, top_p=request.top_p),
        limits=api.Limits(max_tokens=request.max_output_tokens),
        seed=request.seed,
        logprobs=request.top_logprobs,
        request_id=new_id("resp"),
    )


async def _frames(
    builder: ResponseBuilder, stream: api.ChatStream, result: list[dict[str, Any]], store: ResponseStore | None
) -> AsyncIterator[bytes]:
    created = builder.response("in_progress")
    yield builder.frame("response.created", response=created)
    yield builder.frame("response.in_progress", response=created)
    try:
        async for event in stream:
            if isinstance(event, api.ReasoningDelta):
                frames = builder.reasoning(event.text)
            elif isinstance(event, api.TextDelta):
                frames = builder.text(event.text) if event.text else []
            elif isinstance(event, api.ToolCallDelta):
                frames = builder.call(event)
            else:
                frames, response = builder.finish(event)
                result.append(response)
                if store is not None and builder.stored and response["status"] != "failed":
                    await store.save(response["id"], _input_items(builder.request) + response["output"])
            for frame in frames:
                yield frame
            if result:
                return
    except HavenError as exc:
        yield builder.frame("error", code=exc.code, message=exc.message, param=exc.param)
    finally:
        await stream.aclose()


async def create_response(
    backend: api.ChatBackend, request: ResponsesRequest, store: ResponseStore | None = None
) -> dict[str, Any] | AsyncIterator[bytes]:
    full = await _with_history(request, store)
    stream = await backend.chat(chat_request(full))
    builder = ResponseBuilder(full, new_id("resp"))
    builder.stored = store is not None and request.store is not False
    result: list[dict[str, Any]] = []
    if request.stream:
        return _frames(builder, stream, result, store)
    async for _ in _frames(builder, stream, result, store):
        pass
    if not result:
        raise InvalidRequestError("the generation ended without a result.")
    response = result[0]
    if response["status"] == "failed":
        error = api.failure(
            api.Final("error", api.Usage(), api.ChatError("engine_error", response["error"]["message"]))
        )
        assert error is not None
        raise error
    return response
