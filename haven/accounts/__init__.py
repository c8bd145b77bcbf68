"""Accounts: users, password policy, web sessions, API keys, and the data keys they unlock (issue 10)."""
