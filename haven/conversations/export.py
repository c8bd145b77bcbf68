"""Export of conversations as JSON (the full tree) or Markdown (the thread on screen)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from haven.conversations.store import ConversationView
from haven.errors import InvalidRequestError

FORMATS = ("json", "markdown")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidRequestError("format must be 'json' or 'markdown'.", param="format")
    return fmt


def to_json(conversations: Sequence[ConversationView], *, single: bool) -> str:
    body: Any = conversations[0].as_json() if single else {"conversations": [c.as_json() for c in conversations]}
    return json.dumps(body, ensure_ascii=False, indent=2)


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside, so content cannot break out of it."""
    ticks = 3
    run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        ticks = max(ticks, run + 1)
    return "`" * ticks


def to_markdown(conversations: Sequence[ConversationView]) -> str:
    parts: list[str] = []
    for c in conversations:
        parts.append(f"# {c.title}\n")
        meta = [f"- Created: {c.created_at.isoformat()}", f"- Updated: {c.updated_at.isoformat()}"]
        if c.model:
            meta.append(f"- Model: {c.model}")
        parts.append("\n".join(meta) + "\n")
        if c.system:
            parts.append(f"## System\n\n{c.system}\n")
        for m in c.active_thread():
            heading = m.role.capitalize() + (f" ({m.model})" if m.model and m.role == "assistant" else "")
            if m.incomplete:
                heading += " — incomplete"
            parts.append(f"## {heading}\n")
            if m.reasoning:
                parts.append(f"<details><summary>Reasoning</summary>\n\n{m.reasoning}\n\n</details>\n")
            if m.content:
                parts.append(m.content + "\n")
            for call in m.tool_calls:
                fn = call.get("function", {})
                args = str(fn.get("arguments", ""))
                fence = _fence(args)
                parts.append(f"Tool call `{fn.get('name', '')}`:\n\n{fence}json\n{args}\n{fence}\n")
        parts.append("\n---\n")
    return "\n".join(parts)
