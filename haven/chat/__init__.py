"""The message-level chat layer: one pipeline for the OpenAI and Ollama APIs, the audit and the UI.

:mod:`haven.chat.backend` is the contract (requests, events, models); :mod:`haven.chat.local` implements
it over Haven's engine. Imports point down only: engine, models and settings.
"""
