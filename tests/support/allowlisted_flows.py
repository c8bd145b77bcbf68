"""Haven with one allowlisted upstream, watched from outside: every connect() must go to loopback or that upstream.

Run inside a network namespace (tests/support/netns.py) that has two extra addresses on its loopback interface,
standing in for two other machines: ``UPSTREAM`` (198.51.100.7) runs a vLLM-dialect upstream, configured in
``upstreams.yaml`` and allowlisted (``HAVEN_EGRESS=allowlist``, ``HAVEN_EGRESS_ALLOW``); ``DECOY`` (198.51.100.8)
runs a listener Haven has no business with. Arguments: ``HOME TRACE_DIR``. Starts ``haven serve`` under
``strace -f -e trace=connect``, chats with the upstream's model through the OpenAI API (plain and streamed) and
the Ollama API, and, from inside the server process, tries the decoy (as a plugin or template might). Prints one
JSON line with what each flow returned.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.sovereign_flows import HAVEN, server_with_probe

UPSTREAM, DECOY = "198.51.100.7", "198.51.100.8"
UPSTREAM_PORT, DECOY_PORT, HAVEN_PORT = 8712, 8713, 8714
FAKE_UPSTREAM = f"""
import uvicorn
from tests.support.fake_vllm import build_app
uvicorn.run(build_app("gpu1", ["remote-model"]), host="{UPSTREAM}", port={UPSTREAM_PORT}, log_level="warning")
"""
SERVER_WITH_PROBE = server_with_probe(HAVEN_PORT, DECOY, DECOY_PORT)


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not start:\n" + log.read_text(errors="replace"))
        time.sleep(0.2)


def main() -> None:
    home, traces = Path(sys.argv[1]), Path(sys.argv[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env.update({"HAVEN_HOME": str(home), "HAVEN_PORT": str(HAVEN_PORT), "HAVEN_EGRESS": "allowlist",
                "HAVEN_EGRESS_ALLOW": f"{UPSTREAM}:{UPSTREAM_PORT}"})
    decoy = socket.create_server((DECOY, DECOY_PORT))  # reachable: a refusal is the guard's, not the network's
    socket.create_connection((DECOY, DECOY_PORT), timeout=2).close()
    upstream_log = home / "upstream.log"
    home.mkdir(parents=True, exist_ok=True)
    upstream = subprocess.Popen([sys.executable, "-c", FAKE_UPSTREAM], stdout=upstream_log.open("wb"),
                                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    serve_log = home / "serve.log"
    server: subprocess.Popen[bytes] | None = None
    results: dict[str, object] = {}
    deadline = time.monotonic() + 120
    try:
        _wait(f"http://{UPSTREAM}:{UPSTREAM_PORT}/health", upstream, upstream_log, deadline)
        subprocess.run([*HAVEN, "upstreams", "add", "gpu1", "--url", f"http://{UPSTREAM}:{UPSTREAM_PORT}/v1",
                        "--kind", "vllm"], env=env, check=True, capture_output=True)
        probe_file = home / "probe.txt"
        trace = ["strace", "-f", "-qq", "-e", "trace=connect,accept,accept4", "-o", str(traces / "serve.strace")]
        server = subprocess.Popen([*trace, sys.executable, "-c", SERVER_WITH_PROBE, str(probe_file)], env=env,
                                  stdout=serve_log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{HAVEN_PORT}"
        _wait(base + "/health", server, serve_log, deadline)
        import ollama
        import openai

        client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
        results["models"] = sorted(m.id for m in client.models.list().data)
        chat = client.chat.completions.create(model="remote-model", messages=[{"role": "user", "content": "hi"}])
        results["openai_chat"] = chat.choices[0].message.content
        stream = client.chat.completions.create(model="remote-model", stream=True,
                                                messages=[{"role": "user", "content": "hi"}])
        results["openai_stream"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        results["ollama_chat"] = ollama.Client(host=base).chat(
            model="remote-model", messages=[{"role": "user", "content": "hi"}]).message.content
        while not probe_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        results["probe"] = probe_file.read_text() if probe_file.exists() else "no probe result"
        results["upstream_received"] = len(httpx.get(f"http://{UPSTREAM}:{UPSTREAM_PORT}/control").json()["received"])
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)  # strace and the server it traces: the whole group
            server.wait(timeout=30)
        upstream.terminate()
        upstream.wait(timeout=30)
        decoy.close()
    results["serve_log_refusals"] = serve_log.read_text(errors="replace").count("egress refused")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
