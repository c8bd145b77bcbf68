"""``haven users rotate-key``: a new data key for one user, every row re-encrypted, resumable after a kill.

The new key is stored (wrapped by the password) before the first row moves; each batch of rows is
re-sealed under it and committed with its new ``key_version``; a rerun unwraps the same new key and
continues with the rows still on the old version. Only when none are left does the new key become
current (with a new recovery code). Sessions and API keys are revoked at the start: they wrap the old key.
"""

from __future__ import annotations

from collections.abc import Callable

from haven.accounts.service import Accounts
from haven.conversations.store import ConversationStore


def rotate_data_key(
    accounts: Accounts,
    store: ConversationStore,
    name: str,
    password: str,
    *,
    progress: Callable[[int], None] | None = None,
    batch: int = 200,
) -> str:
    """Runs (or resumes) the rotation; returns the new recovery code."""
    user, cipher = accounts.begin_rotation(name, password)
    for done in store.reencrypt(user.id, cipher, batch=batch):
        if progress is not None:
            progress(done)
    return accounts.finish_rotation(user.id, password, cipher)
