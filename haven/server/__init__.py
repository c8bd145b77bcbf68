"""HTTP layer: FastAPI app factory, OpenAI- and Ollama-compatible routes, auth, metrics.
Thin routers over service code that depends on :mod:`haven.engine.protocol` only."""
