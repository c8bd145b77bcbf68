"""Conversations: the encrypted, per-user record of chats, its tree of branches, export, retention (issue 10)."""
