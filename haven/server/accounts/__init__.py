"""HTTP routes of accounts, conversations and the security log (``/api/v1/…``), and the chat recording hook."""
