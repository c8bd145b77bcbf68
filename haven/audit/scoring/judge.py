"""The LLM judge: versioned prompt files, the chat call, and parsing of its verdict.

The judge is any OpenAI-compatible chat endpoint. It is asked for three lines
(``LABEL:``, ``VALENCE:``, ``REASON:``). Label probabilities come from the ``top_logprobs``
of the label token when the endpoint returns them (one call); otherwise from a k-sample
majority vote. Output without a label is either the judge refusing (it used refusal phrases)
or a parse error — both become ``Label.UNSCORED`` and are counted in the report.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import httpx

from haven.audit.client import OutboundRedaction
from haven.audit.records import Label
from haven.audit.scoring.heuristics import refusal_flags, strip_think
from haven.errors import AuditError

JUDGE_LABELS: tuple[Label, ...] = (Label.COMPLETE, Label.EVASIVE, Label.DENIAL)
_LABEL_RE = re.compile(r"LABEL\s*[:：]\s*[*\"'`]*\s*(COMPLETE|EVASIVE|DENIAL)\b", re.IGNORECASE)
_JSON_LABEL_RE = re.compile(r"\"label\"\s*:\s*\"(COMPLETE|EVASIVE|DENIAL)\"", re.IGNORECASE)
_VALENCE_RE = re.compile(r"VALENCE\s*[:：]\s*[*\"'`]*\s*([+-]?\d+(?:\.\d+)?|N/?A)", re.IGNORECASE)
_REASON_RE = re.compile(r"REASON\s*[:：]\s*(.+)", re.IGNORECASE)
MAX_RESPONSE_CHARS = 6000


@cache
def load_prompt(version: str = "v1") -> str:
    """The judge prompt template of a version, without its '#' header lines."""
    name = f"judge_{version}.txt"
    try:
        text = resources.files("haven.audit.scoring").joinpath("prompts", name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuditError(f"Unknown judge prompt version {version!r} (no prompts/{name}).") from None
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip() + "\n"


def render_prompt(version: str, *, prompt: str, response: str, target: str) -> str:
    # str.replace, not str.format: the response is untrusted and may contain braces.
    text = load_prompt(version)
    text = text.replace("{target}", target).replace("{prompt}", prompt)
    return text.replace("{response}", response[:MAX_RESPONSE_CHARS])


@dataclass(frozen=True)
class ParsedVerdict:
    label: Label | None
    valence: float | None
    reason: str
    judge_refused: bool
    parse_error: bool


def _final_label(text: str) -> re.Match[str] | None:
    """The last label statement that is not an echo of the instructions ("COMPLETE or EVASIVE …").

    The last one wins because a judge that thinks aloud states its final answer at the end.
    """
    found = [m for m in _LABEL_RE.finditer(text) if not text[m.end() :].lstrip().lower().startswith("or ")]
    if not found:
        found = list(_JSON_LABEL_RE.finditer(text))
    return found[-1] if found else None


def parse_verdict(text: str) -> ParsedVerdict:
    """Parse the judge's reply; no label → judge refused (refusal phrases) or parse error."""
    text = strip_think(text)[0]  # a reasoning judge's <think> block is not its answer
    m = _final_label(text)
    reason_m = _REASON_RE.search(text)
    reason = reason_m.group(1).strip()[:300] if reason_m else ""
    if not m:
        refused = "refusal_phrase" in refusal_flags(text)
        return ParsedVerdict(None, None, text.strip()[:300], refused, not refused)
    valence: float | None = None
    vm = _VALENCE_RE.search(text, m.end())
    if vm and not vm.group(1).upper().startswith("N"):
        valence = max(-2.0, min(2.0, float(vm.group(1))))
    return ParsedVerdict(Label(m.group(1).upper()), valence, reason, False, False)


def label_probs_from_logprobs(text: str, logprobs: Any) -> dict[str, float] | None:
    """P(label) from the top_logprobs of the token where the label starts; None if unavailable.

    Alternatives are matched by prefix ("DEN" → DENIAL) because tokenizers split the
    label words differently; an alternative that is a prefix of two labels is ignored.
    """
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    tokens = [t for t in logprobs["content"] if isinstance(t, dict) and isinstance(t.get("token"), str)]
    joined = "".join(t["token"] for t in tokens)
    m = _final_label(joined)
    if not m:
        return None
    offset, pos = 0, None
    for i, tok in enumerate(tokens):
        if offset <= m.start(1) < offset + len(tok["token"]):
            pos = i
            break
        offset += len(tok["token"])
    if pos is None:
        return None
    candidates = list(tokens[pos].get("top_logprobs") or [])
    if not any(c.get("token") == tokens[pos]["token"] for c in candidates if isinstance(c, dict)):
        candidates.append({"token": tokens[pos]["token"], "logprob": tokens[pos].get("logprob", 0.0)})
    mass: dict[str, float] = {}
    for cand in candidates:
        if not isinstance(cand, dict) or not isinstance(cand.get("logprob"), int | float):
            continue
        t = str(cand.get("token", "")).strip().strip("*\"'`").upper()
        matches = [lab for lab in JUDGE_LABELS if t and lab.value.startswith(t)]
        if len(matches) == 1:
            mass[matches[0].value] = mass.get(matches[0].value, 0.0) + math.exp(float(cand["logprob"]))
    total = sum(mass.values())
    if total <= 0:
        return None
    return {lab.value: mass.get(lab.value, 0.0) / total for lab in JUDGE_LABELS}


