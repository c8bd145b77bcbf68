"""Every user flow of Haven, run end to end, for the sovereignty test to watch from outside.

Run inside a network namespace with only loopback (tests/support/netns.py) with the arguments
``HOME MODEL_GGUF TRACE_DIR``: imports the model, starts ``haven serve`` under ``strace -f -e trace=connect``,
drives chat through the OpenAI and Ollama APIs (streamed and not), embeddings and an audit run (itself under
strace), and, from *inside* the server process, a thread standing in for a plugin or template that tries to
reach 192.0.2.1 (a reserved address no one owns). Prints one JSON line with what each flow returned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def server_with_probe(haven_port: int, host: str, port: int) -> str:
    """A ``python -c`` script: ``haven serve``, plus a thread inside its process that tries ``host:port`` once the
    server answers on ``haven_port`` (an outbound attempt from inside, as a plugin or template might make) and
    writes the outcome to the file named by its first argument."""
    return f"""
import socket, threading, time, sys
def probe():
    # Once the server answers (its start is over, whatever the machine's speed), reach for the outside.
    while True:
        try:
            socket.create_connection(("127.0.0.1", {haven_port}), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    try:
        socket.create_connection(("{host}", {port}), timeout=2).close()
        outcome = "connected"
    except PermissionError as exc:
        outcome = "refused: " + str(exc)
    except OSError as exc:
        outcome = "oserror: " + str(exc)
    open(sys.argv[1], "w").write(outcome)
threading.Thread(target=probe, daemon=True).start()
from haven.cli.main import main
main(["serve"])
"""


SERVER_WITH_PROBE = server_with_probe(8711, "192.0.2.1", 80)
HAVEN = [sys.executable, "-c", "from haven.cli.main import main; main()"]


def main() -> None:
    home, model, traces = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env.update({"HAVEN_HOME": str(home), "HAVEN_THREADS": "1", "HAVEN_PORT": "8711", "HAVEN_DEFAULT_MODEL": "tiny",
                "HAVEN_CONTEXT_LENGTH": "1024", "HAVEN_PARALLEL": "2"})
    subprocess.run([*HAVEN, "models", "import", str(model), "--name", "tiny"], env=env, check=True,
                   capture_output=True)
    probe_file = home / "probe.txt"
    log = open(home / "serve.log", "wb")  # noqa: SIM115 - kept open for the server's lifetime
    trace = ["strace", "-f", "-qq", "-e", "trace=connect,accept,accept4", "-o", str(traces / "serve.strace")]
    server = subprocess.Popen([*trace, sys.executable, "-c", SERVER_WITH_PROBE, str(probe_file)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = "http://127.0.0.1:8711"
    results: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("server did not start:\n" + (home / "serve.log").read_text(errors="replace"))
            time.sleep(0.2)
        import ollama
        import openai

        client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
        chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=8)
        results["openai_chat"] = chat.choices[0].finish_reason
        stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=8, stream=True)
        results["openai_stream_chunks"] = sum(1 for _ in stream)
        results["embedding_dims"] = len(client.embeddings.create(model="tiny", input="hello").data[0].embedding)
        local = ollama.Client(host=base)
        results["ollama_chat"] = local.chat(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                            options={"num_predict": 8}).done_reason
        results["ollama_generate"] = local.generate(model="tiny", prompt="hi", options={"num_predict": 8}).done
        suite = home / "mini.jsonl"
        suite.write_text("".join(json.dumps({"id": f"q{i}", "group": g, "prompt": f"Tell me about {g}."}) + "\n"
                                 for i, g in enumerate(["France", "Kenya", "Peru", "Japan"])), encoding="utf-8")
        subprocess.run([*HAVEN, "audit", "suites", "import", str(suite), "--format", "haven-jsonl", "--name",
                        "mini"], env=env, check=True, capture_output=True)
        audit = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(traces / "audit.strace"),
                                *HAVEN, "audit", "run", "--target", "tiny", "--suite", "mini", "--max-tokens", "8",
                                "--judge", "heuristic", "-c", "1"], env=env, capture_output=True, text=True,
                               timeout=300)
        results["audit_exit"] = audit.returncode
        while not probe_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        results["probe"] = probe_file.read_text() if probe_file.exists() else "no probe result"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # strace and the server it traces: the whole group
        server.wait(timeout=30)
        log.close()
    results["serve_log_refusals"] = (home / "serve.log").read_text(errors="replace").count("egress refused")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
