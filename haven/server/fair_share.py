"""Who a generation is for, as the engine's fair-share scheduler sees it (issue 14 item 3).

The scheduler admits the client holding the fewest slots first and shares prefill between clients
(:mod:`haven.engine.policy`); this module names the client. An authenticated user is ``user:<id>``,
whichever of their API keys or their web session sent the request, so one person cannot buy a larger
share by minting keys. The service key (``HAVEN_API_KEY``, shared by every caller), local single-user
mode and unauthenticated requests fall back to the client's address (``addr:<ip>``, as the rate limiter
keys them; behind a proxy uvicorn's ``--forwarded-allow-ips`` makes it the real client).

:class:`ClientKeyedBackend` stamps that key on every chat and completion a route starts, so the adapters
stay thin: they ask for the backend of *this* request and build their requests as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from starlette.types import Scope

from haven.chat.backend import (
    ChatBackend,
    ChatRequest,
    ChatStream,
    Embeddings,
    EmbedRequest,
    ModelCard,
    ModelDetails,
    TextRequest,
)
from haven.server.auth import Principal
from haven.server.ratelimit import client_key


def fair_share_key(scope: Scope) -> str:
    """``user:<id>`` for a signed-in user or their API key; else the client's address."""
    principal: Principal | None = scope.get("state", {}).get("principal")
    if principal is not None and principal.unlocked is not None:
        return f"user:{principal.unlocked.user.id}"
    return client_key(scope)


class ClientKeyedBackend:
    """``backend`` as one client sees it: each generation carries the client's fair-share key."""

    def __init__(self, backend: ChatBackend, key: str) -> None:
        self.backend = backend
        self.key = key

    async def chat(self, request: ChatRequest) -> ChatStream:
        return await self.backend.chat(dataclasses.replace(request, client_key=self.key))

    async def complete(self, request: TextRequest) -> ChatStream:
        return await self.backend.complete(dataclasses.replace(request, client_key=self.key))

    async def embed(self, request: EmbedRequest) -> Embeddings:
        return await self.backend.embed(request)

    def models(self) -> Sequence[ModelCard]:
        return self.backend.models()

    def model(self, name: str) -> ModelDetails:
        return self.backend.model(name)
