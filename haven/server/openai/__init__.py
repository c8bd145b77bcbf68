"""OpenAI-compatible API (``/v1``): ``router`` (HTTP), ``protocol`` (request models), ``serving`` (logic)."""
