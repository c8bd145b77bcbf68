"""Request logs are structured and never contain message content."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from haven.server.logging import JsonFormatter
from tests.asgi.openai_support import harness

SECRET = "my very private question about zebras"


async def test_request_log_has_fields_but_no_content(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="haven.server.requests")
    async with harness(tmp_path) as h:
        r = await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": SECRET}]}
        )
        bad = await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "wizard", "content": SECRET}]}
        )
    assert r.status_code == 200 and bad.status_code == 400
    records = [rec for rec in caplog.records if rec.name == "haven.server.requests"]
    assert len(records) == 2
    lines = [json.loads(JsonFormatter().format(rec)) for rec in records]
    assert lines[0]["route"] == "/v1/chat/completions" and lines[0]["status"] == 200 and lines[0]["method"] == "POST"
    assert lines[1]["status"] == 400
    assert lines[0]["request_id"] == r.headers["x-request-id"]
    assert "duration_ms" in lines[0] and lines[0]["bytes_out"] == len(r.content)
    assert all("zebras" not in json.dumps(line) for line in lines)
    assert all("zebras" not in rec.getMessage() for rec in caplog.records)
