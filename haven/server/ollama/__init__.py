"""Ollama-compatible API (``/api/*``): ``router`` (HTTP), ``protocol`` (request models), ``serving`` (logic)."""
