"""LangChain's OpenAI and Ollama chat models (invoke, stream, bind_tools, with_structured_output) and
OpenAI embeddings, unchanged, against Haven."""

from __future__ import annotations

from langchain_core.messages import AIMessage
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, Field

from tests.e2e.conftest import HavenServer


class Answer(BaseModel):
    """An integer answer."""

    value: int = Field(description="the answer")


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _openai(url: str) -> ChatOpenAI:
    return ChatOpenAI(model="tiny", base_url=url + "/v1", api_key="unused", max_tokens=8, max_retries=0)  # type: ignore[arg-type]


def test_chat_openai(compat_server: HavenServer) -> None:
    llm = _openai(compat_server)
    assert isinstance(llm.invoke("Hi"), AIMessage)
    assert len(list(llm.stream("Hi"))) >= 1
    # Room for the grammar's longest call or answer (bounded whitespace and digits), see test_openai_e2e.
    roomy = ChatOpenAI(model="tiny", base_url=compat_server + "/v1", api_key="unused", max_tokens=512)  # type: ignore[arg-type]
    message = roomy.bind_tools([add], tool_choice="add").invoke("2+3?")
    assert message.tool_calls[0]["name"] == "add"  # type: ignore[attr-defined]
    result = roomy.with_structured_output(Answer, include_raw=True).invoke("6*7?")
    assert result["parsing_error"] is None and isinstance(result["parsed"], Answer)  # type: ignore[index]


def test_chat_openai_reasoning_switches_to_the_responses_api(compat_server: HavenServer) -> None:
    llm = ChatOpenAI(
        model="tiny",
        base_url=compat_server + "/v1",
        api_key="unused",
        max_tokens=8,
        use_responses_api=True,  # type: ignore[arg-type]
    )
    assert isinstance(llm.invoke("Hi"), AIMessage)


def test_chat_ollama(compat_server: HavenServer) -> None:
    llm = ChatOllama(model="tiny", base_url=compat_server, num_predict=8)
    assert isinstance(llm.invoke("Hi"), AIMessage)
    assert len(list(llm.stream("Hi"))) >= 1
    assert isinstance(llm.bind_tools([add]).invoke("2+3?"), AIMessage)
    structured = ChatOllama(model="tiny", base_url=compat_server, num_predict=200).with_structured_output(
        Answer, include_raw=True
    )
    result = structured.invoke("6*7?")
    assert result["parsing_error"] is None and isinstance(result["parsed"], Answer)  # type: ignore[index]


def test_thinking_off_on_an_r1_model_gives_content(compat_server: HavenServer) -> None:
    llm = ChatOllama(model="r1", base_url=compat_server, num_predict=6, reasoning=False)
    message = llm.invoke("Hi")
    assert "reasoning_content" not in message.additional_kwargs


def test_openai_embeddings(compat_server: HavenServer) -> None:
    # Without check_embedding_ctx_length=False LangChain sends tiktoken ids, which Haven (like vLLM and
    # llama-server) reads in the model's own vocabulary: different text. See docs/compatibility.md.
    embeddings = OpenAIEmbeddings(
        model="tiny",
        base_url=compat_server + "/v1",
        api_key="unused",
        check_embedding_ctx_length=False,  # type: ignore[arg-type]
    )
    vectors = embeddings.embed_documents(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) > 0
