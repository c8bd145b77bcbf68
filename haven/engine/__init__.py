"""Inference engine: token ids in, tokens out.

llama.cpp through llama-cpp-python's low-level API, a scheduler with continuous batching
and prefix reuse, samplers, chat templates rendered in a Jinja sandbox, and the reasoning
split. Knows nothing about HTTP; the server depends only on :mod:`haven.engine.protocol`.
"""
