"""Bias and censorship audit: suites of mirrored prompts, a runner against any
OpenAI-compatible endpoint, a scoring cascade (transport → heuristics → LLM judge),
statistics with confidence intervals and tests, and reports."""
