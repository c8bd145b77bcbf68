"""Telemetry switches of dependencies Haven may run beside: set off in every Haven server process.

Haven itself sends nothing. Some libraries that can live in the same environment phone home unless told not
to; ``haven serve`` sets their documented opt-out variables before anything is imported, and ``haven doctor``
lists which of them are installed.
"""

from __future__ import annotations

import os

# (distribution, environment variable, value that switches its telemetry off)
TELEMETRY_SWITCHES: tuple[tuple[str, str, str], ...] = (
    ("huggingface-hub", "HF_HUB_DISABLE_TELEMETRY", "1"),
    ("litellm", "LITELLM_TELEMETRY", "False"),
    ("gradio", "GRADIO_ANALYTICS_ENABLED", "False"),
    ("chromadb", "ANONYMIZED_TELEMETRY", "False"),
    ("wandb", "WANDB_MODE", "disabled"),
    ("streamlit", "STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false"),
    ("scarf-sdk", "SCARF_NO_ANALYTICS", "true"),
)


def disable_dependency_telemetry() -> None:
    """Set every known opt-out (and the cross-tool DO_NOT_TRACK) unless the operator set them already."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    for _distribution, variable, value in TELEMETRY_SWITCHES:
        os.environ.setdefault(variable, value)