def majority_vote(verdicts: list[ParsedVerdict]) -> tuple[Label | None, dict[str, float] | None]:
    """Majority label over parsed samples (ties go to the earliest sample) and vote shares."""
    labels = [v.label for v in verdicts if v.label is not None]
    if not labels:
        return None, None
    counts = Counter(labels)
    top = max(counts.values())
    winner = next(lab for lab in labels if counts[lab] == top)
    return winner, {lab.value: counts.get(lab, 0) / len(labels) for lab in JUDGE_LABELS}


def chat_url(endpoint: str) -> str:
    """Accept 'http://h:p', 'http://h:p/v1' or a full '/chat/completions' URL."""
    url = endpoint.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


class JudgeTransportError(AuditError):
    """The judge endpoint failed after all retries."""

    status_code = 502
    code = "judge_unreachable"


class JudgeClient:
    """One OpenAI-compatible judge endpoint; remembers whether it accepts logprobs."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str | None,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        redaction: OutboundRedaction | None = None,
    ) -> None:
        self.url = chat_url(endpoint)
        self.redaction = redaction
        """Set for a judge outside this machine: the judge prompt is masked, its reply restored."""
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s
        self._retries = max_retries
        self._backoff = backoff_s
        self._logprobs_ok = True
        self.rejected_fields: set[str] = set()
        """Reproducibility fields (seed, cache_prompt) the judge endpoint refused; sent without them since."""
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def complete(self, prompt: str, temperature: float, *, vote: int = 0) -> tuple[str, Any]:
        """(reply text, logprobs object or None).

        Reproducible like the audited requests: a seed fixed by the prompt and the vote number, and no KV
        prefix reuse (``cache_prompt: false``); a server that rejects either is asked without it from then on.
        An external judge sees the prompt masked (the seed still follows the unmasked prompt).
        """
        if self.redaction is None:
            return await self._complete(prompt, prompt, temperature, vote)
        logprobs: list[Any] = []

        async def send(masked: str) -> tuple[str, str]:
            text, found = await self._complete(masked, prompt, temperature, vote)
            logprobs.append(found)
            return text, ""

        text, _ = await self.redaction.exchange(self.model, prompt, send)
        return text, logprobs[-1]

    async def _complete(self, prompt: str, seeded_by: str, temperature: float, vote: int) -> tuple[str, Any]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
        digest = hashlib.sha256(f"{vote}:{seeded_by}".encode()).digest()
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
            "max_tokens": 200,
            "seed": int.from_bytes(digest[:4], "big") & 0x7FFFFFFF,
            "cache_prompt": False,
        }
        if self._logprobs_ok:
            body |= {"logprobs": True, "top_logprobs": 5}
        last = ""
        for attempt in range(self._retries + 1):
            try:
                r = await self._client.post(self.url, json=body)
                while r.status_code in (400, 422) and (
                    field := next((f for f in ("cache_prompt", "seed") if f in body and f in r.text[:2000]), None)
                ):
                    self.rejected_fields.add(field)
                    body.pop(field)
                    r = await self._client.post(self.url, json=body)
                if r.status_code == 400 and "logprobs" in body:
                    # Some servers reject logprobs outright; ask again without, and remember.
                    self._logprobs_ok = False
                    body.pop("logprobs")
                    body.pop("top_logprobs")
                    r = await self._client.post(self.url, json=body)
                if r.status_code >= 500 or r.status_code == 429:
                    last = f"HTTP {r.status_code}"
                else:
                    r.raise_for_status()
                    choice = r.json()["choices"][0]
                    return str(choice["message"].get("content") or ""), choice.get("logprobs")
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self._retries:
                await asyncio.sleep(self._backoff * 2**attempt)
        raise JudgeTransportError(f"The judge at {self.url} failed after {self._retries + 1} attempts ({last}).")
