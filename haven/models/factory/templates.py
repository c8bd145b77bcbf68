"""The real chat templates of the model families the factory imitates.

Stored verbatim as ``templates/<name>.jinja`` next to this module:

* ``qwen2.5``: Qwen2.5-Instruct's ``chat_template`` (with tools) from its tokenizer_config.json.
* ``deepseek-r1``: DeepSeek-R1-Distill-Qwen's template as kept by llama.cpp in
  ``models/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja`` (the revision whose
  generation prompt opens ``<think>\\n``).
* ``llama3``: Llama 3.x Instruct (with tools), llama.cpp's
  ``models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

TEMPLATES = ("deepseek-r1", "qwen2.5", "llama3")


@cache
def chat_template(name: str) -> str:
    """The Jinja source of template ``name`` (one of :data:`TEMPLATES`)."""
    if name not in TEMPLATES:
        raise KeyError(name)
    return resources.files(__package__).joinpath("templates").joinpath(f"{name}.jinja").read_text(encoding="utf-8")
