"""The background job that hard-deletes expired conversations and purges expired sessions (hourly)."""

from __future__ import annotations

import asyncio
import logging

import anyio.to_thread

from haven.server.accounts.context import AccountsContext

log = logging.getLogger("haven.server.retention")
INTERVAL_SECONDS = 3600.0


def run_once(context: AccountsContext) -> int:
    removed = context.conversations.delete_expired(context.settings.retention_days)
    context.accounts.purge_expired_sessions()
    if removed:
        context.log.append("retention_deleted", details={"conversations": removed})
    return removed


async def retention_loop(context: AccountsContext, interval: float = INTERVAL_SECONDS) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(run_once, context)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed pass is retried at the next interval; the server keeps serving
            log.exception("the retention job failed")
        await asyncio.sleep(interval)
