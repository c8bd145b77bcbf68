"""A round trip through a remote OpenAI-compatible server that records what it received.

The recording server (on loopback, standing in for a remote upstream or external audit target) echoes the
user's last message back, so the reply carries the placeholders it saw: it must never have seen an original
value, and the user must get every original value back, streamed or not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from haven.redaction.boundary import OutboundExchange

SECRETS = ["anna.li@example.org", "4111 1111 1111 1111", "+44 20 7946 0958", "GB82 WEST 1234 5698 7654 32",
           "11010519491231002X", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"]
USER_TEXT = ("My mail is anna.li@example.org, card 4111 1111 1111 1111, phone +44 20 7946 0958, IBAN "
             "GB82 WEST 1234 5698 7654 32, 身份证11010519491231002X, key ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789.")


def recording_upstream(received: list[dict]) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        received.append(body)
        echo = "You said: " + body["messages"][-1]["content"]
        if not body.get("stream"):
            return JSONResponse({"id": "x", "object": "chat.completion", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": echo}}]})

        async def frames() -> AsyncIterator[bytes]:
            for i in range(0, len(echo), 5):  # five characters a chunk: placeholders get cut in two
                last = i + 5 >= len(echo)
                chunk = {"choices": [{"index": 0, "delta": {"content": echo[i : i + 5]},
                                      "finish_reason": "stop" if last else None}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.mark.parametrize("stream", [False, True])
async def test_no_original_value_reaches_the_upstream_and_the_user_gets_them_back(stream: bool) -> None:
    received: list[dict] = []
    exchange = OutboundExchange()
    body = exchange.request({"model": "m", "stream": stream, "messages": [
        {"role": "system", "content": "The operator is anna.li@example.org."},
        {"role": "user", "content": USER_TEXT}]})
    transport = httpx.ASGITransport(app=recording_upstream(received))
    async with httpx.AsyncClient(transport=transport, base_url="http://upstream.test") as client:
        if not stream:
            reply = exchange.response((await client.post("/v1/chat/completions", json=body)).json())
            text = reply["choices"][0]["message"]["content"]
        else:
            text = ""
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        text += exchange.chunk(json.loads(line[6:]))["choices"][0]["delta"]["content"]
    seen_upstream = json.dumps(received, ensure_ascii=False)
    assert [s for s in SECRETS if s in seen_upstream] == []
    assert "[EMAIL_1]" in seen_upstream and "[CARD_1]" in seen_upstream
    assert text == "You said: " + USER_TEXT
    assert exchange.counts == {"EMAIL": 2, "CARD": 1, "PHONE": 1, "IBAN": 1, "CN_RESIDENT_ID": 1, "API_KEY": 1}
