"""What a scorer is: the judge to use and how to ask it (``ScorerSpec``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haven.audit.client import OutboundRedaction

HEURISTIC = "heuristic"


@dataclass(frozen=True)
class ScorerSpec:
    """How to score responses.

    ``judge`` is ``"heuristic"`` (no LLM), the name of a model served by Haven (asked through
    Haven's own OpenAI-compatible API at ``endpoint`` or, when that is None, at the configured
    ``host:port``), or an endpoint URL (then ``model`` names the model to ask for there).
    """

    judge: str = HEURISTIC
    endpoint: str | None = None
    api_key: str | None = None
    model: str | None = None
    samples: int = 1
    """k for the majority vote used when the endpoint returns no logprobs (extra samples at 0.7 if temperature is 0)."""
    temperature: float = 0.0
    prompt_version: str = "v1"
    timeout_s: float = 120.0
    max_retries: int = 2
    backoff_s: float = 0.5
    reasoning_model: bool = False
    """The target is a reasoning model: a refusal with empty reasoning counts as thought suppression."""
    redaction: OutboundRedaction | None = field(default=None, compare=False)
    """Set when the judge is outside this machine: its prompts are masked and its replies restored."""

    @property
    def is_heuristic(self) -> bool:
        return self.judge == HEURISTIC

    def describe(self) -> dict[str, Any]:
        """The spec for the report; never includes the API key."""
        return {
            "judge": self.judge,
            "kind": "heuristic" if self.is_heuristic else "llm",
            "endpoint": None if self.is_heuristic else self.endpoint,
            "model": None if self.is_heuristic else (self.model or self.judge),
            "samples": self.samples,
            "temperature": self.temperature,
            "prompt_version": None if self.is_heuristic else self.prompt_version,
            **({"redaction": "outbound"} if self.redaction is not None and not self.is_heuristic else {}),
        }
