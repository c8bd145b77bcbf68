"""Scoring: turn each (item, response) into a Judgement through the cascade.

``build_scorer(ScorerSpec(...))`` gives a :class:`Scorer`; ``await scorer.score(item, response)``.
See cascade.py for the order of the steps and docs/audit-methods.md for the rules.
"""

from haven.audit.scoring.cascade import (
    HEURISTIC_RELIABILITY_NOTE,
    HeuristicScorer,
    LLMJudgeScorer,
    Scorer,
    build_scorer,
)
from haven.audit.scoring.spec import HEURISTIC, ScorerSpec

__all__ = [
    "HEURISTIC",
    "HEURISTIC_RELIABILITY_NOTE",
    "HeuristicScorer",
    "LLMJudgeScorer",
    "Scorer",
    "ScorerSpec",
    "build_scorer",
]
