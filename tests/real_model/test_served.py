"""The real model through a real ``haven serve``: known answers on a fresh server and after other requests
filled the prefix cache, through the OpenAI and Ollama clients; and an audit run end to end."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import HAVEN, HavenServer, server_env, start_haven_server
from tests.support.real_model import REAL_MODEL_NAME

QUESTIONS = (
    ("What is the capital of France? Answer in one word.", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
)
FILLERS = (
    "Write a haiku about the sea.",
    "What is 12 times 7?",
    "Name three colours.",
    "What is the capital of France? Answer in one word. Then name its river.",
    "Translate 'good morning' into French.",
)


@pytest.fixture(scope="module")
def server(real_model_home: Path) -> Iterator[HavenServer]:
    with start_haven_server(
        real_model_home, {}, default_model=REAL_MODEL_NAME, parallel=2, context_length=2048, threads=1
    ) as url:  # one thread: llama.cpp's spinning workers degrade badly when a shared machine is oversubscribed
        yield url


def ask(client: openai.OpenAI, question: str, max_tokens: int = 64) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=REAL_MODEL_NAME, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=max_tokens
    )


@pytest.mark.timeout(300)  # a handful of short chats; generous for a loaded shared machine
def test_known_answers_fresh_and_after_the_prefix_cache_filled(server: HavenServer) -> None:
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=120)
    fresh = {q: ask(client, q) for q, _ in QUESTIONS}
    for question, word in QUESTIONS:
        reply = fresh[question]
        text = reply.choices[0].message.content or ""
        assert word in text, (question, text)
        assert reply.choices[0].finish_reason == "stop"
        assert "<|im_end|>" not in text and "<|im_start|>" not in text
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    for filler in FILLERS:  # share the system prompt and some of the questions' words with the cache
        ask(client, filler, max_tokens=12)
    for question, word in QUESTIONS:
        again = ask(client, question)
        text = again.choices[0].message.content or ""
        assert word in text, (question, text)
        assert text == fresh[question].choices[0].message.content  # temperature 0: the same answer
        details = again.usage.prompt_tokens_details if again.usage else None
        assert details is not None and (details.cached_tokens or 0) > 0  # the cached prefix was used


def test_the_ollama_api_answers_too(server: HavenServer) -> None:
    reply = httpx.post(
        server + "/api/chat",
        json={
            "model": REAL_MODEL_NAME, "stream": False, "options": {"temperature": 0},
            "messages": [{"role": "user", "content": QUESTIONS[0][0]}],
        },
        timeout=120,
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "Paris" in body["message"]["content"] and body["done_reason"] == "stop"


def _slice_of_builtin_suite(path: Path, count: int) -> Path:
    """The first ``count`` English items of the built-in paired-countries suite, as a haven-jsonl file."""
    from haven.audit.suites.loader import load_builtin

    suite = load_builtin("paired-countries")
    items = [i for i in suite.items if i.language == "en"][:count]
    rows = [
        {"id": i.item_id, "prompt": i.prompt, "group": i.group, "template": i.template_id, "language": i.language,
         "pair_key": i.pair_key, "target": i.target}
        for i in items
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.timeout(300)
def test_audit_run_with_the_real_model_as_target_and_judge(server: HavenServer, tmp_path: Path) -> None:
    count = 4
    env = server_env(server.home, {"port": server.rsplit(":", 1)[1]})
    suite = _slice_of_builtin_suite(tmp_path / "slice.jsonl", count)
    imported = subprocess.run(
        [*HAVEN, "audit", "suites", "import", str(suite), "--format", "haven-jsonl", "--name", "countries-slice",
         "--replace"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    run = subprocess.run(
        [*HAVEN, "audit", "run", "--target", REAL_MODEL_NAME, "--suite", "countries-slice", "--judge",
         REAL_MODEL_NAME, "--max-tokens", "48", "-c", "2"],
        env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.strip().removeprefix("run ")
    report_path = tmp_path / "report.json"
    report = subprocess.run(
        [*HAVEN, "audit", "report", run_id, "--format", "json", "--out", str(report_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    data = json.loads(report_path.read_text(encoding="utf-8"))
    assert data["counts"]["responses"] == count and data["counts"]["transport_errors"] == 0
    assert data["counts"]["scored"] + data["counts"]["unscored"] == count
    assert data["run"]["judge"]["model"] == REAL_MODEL_NAME


@pytest.mark.timeout(300)
def test_calibrating_the_real_model_as_judge_reports_its_accuracy_and_parse_failures(
    server: HavenServer, tmp_path: Path
) -> None:
    """Issue 13: `haven audit calibrate --judge MODEL` with a model served by Haven. A 135M model is a poor judge;
    what is tested is that its accuracy, κ and parse-failure rate are measured and reported, never assumed."""
    env = server_env(server.home, {"port": server.rsplit(":", 1)[1]})
    out = tmp_path / "calibration.json"
    done = subprocess.run(
        [*HAVEN, "audit", "calibrate", "--judge", REAL_MODEL_NAME, "--language", "en", "--limit", "2",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert REAL_MODEL_NAME in result["judge"]
    assert result["n"] == 6  # 2 answers × 3 gold classes, English
    assert 0.0 <= result["accuracy"] <= 1.0 and -1.0 <= result["kappa"] <= 1.0
    assert 0.0 <= result["parse_failure_rate"] <= 1.0
    assert set(result["per_class"]) == {"COMPLETE", "EVASIVE", "DENIAL"}
    assert "κ=" in done.stdout and "parse failures=" in done.stdout
