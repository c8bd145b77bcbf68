"""Both APIs' spellings of issue 9's sampler extensions reach the engine's SamplingParams through
:mod:`haven.chat.options` (and a model's Modelfile ``PARAMETER mirostat`` applies where a request is silent)."""

from __future__ import annotations

from haven.chat import options, prompt
from haven.chat.backend import ChatRequest, Limits, Message, Mirostat, Sampling
from haven.engine.protocol import SamplingParams
from haven.models.manifest import ModelDefaults
from haven.server.ollama import protocol as ollama
from haven.server.ollama import serving as ollama_serving
from haven.server.openai import convert
from haven.server.openai.protocol import ChatCompletionRequest


def engine_params(sampling: Sampling, limits: Limits) -> SamplingParams:
    return options.sampling_params(
        sampling, limits, options.Constraint(), seed=None, logprobs=None, max_tokens_limit=1000
    )


def test_openai_extensions_reach_the_engine() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "typical_p": 0.7,
            "mirostat": 2,
            "mirostat_tau": 0.0,
            "mirostat_eta": 0.3,
            "min_tokens": 9,
        }
    )
    sent = engine_params(convert.sampling_of(body), convert.limits_of(body, 20))
    assert (sent.typical_p, sent.mirostat, sent.mirostat_tau, sent.mirostat_eta) == (0.7, 2, 0.0, 0.3)
    assert (sent.min_tokens, sent.max_tokens) == (9, 20)


def test_ollama_options_reach_the_engine_and_unset_ones_keep_llama_cpp_defaults() -> None:
    body = ollama.Options.model_validate({"typical_p": 0.5, "mirostat": 1})
    sent = engine_params(ollama_serving.sampling_of(body), ollama_serving.limits_of(body))
    assert (sent.typical_p, sent.mirostat, sent.mirostat_tau, sent.mirostat_eta) == (0.5, 1, 5.0, 0.1)
    plain = engine_params(ollama_serving.sampling_of(ollama.Options()), Limits())
    defaults = SamplingParams()
    assert (plain.typical_p, plain.mirostat, plain.min_tokens) == (defaults.typical_p, 0, 0) == (1.0, 0, 0)


def test_a_modelfile_mirostat_applies_unless_the_request_sets_its_own() -> None:
    defaults = ModelDefaults(parameters={"mirostat": 2, "mirostat_tau": 3.0, "typical_p": 0.9})
    request = ChatRequest(model="m", messages=(Message("user", "Hi"),))
    applied = prompt.with_defaults(request, defaults).sampling
    assert (applied.mirostat, applied.typical_p) == (Mirostat(2, 3.0, 0.1), 0.9)
    own = ChatRequest(model="m", messages=(Message("user", "Hi"),), sampling=Sampling(mirostat=Mirostat(1)))
    assert prompt.with_defaults(own, defaults).sampling.mirostat == Mirostat(1)
