"""Per-request sampling: validation of :class:`SamplingParams` and llama.cpp sampler chains.

A chain is built once per request, in llama-server's order (``common/sampling.cpp``):
logit bias → penalties → grammar → top-k → typical-p → top-p → min-p → temperature → dist(seed),
or → greedy when ``temperature == 0``. With ``mirostat`` 1 or 2 the truncation samplers are left out, as
llama.cpp does: logit bias → penalties → grammar → temperature → mirostat(seed, tau, eta), which picks
the token itself (temperature 0 stays plain greedy). ``llama_sampler_sample`` applies the chain to one
logits row and accepts the chosen token into every stateful sampler (penalties, grammar, mirostat's mu).

``min_tokens`` is not a chain member: the scheduler bans the end-of-generation tokens in the logits row
itself while fewer tokens are out (:meth:`SamplerChain.pick`), then restores the row, so logprobs still
report the model's own distribution.

Logprobs are computed here from the raw logits row (log-softmax over the whole vocabulary),
the way OpenAI reports them: before temperature and truncation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp.llama_cpp as ll
import numpy as np
import numpy.typing as npt

from haven.engine.protocol import SamplingParams
from haven.engine.speculative import DRAFT_MAX_LIMIT, SPECULATIVE_MODES
from haven.engine.stop import validate_stops
from haven.errors import GrammarError, InvalidRequestError

MAX_LOGPROBS = 20


def _finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a finite number, got {value!r}.", param=name)


def validate_sampling(params: SamplingParams, *, n_vocab: int, max_tokens_limit: int) -> None:
    """Raise InvalidRequestError (one readable sentence) for any out-of-range value."""
    for name in (
        "temperature",
        "top_p",
        "min_p",
        "typical_p",
        "mirostat_tau",
        "mirostat_eta",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    ):
        _finite(name, getattr(params, name))
    if params.temperature < 0 or params.temperature > 100:
        raise InvalidRequestError(
            f"temperature must be between 0 and 100, got {params.temperature}.", param="temperature"
        )
    if not 0 < params.top_p <= 1:
        raise InvalidRequestError(f"top_p must be in (0, 1], got {params.top_p}.", param="top_p")
    if not 0 <= params.min_p <= 1:
        raise InvalidRequestError(f"min_p must be in [0, 1], got {params.min_p}.", param="min_p")
    if not 0 < params.typical_p <= 1:
        raise InvalidRequestError(f"typical_p must be in (0, 1], got {params.typical_p}.", param="typical_p")
    if isinstance(params.mirostat, bool) or params.mirostat not in (0, 1, 2):
        raise InvalidRequestError(
            f"mirostat must be 0 (off), 1 or 2 (Mirostat 2.0), got {params.mirostat!r}.", param="mirostat"
        )
    if not 0 <= params.mirostat_tau <= 100:
        raise InvalidRequestError(
            f"mirostat_tau must be between 0 and 100, got {params.mirostat_tau}.", param="mirostat_tau"
        )
    if not 0 <= params.mirostat_eta <= 10:
        raise InvalidRequestError(
            f"mirostat_eta must be between 0 and 10, got {params.mirostat_eta}.", param="mirostat_eta"
        )
    if isinstance(params.top_k, bool) or not isinstance(params.top_k, int) or params.top_k < 0:
        raise InvalidRequestError(f"top_k must be a non-negative integer, got {params.top_k!r}.", param="top_k")
    if not 0 < params.repeat_penalty <= 10:
        raise InvalidRequestError(
            f"repeat_penalty must be in (0, 10], got {params.repeat_penalty}.", param="repeat_penalty"
        )
    if not isinstance(params.repeat_last_n, int) or not -1 <= params.repeat_last_n <= 1_000_000:
        raise InvalidRequestError(
            f"repeat_last_n must be an integer ≥ -1, got {params.repeat_last_n!r}.", param="repeat_last_n"
        )
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(params, name)
        if not -2 <= value <= 2:
            raise InvalidRequestError(f"{name} must be between -2 and 2, got {value}.", param=name)
    if params.seed is not None and (isinstance(params.seed, bool) or not isinstance(params.seed, int)):
        raise InvalidRequestError(f"seed must be an integer, got {params.seed!r}.", param="seed")
    if params.max_tokens is not None and (
        isinstance(params.max_tokens, bool)
        or not isinstance(params.max_tokens, int)
        or not 1 <= params.max_tokens <= max_tokens_limit
    ):
        raise InvalidRequestError(
            f"max_tokens must be between 1 and {max_tokens_limit}, got {params.max_tokens!r}.", param="max_tokens"
        )
    if (
        isinstance(params.min_tokens, bool)
        or not isinstance(params.min_tokens, int)
        or not 0 <= params.min_tokens <= max_tokens_limit
    ):
        raise InvalidRequestError(
            f"min_tokens must be between 0 and {max_tokens_limit}, got {params.min_tokens!r}.", param="min_tokens"
        )
    if params.max_tokens is not None and params.min_tokens > params.max_tokens:
        raise InvalidRequestError(
            f"min_tokens ({params.min_tokens}) must not exceed max_tokens ({params.max_tokens}).", param="min_tokens"
        )
    if params.min_tokens and (params.grammar is not None or params.json_schema is not None):
        # The grammar may allow nothing but the end before min_tokens are out: nothing would be left to sample.
        raise InvalidRequestError(
            "min_tokens cannot be combined with a grammar or JSON schema: constrained output must be able to end.",
            param="min_tokens",
        )
    if params.ignore_eos and (params.grammar is not None or params.json_schema is not None):
        # A grammar ends by allowing only the end-of-generation token; banning it leaves nothing to sample.
        raise InvalidRequestError(
            "ignore_eos cannot be combined with a grammar or JSON schema: constrained output must be able to end.",
            param="ignore_eos",
        )
    if params.logprobs is not None and (
        isinstance(params.logprobs, bool)
        or not isinstance(params.logprobs, int)
        or not 0 <= params.logprobs <= MAX_LOGPROBS
    ):
        raise InvalidRequestError(
            f"logprobs must be between 0 and {MAX_LOGPROBS}, got {params.logprobs!r}.", param="logprobs"
        )
    if isinstance(params.stop, str):
        raise InvalidRequestError("stop must be a list of strings, not one string.", param="stop")
    validate_stops(params.stop)
    for token, bias in dict(params.logit_bias).items():
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < n_vocab:
            raise InvalidRequestError(
                f"logit_bias names token {token!r}, which is not in this model's vocabulary (0..{n_vocab - 1}).",
                param="logit_bias",
            )
        if isinstance(bias, bool) or not isinstance(bias, int | float) or math.isnan(bias):
            raise InvalidRequestError(
                f"logit_bias for token {token} must be a number, got {bias!r}.", param="logit_bias"
            )
    if params.speculative is not None and params.speculative not in SPECULATIVE_MODES:
        raise InvalidRequestError(
            f"speculative must be one of {', '.join(SPECULATIVE_MODES)}, got {params.speculative!r}.",
            param="speculative",
        )
    if params.speculative_draft_max is not None and (
        isinstance(params.speculative_draft_max, bool)
        or not isinstance(params.speculative_draft_max, int)
        or not 1 <= params.speculative_draft_max <= DRAFT_MAX_LIMIT
    ):
        raise InvalidRequestError(
            f"speculative_draft_max must be between 1 and {DRAFT_MAX_LIMIT}, got {params.speculative_draft_max!r}.",
            param="speculative_draft_max",
        )
    if params.grammar is not None and params.json_schema is not None:
        raise InvalidRequestError("Give either a grammar or a JSON schema, not both.", param="grammar")


def grammar_text(params: SamplingParams) -> str | None:
    """The GBNF grammar the request constrains output to (JSON schemas converted), if any."""
    from haven.engine.grammar import bounded_gbnf, json_schema_to_gbnf

    if params.json_schema is not None:
        return json_schema_to_gbnf(params.json_schema)
    # User GBNF is bounded (size, nesting, repetition) before llama.cpp's recursive parser sees it.
    return bounded_gbnf(params.grammar) if params.grammar is not None else None


@dataclass
class SamplerChain:
    """A llama.cpp sampler chain for one request; free it with :meth:`free`."""

    chain: Any
    penalties: Any = None
    seed: int | None = None
    fast_greedy: bool = False
    """Plain greedy (optionally with logit bias): :meth:`greedy` picks the token in numpy.

    ``llama_sampler_sample`` first copies the whole vocabulary into a candidate array (151,936
    entries for Qwen2), which costs about as much as argmax over the raw logits row ten times;
    for the stateless greedy case the result is identical (first maximum wins in both)."""
    bias_ids: npt.NDArray[np.int64] | None = None
    bias_values: npt.NDArray[np.float32] | None = None

    def sample(self, ctx: Any, index: int) -> int:
        return int(ll.llama_sampler_sample(self.chain, ctx, index))

    def pick(
        self, ctx: Any, index: int, logits: npt.NDArray[np.float32], banned: npt.NDArray[np.int64] | None = None
    ) -> int:
        """The next token from batch entry ``index`` (``logits`` is that row, a view of llama.cpp's buffer).

        ``banned`` (min_tokens: the end-of-generation tokens) are set to -inf for this one pick and restored
        afterwards, so logprobs computed from the row afterwards are the model's own."""
        if banned is None or not banned.size:
            return self.greedy(logits) if self.fast_greedy else self.sample(ctx, index)
        saved = logits[banned].copy()
        logits[banned] = -np.inf
        try:
            return self.greedy(logits) if self.fast_greedy else self.sample(ctx, index)
        finally:
            logits[banned] = saved

    def greedy(self, logits: npt.NDArray[np.float32]) -> int:
        if self.bias_ids is None or self.bias_values is None:
            return int(np.argmax(logits))
        biased = logits.copy()
        biased[self.bias_ids] += self.bias_values
        return int(np.argmax(biased))

    def accept_prompt(self, tokens: Sequence[int]) -> None:
        """Feed prompt tokens to the penalty window only (the grammar must not see them)."""
        if self.penalties is not None:
            for tok in tokens:
                ll.llama_sampler_accept(self.penalties, tok)

    def free(self) -> None:
        if self.chain:
            ll.llama_sampler_free(self.chain)
            self.chain = None


def build_chain(
    params: SamplingParams,
    *,
    vocab: Any,
    n_vocab: int,
    grammar: str | None,
    context_length: int,
    allow_fast_greedy: bool = True,
) -> SamplerChain:
    """Build the chain; GrammarError when llama.cpp rejects the grammar."""
    sparams = ll.llama_sampler_chain_default_params()
    sparams.no_perf = True
    chain = ll.llama_sampler_chain_init(sparams)
    out = SamplerChain(chain=chain)
    try:
        if params.logit_bias:
            items = list(dict(params.logit_bias).items())
            arr = (ll.llama_logit_bias * len(items))()
            for i, (tok, bias) in enumerate(items):
                arr[i].token = tok  # type: ignore[assignment]
                # -inf/inf are valid "ban"/"force" requests; llama.cpp adds the bias to the logit.
                arr[i].bias = max(min(float(bias), 1e30), -1e30)
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_logit_bias(n_vocab, len(items), arr))
        if params.repeat_penalty != 1.0 or params.presence_penalty != 0.0 or params.frequency_penalty != 0.0:
            penalties = ll.llama_sampler_init_penalties(
                n_vocab,
                # -1 means "the whole context"; llama.cpp itself would read it as "off".
                context_length if params.repeat_last_n == -1 else params.repeat_last_n,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
            ll.llama_sampler_chain_add(chain, penalties)
            out.penalties = penalties
        if grammar is not None:
            smpl = ll.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
            if not smpl:
                raise GrammarError("The grammar is not valid GBNF (llama.cpp could not parse it).", param="grammar")
            ll.llama_sampler_chain_add(chain, smpl)
        if params.temperature == 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            if allow_fast_greedy and out.penalties is None and grammar is None:
                out.fast_greedy = True
                if params.logit_bias:
                    items = list(dict(params.logit_bias).items())
                    out.bias_ids = np.array([t for t, _ in items], dtype=np.int64)
                    out.bias_values = np.array([max(min(float(b), 1e30), -1e30) for _, b in items], dtype=np.float32)
            return out
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        out.seed = seed
        if params.mirostat:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(params.temperature))
            if params.mirostat == 1:
                # m = 100: the tokens llama.cpp's common sampling uses to estimate the distribution's exponent.
                smpl = ll.llama_sampler_init_mirostat(
                    n_vocab, seed & 0xFFFFFFFF, params.mirostat_tau, params.mirostat_eta, 100
                )
            else:
                smpl = ll.llama_sampler_init_mirostat_v2(seed & 0xFFFFFFFF, params.mirostat_tau, params.mirostat_eta)
            ll.llama_sampler_chain_add(chain, smpl)
            return out
        if params.top_k > 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(params.top_k))
        if params.typical_p < 1.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_typical(params.typical_p, 1))
        if params.top_p < 1.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(params.min_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(params.temperature))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return out
    except BaseException:
        out.free()
        raise


def chain_names(chain: SamplerChain) -> list[str]:
    """The llama.cpp names of the chain's samplers, in order (what ``--verbose`` logs; tests check it)."""
    n = ll.llama_sampler_chain_n(chain.chain)
    return [ll.llama_sampler_name(ll.llama_sampler_chain_get(chain.chain, i)).decode() for i in range(n)]


def logprobs_for(
    logits: npt.NDArray[np.float32], token: int, top_n: int, piece: Callable[[int], str]
) -> tuple[float, tuple[tuple[str, float], ...]]:
    """(logprob of ``token``, top ``top_n`` alternatives) from one raw logits row."""
    row = logits.astype(np.float64, copy=False)
    peak = float(row.max())
    log_z = peak + math.log(float(np.exp(row - peak).sum()))
    chosen = float(row[token]) - log_z
    if top_n <= 0:
        return chosen, ()
    idx = np.argpartition(row, -top_n)[-top_n:]
    idx = idx[np.argsort(row[idx])[::-1]]
    return chosen, tuple((piece(int(i)), float(row[i]) - log_z) for i in idx)
