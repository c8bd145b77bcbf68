"""haven.server.json_body: large bodies are parsed off the event loop, with FastAPI's own error shapes."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, field_validator
from starlette.requests import Request

from haven.server.errors import validation_message
from haven.server.json_body import OFF_LOOP_BYTES, add_body_components, decode_body, openapi_body, parse_body


class Chat(BaseModel):
    model: str
    messages: list[str]

    @field_validator("messages")
    @classmethod
    def note_thread(cls, value: list[str]) -> list[str]:
        SEEN_ON.append(threading.current_thread())
        return value


SEEN_ON: list[threading.Thread] = []


def _request(raw: bytes) -> Request:
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


@pytest.mark.parametrize(("size", "off_loop"), [(10, False), (OFF_LOOP_BYTES + 1, True)])
def test_large_bodies_are_validated_in_a_worker_thread(size: int, off_loop: bool) -> None:
    raw = json.dumps({"model": "m", "messages": ["x" * size]}).encode()
    SEEN_ON.clear()

    async def main() -> tuple[Chat, threading.Thread]:
        return await parse_body(_request(raw), Chat), threading.current_thread()

    chat, loop_thread = asyncio.run(main())
    assert chat.messages == ["x" * size]
    assert (SEEN_ON[0] is not loop_thread) is off_loop


@pytest.mark.parametrize(
    ("raw", "message", "param"),
    [
        (b"", "the request body is missing (send a JSON object).", None),
        (b"{", "the request body is not valid JSON: Expecting property name enclosed in double quotes.", None),
        (b"[1]", "the request body must be a JSON object (sent as Content-Type: application/json).", None),
        (b'{"model": "m"}', "'messages' is a required property.", "messages"),
        (b'{"model": "m", "messages": [1]}', "messages[0]: Input should be a valid string.", "messages[0]"),
    ],
)
def test_errors_read_as_fastapis(raw: bytes, message: str, param: str | None) -> None:
    with pytest.raises(RequestValidationError) as caught:
        decode_body(raw, Chat)
    assert validation_message(caught.value) == (message, param)


def test_deep_nesting_is_left_to_the_recursion_handler() -> None:
    with pytest.raises(RecursionError):
        decode_body(b"[" * 100_000, Chat)


def test_the_openapi_body_inlines_the_schema() -> None:
    schema = openapi_body(Chat)["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["model", "messages"] and "$defs" not in json.dumps(schema)


def test_component_bodies_are_published_by_name() -> None:
    body = openapi_body(Chat, component=True)
    assert body["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Chat"}
    spec = add_body_components({"components": {"schemas": {}}})
    assert spec["components"]["schemas"]["Chat"]["required"] == ["model", "messages"]
