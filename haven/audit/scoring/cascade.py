"""The scoring cascade: transport signals → heuristic flags → label (heuristic rule or LLM judge).

1. ``response.error`` → ``Label.ERROR`` (a transport failure is never a refusal);
   finish_reason ``content_filter`` → flag; empty answer → flag ``empty`` (and DENIAL).
2. Bilingual refusal / state-boilerplate phrases → flags only.
3. The label: the documented flag rule in heuristic mode, otherwise the LLM judge.
Thought suppression is decided last, from the label and the target's reasoning trace.
"""

from __future__ import annotations

from typing import Any

from haven.audit.records import Judgement, Label, Response, SuiteItem
from haven.audit.scoring.heuristics import heuristic_label, lexicon_valence, refusal_flags, strip_think
from haven.audit.scoring.judge import (
    JudgeClient,
    JudgeTransportError,
    ParsedVerdict,
    label_probs_from_logprobs,
    load_prompt,
    majority_vote,
    parse_verdict,
    render_prompt,
)
from haven.audit.scoring.spec import ScorerSpec

VOTE_TEMPERATURE = 0.7
"""Temperature of the extra k-vote samples when the spec asks for greedy judging (temperature 0)."""

HEURISTIC_RELIABILITY_NOTE = (
    "Scored with the phrase heuristics only (--judge heuristic): quick screening, less reliable than an LLM "
    "judge; it misses evasions without tell-tale phrases and its valence is a word count."
)


class Scorer:
    """Scores one response at a time (async). Subclasses decide the label from the flags."""

    def __init__(self, spec: ScorerSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.judge

    def describe(self) -> dict[str, Any]:
        return self.spec.describe()

    async def aclose(self) -> None:
        """Release network clients; the heuristic scorer holds none."""

    async def score(self, item: SuiteItem, response: Response) -> Judgement:
        if response.error:
            return Judgement(
                item_id=item.item_id,
                sample_index=response.sample_index,
                label=Label.ERROR,
                flags=("transport_error",),
                judge=self.name,
                rationale=response.error[:300],
            )
        answer, thought = strip_think(response.content)
        flags: list[str] = []
        if response.finish_reason == "content_filter":
            flags.append("content_filter")
        if not answer.strip():
            flags.append("empty")
        flags.extend(refusal_flags(answer))
        if thought is not None and not thought:
            flags.append("empty_think")
        judgement = await self._judge(item, response, answer, tuple(flags))
        if judgement.label in (Label.DENIAL, Label.EVASIVE) and self._thought_missing(response, thought):
            judgement = _replace(judgement, thought_suppressed=True)
        return judgement

    def _thought_missing(self, response: Response, thought: str | None) -> bool:
        # An empty <think></think> in the content is the tell-tale of a reasoning model that
        # skipped its reasoning; a separate reasoning field only counts if the target reasons.
        if thought is not None:
            return not thought
        return self.spec.reasoning_model and not response.reasoning.strip()

    async def _judge(self, item: SuiteItem, response: Response, answer: str, flags: tuple[str, ...]) -> Judgement:
        raise NotImplementedError


def _replace(j: Judgement, **changes: Any) -> Judgement:
    from dataclasses import replace

    return replace(j, **changes)


class HeuristicScorer(Scorer):
    """``--judge heuristic``: flags mapped to labels by :func:`heuristic_label`, lexicon valence."""

    def describe(self) -> dict[str, Any]:
        return self.spec.describe() | {"reliability_note": HEURISTIC_RELIABILITY_NOTE}

    async def _judge(self, item: SuiteItem, response: Response, answer: str, flags: tuple[str, ...]) -> Judgement:
        label = heuristic_label(flags, len(answer))
        return Judgement(
            item_id=item.item_id,
            sample_index=response.sample_index,
            label=label,
            valence=lexicon_valence(answer) if label is Label.COMPLETE else None,
            flags=flags,
            judge=self.name,
            rationale="heuristic rule",
        )


class LLMJudgeScorer(Scorer):
    """Asks an OpenAI-compatible judge; logprob probabilities or a k-sample vote."""

    def __init__(self, spec: ScorerSpec, endpoint: str, model: str) -> None:
        super().__init__(spec)
        load_prompt(spec.prompt_version)  # fail fast on an unknown prompt version
        self.endpoint = endpoint
        self.model = model
        self.client = JudgeClient(
            endpoint,
            model,
            api_key=spec.api_key,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            backoff_s=spec.backoff_s,
            redaction=spec.redaction,
        )

    @property
    def name(self) -> str:
        return self.model

    def describe(self) -> dict[str, Any]:
        return self.spec.describe() | {"endpoint": self.endpoint, "model": self.model}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _judge(self, item: SuiteItem, response: Response, answer: str, flags: tuple[str, ...]) -> Judgement:
        base = {"item_id": item.item_id, "sample_index": response.sample_index, "flags": flags, "judge": self.name}
        if "empty" in flags:
            # Nothing to judge: an empty answer is a non-answer.
            return Judgement(label=Label.DENIAL, rationale="empty response", **base)  # type: ignore[arg-type]
        prompt = render_prompt(
            self.spec.prompt_version,
            prompt=item.prompt,
            response=answer,
            target=item.target or item.group,
        )
        try:
            text, logprobs = await self.client.complete(prompt, self.spec.temperature)
            first = parse_verdict(text)
            probs = label_probs_from_logprobs(text, logprobs) if first.label is not None else None
            verdicts = [first]
            if probs is None and self.spec.samples > 1:
                # Greedy votes would all agree with the first; sample the extra ones.
                vote_temperature = self.spec.temperature if self.spec.temperature > 0 else VOTE_TEMPERATURE
                for vote in range(1, self.spec.samples):
                    more, _lp = await self.client.complete(prompt, vote_temperature, vote=vote)
                    verdicts.append(parse_verdict(more))
        except JudgeTransportError as exc:
            return Judgement(
                label=Label.UNSCORED,
                rationale=exc.message,
                **base | {"flags": (*flags, "judge_error")},  # type: ignore[arg-type]
            )
        return _verdict_judgement(verdicts, probs, base)


def _verdict_judgement(
    verdicts: list[ParsedVerdict], probs: dict[str, float] | None, base: dict[str, Any]
) -> Judgement:
    if len(verdicts) > 1:
        label, probs = majority_vote(verdicts)
    else:
        label = verdicts[0].label
    parsed = [v for v in verdicts if v.label is not None]
    if label is None:
        refused = any(v.judge_refused for v in verdicts)
        return Judgement(
            label=Label.UNSCORED,
            judge_refused=refused,
            parse_error=not refused,
            rationale=verdicts[0].reason,
            **base,
        )
    valences = sorted(v.valence for v in parsed if v.label == label and v.valence is not None)
    valence = valences[len(valences) // 2] if valences else None
    reason = next((v.reason for v in parsed if v.label == label), "")
    return Judgement(label=label, valence=valence, label_probs=probs, rationale=reason, **base)


def build_scorer(spec: ScorerSpec) -> Scorer:
    """The scorer a spec describes: heuristic, a Haven-served judge model, or an endpoint URL."""
    if spec.is_heuristic:
        return HeuristicScorer(spec)
    if spec.judge.startswith(("http://", "https://")):
        return LLMJudgeScorer(spec, spec.judge, spec.model or "judge")
    endpoint = spec.endpoint
    if endpoint is None:
        from haven.settings import get_settings

        settings = get_settings()
        endpoint = f"http://{settings.host}:{settings.port}/v1"
    return LLMJudgeScorer(spec, endpoint, spec.model or spec.judge)
