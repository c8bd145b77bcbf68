"""LlamaEngine's non-generation API on the tiny model: info, tokenize, chat rendering, embeddings."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from haven.engine.engine import LlamaEngine
from haven.engine.protocol import ModelEngine
from haven.errors import InvalidRequestError
from tests.support.engine_run import tiny_engine


@pytest.fixture
async def engine(make_test_model: Callable[..., Path]) -> AsyncIterator[LlamaEngine]:
    eng = tiny_engine(make_test_model(), context_length=256, parallel=2)
    yield eng
    await eng.close()


async def test_info_describes_the_loaded_model(engine: LlamaEngine) -> None:
    assert isinstance(engine, ModelEngine)
    info = engine.info
    assert (info.name, info.architecture, info.quantization) == ("tiny", "qwen2", "F32")
    assert (info.context_length, info.training_context_length) == (256, 4096)
    assert (info.vocab_size, info.embedding_length) == (1280, 64)
    assert info.parameter_count > 0
    assert info.eos_token == "<|im_end|>"
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.supports_thinking is False


async def test_tokenize_detokenize_round_trip(engine: LlamaEngine) -> None:
    text = "Hello 世界, <|im_start|>ok"
    ids = engine.tokenize(text, add_special=False)
    assert engine.detokenize(ids) == text
    # parse_special: the control token is one id when parsed, several plain tokens when not.
    assert len(engine.tokenize("<|im_start|>", add_special=False)) == 1
    assert len(engine.tokenize("<|im_start|>", add_special=False, parse_special=False)) > 1
    with pytest.raises(InvalidRequestError, match="not in this model's vocabulary"):
        engine.detokenize([1, 99_999])


async def test_render_chat_uses_the_gguf_template(engine: LlamaEngine) -> None:
    prompt = engine.render_chat([{"role": "user", "content": "Hi"}])
    assert prompt.text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.reasoning_opened is False


async def test_embeddings_are_unit_vectors_and_deterministic(engine: LlamaEngine) -> None:
    a, b, a2 = await engine.embed(["The cat sat.", "量子力学", "The cat sat."])
    assert len(a) == 64
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-5)
    assert a == pytest.approx(a2, abs=1e-6)
    assert a != pytest.approx(b, abs=1e-3)
    with pytest.raises(InvalidRequestError, match="tokens; embeddings take at most 256"):
        await engine.embed(["word " * 400])
    with pytest.raises(InvalidRequestError, match="Cannot embed an empty text"):
        await engine.embed([""])


def test_a_load_that_fails_after_the_model_is_in_memory_frees_it(
    make_test_model: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose template does not parse fails to load; its weights and context must not stay
    allocated (the manager retries failed loads on the next request)."""
    from haven.engine import engine as engine_module
    from haven.engine.chat_template import ChatTemplateError
    from haven.engine.llama_backend import LlamaBackend

    closed: list[LlamaBackend] = []
    real_close = LlamaBackend.close

    def recording_close(self: LlamaBackend) -> None:
        closed.append(self)
        real_close(self)

    def broken_template(*args: object, **kwargs: object) -> None:
        raise ChatTemplateError("the model's chat template does not parse: broken")

    monkeypatch.setattr(LlamaBackend, "close", recording_close)
    monkeypatch.setattr(engine_module, "ChatTemplate", broken_template)
    with pytest.raises(ChatTemplateError):
        tiny_engine(make_test_model())
    assert len(closed) == 1 and closed[0].model is None and closed[0].ctx is None
