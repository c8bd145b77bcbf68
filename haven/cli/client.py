"""`haven run`, `haven ps`, `haven stop`: terminal commands that talk to a running server.

Like Ollama's CLI, these are HTTP clients of the server's Ollama API (``/api/chat``, ``/api/ps``,
``/api/generate`` with ``keep_alive: 0``), so a model loaded for the CLI is shared with every other client.
``haven run`` starts ``haven serve`` in the background (logs in HAVEN_HOME/logs/serve.log) when nothing
answers on the configured host and port.

Output contract of ``haven run``: the answer goes to stdout, the model's thinking to stderr (dimmed on a
terminal), so ``echo hi | haven run MODEL > answer.txt`` captures only the answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import typer
from rich.console import Console

from haven.cli.models import human_size
from haven.errors import HavenError, ModelNotFoundError
from haven.models.names import normalize_name
from haven.settings import Settings, get_settings

DIM = "\x1b[2m"
RESET = "\x1b[0m"
HELP = """Available commands:
  /set parameter NAME VALUE   set an option (temperature, top_p, top_k, num_predict, seed, stop, ...)
  /set system TEXT            set the system message
  /set think | nothink        let the model think, or ask it not to
  /set hidethinking | showthinking   hide or show the model's thinking
  /clear                      forget the conversation
  /bye                        exit
  /?                          this help
Use \"\"\" to begin and end a multi-line message."""
SERVER_START_TIMEOUT = 60.0


class ServerUnavailableError(HavenError):
    status_code = 503
    code = "server_unavailable"


# --- HTTP client ------------------------------------------------------------------------------------


def base_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # a wildcard bind address is reached through loopback
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def http_client(settings: Settings, *, timeout: float | None = 10.0) -> httpx.Client:
    headers = {}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    return httpx.Client(base_url=base_url(settings), headers=headers, timeout=timeout, trust_env=False)


def server_is_up(settings: Settings) -> bool:
    try:
        with http_client(settings, timeout=1.0) as client:
            return client.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


def raise_for_error(response: httpx.Response, model: str | None = None) -> None:
    """Turns an error response ({"error": ...} or OpenAI's shape) into a HavenError with its message."""
    if response.status_code < 400:
        return
    try:
        response.read()
        body = response.json()
        message = body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
    except (ValueError, AttributeError):
        message = None
    message = str(message or f"the server answered HTTP {response.status_code}.")
    if response.status_code == 404 and model is not None:
        raise ModelNotFoundError(message)
    error = HavenError(message)
    error.status_code = response.status_code
    raise error


def start_server(settings: Settings, console: Console) -> None:
    """Starts `haven serve` detached from this terminal and waits until /health answers."""
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "serve.log"
    command = [
        sys.executable,
        "-c",
        "from haven.cli.main import main; main()",
        "serve",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives this terminal; `haven run` exits, the server stays
            env=os.environ.copy(),
        )
    # So the user (and tests) can find and stop the background server: `kill $(cat HAVEN_HOME/serve.pid)`.
    (settings.home / "serve.pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    with console.status(f"starting haven serve on {base_url(settings)} (log: {log_path})", spinner="dots"):
        while time.monotonic() < deadline:
            if server_is_up(settings):
                return
            if process.poll() is not None:
                raise ServerUnavailableError(
                    f"haven serve exited with code {process.returncode} while starting; see {log_path}."
                )
            time.sleep(0.2)
    raise ServerUnavailableError(f"haven serve did not answer within {SERVER_START_TIMEOUT:.0f} s; see {log_path}.")


def ensure_server(settings: Settings, console: Console) -> None:
    if not server_is_up(settings):
        start_server(settings, console)


# --- chat ------------------------------------------------------------------------------------------


@dataclass
class ChatSession:
    """Conversation state of `haven run` and the options `/set` changes."""

    model: str
    system: str | None = None
    think: bool | None = None
    hide_thinking: bool = False
    format: str | None = None
    keep_alive: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def request(self, prompt: str) -> dict[str, Any]:
        history = ([{"role": "system", "content": self.system}] if self.system else []) + self.messages
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [*history, {"role": "user", "content": prompt}],
            "stream": True,
            "options": self.options,
        }
        if self.think is not None:
            body["think"] = self.think
        if self.format:
            body["format"] = self.format
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        return body


def stream_chat(client: httpx.Client, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """NDJSON chunks of /api/chat; an {"error": …} line or an HTTP error becomes a HavenError."""
    with client.stream("POST", "/api/chat", json=body, timeout=httpx.Timeout(10.0, read=None)) as response:
        raise_for_error(response, model=body["model"])
        for line in response.iter_lines():
            if not line.strip():
                continue
            chunk = json.loads(line)
            if "error" in chunk:
                raise HavenError(str(chunk["error"]))
            yield chunk


def print_reply(
    chunks: Iterator[dict[str, Any]], *, hide_thinking: bool, out: TextIO, err: TextIO
) -> tuple[str, dict[str, Any]]:
    """Writes thinking (dimmed, stderr) and content (stdout) as they stream; returns (content, final chunk)."""
    dim = err.isatty()
    content: list[str] = []
    thinking_open = False
    final: dict[str, Any] = {}
    for chunk in chunks:
        message = chunk.get("message") or {}
        thinking = message.get("thinking")
        if thinking and not hide_thinking:
            if not thinking_open:
                err.write((DIM if dim else "") + "Thinking...\n")
                thinking_open = True
            err.write(thinking)
            err.flush()
        text = message.get("content") or ""
        if text:
            if thinking_open:
                err.write("\n...done thinking.\n\n" + (RESET if dim else ""))
                err.flush()
                thinking_open = False
            content.append(text)
            out.write(text)
            out.flush()
        if chunk.get("done"):
            final = chunk
    if thinking_open:
        err.write("\n" + (RESET if dim else ""))
    answer = "".join(content)
    if answer and not answer.endswith("\n"):
        out.write("\n")
    out.flush()
    return answer, final


def parse_value(raw: str) -> Any:
    """`/set parameter` values: JSON when it parses (numbers, lists, true), else the plain string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["temperature=0", "stop=###"]`` → ``{"temperature": 0, "stop": ["###"]}``."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise HavenError(f"--option {pair!r} is not KEY=VALUE (for example temperature=0.2).")
        value = parse_value(raw)
        if key.strip() == "stop":
            options.setdefault("stop", []).extend(value if isinstance(value, list) else [str(value)])
        else:
            options[key.strip()] = value
    return options


def handle_command(line: str, session: ChatSession, out: TextIO) -> bool:
    """Runs one slash command; returns False when the session should end."""
    words = line.split(maxsplit=2)
    command = words[0]
    if command in ("/bye", "/exit"):
        return False
    if command in ("/?", "/help"):
        out.write(HELP + "\n")
    elif command == "/clear":
        session.messages.clear()
        out.write("Cleared session context.\n")
    elif command == "/set" and len(words) >= 2:
        what = words[1]
        rest = words[2] if len(words) > 2 else ""
        if what == "parameter":
            name, _, value = rest.partition(" ")
            if not name or not value.strip():
                out.write("Usage: /set parameter NAME VALUE\n")
            else:
                parsed = parse_value(value.strip())
                if name == "stop":
                    stops = session.options.setdefault("stop", [])
                    stops.extend(parsed if isinstance(parsed, list) else [str(parsed)])
                else:
                    session.options[name] = parsed
                out.write(f"Set parameter '{name}' to '{value.strip()}'\n")
        elif what == "system":
            session.system = rest.strip().strip('"') or None
            out.write("Set system message.\n")
        elif what in ("think", "nothink"):
            session.think = what == "think"
            out.write(f"Set '{what}' mode.\n")
        elif what in ("hidethinking", "showthinking"):
            session.hide_thinking = what == "hidethinking"
            out.write(f"Set '{what}' mode.\n")
        elif what == "format" and rest.strip() in ("json", ""):
            session.format = rest.strip() or None
            out.write(f"Set format to '{rest.strip() or 'text'}'.\n")
        else:
            out.write(f"Unknown /set option '{what}'. Type /? for help.\n")
    else:
        out.write(f"Unknown command '{command}'. Type /? for help.\n")
    return True


def _history_file(settings: Settings) -> Path:
    return settings.home / "history"


def _setup_readline(settings: Settings) -> Any:
    try:
        import readline
    except ImportError:  # pragma: no cover - non-GNU platforms
        return None
    path = _history_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(1000)
    return readline


def read_message(prompt: str) -> str:
    line = input(prompt)
    if not line.startswith('"""'):
        return line
    # Multi-line: everything up to the closing triple quote.
    parts = [line[3:]]
    while not parts[-1].endswith('"""'):
        parts.append(input("... "))
    parts[-1] = parts[-1][:-3]
    return "\n".join(parts).strip()


def interactive(session: ChatSession, client: httpx.Client, settings: Settings) -> None:
    out, err = sys.stdout, sys.stderr
    readline = _setup_readline(settings)
    out.write("Type /? for help, /bye to exit.\n")
    try:
        while True:
            try:
                line = read_message(">>> ").strip()
            except EOFError:
                out.write("\n")
                break
            except KeyboardInterrupt:
                out.write("\nUse Ctrl+D or /bye to exit.\n")
                continue
            if not line:
                continue
            if line.startswith("/"):
                if not handle_command(line, session, out):
                    break
                continue
            try:
                answer, _ = print_reply(
                    stream_chat(client, session.request(line)), hide_thinking=session.hide_thinking, out=out, err=err
                )
            except KeyboardInterrupt:
                # Closing the stream makes the server cancel the generation and free the slot.
                out.write(RESET + "\n")
                continue
            except HavenError as exc:
                err.write(f"error: {exc.message}\n")
                continue
            out.write("\n")
            session.messages += [{"role": "user", "content": line}, {"role": "assistant", "content": answer}]
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(_history_file(settings))


# --- commands ------------------------------------------------------------------------------------------


def run(
    model: str = typer.Argument(..., help="Model name, e.g. haven-demo:tiny."),
    prompt: list[str] | None = typer.Argument(None, help="One-shot prompt; omit for an interactive chat."),
    system: str | None = typer.Option(None, "--system", help="System message."),
    think: bool | None = typer.Option(None, "--think/--no-think", help="Ask the model to think (or not)."),
    hide_thinking: bool = typer.Option(False, "--hide-thinking", help="Do not print the model's thinking."),
    format: str | None = typer.Option(None, "--format", help="'json' for JSON output."),
    keep_alive: str | None = typer.Option(None, "--keep-alive", help="How long the model stays loaded, e.g. 10m."),
    option: list[str] | None = typer.Option(
        None, "--option", "-o", help="Model option KEY=VALUE (repeatable), e.g. -o temperature=0 -o num_predict=64."
    ),
) -> None:
    """Chat with a model: interactive, or one-shot when PROMPT or stdin is given."""
    settings = get_settings()
    ensure_server(settings, Console(stderr=True))
    session = ChatSession(
        model=model,
        system=system,
        think=think,
        hide_thinking=hide_thinking,
        format=format,
        keep_alive=keep_alive,
        options=parse_options(option or []),
    )
    text = " ".join(prompt or [])
    piped = not sys.stdin.isatty()
    if piped:
        stdin_text = sys.stdin.read().strip()
        text = f"{text}\n\n{stdin_text}".strip() if text else stdin_text
    with http_client(settings) as client:
        if text or piped:
            if not text:
                raise HavenError("the prompt is empty (nothing on stdin and no PROMPT argument).")
            print_reply(
                stream_chat(client, session.request(text)), hide_thinking=hide_thinking, out=sys.stdout, err=sys.stderr
            )
            return
        # Fail fast on an unknown model before showing a prompt: an empty chat loads (or 404s) the model.
        raise_for_error(client.post("/api/chat", json={"model": model, "messages": []}, timeout=None), model=model)
        interactive(session, client, settings)


def _until(expires_at: str) -> str:
    if expires_at.startswith("2318"):
        return "Forever"
    return expires_at.replace("T", " ").split(".")[0].rstrip("Z") + " UTC"


def _kv_per_slot(model: dict[str, Any]) -> str:
    """``12.6 MB q8_0``: the KV cache one slot holds at full context, and its type ("-": not reported,
    e.g. by Ollama itself)."""
    size, kind = model.get("kv_bytes_per_slot"), model.get("kv_cache_type")
    if not isinstance(size, int) or not size or not kind:
        return "-"
    return f"{human_size(size)} {kind}"


def ps() -> None:
    """List the models the running server has loaded."""
    settings = get_settings()
    if not server_is_up(settings):
        typer.echo(f"No server is running at {base_url(settings)}; no models are loaded.")
        return
    with http_client(settings) as client:
        response = client.get("/api/ps")
        raise_for_error(response)
        models = response.json()["models"]
    rows = [("NAME", "ID", "SIZE", "CONTEXT", "SLOTS", "KV/SLOT", "UNTIL")]
    for m in models:
        rows.append(
            (
                m["name"],
                (m.get("digest") or "")[:12],
                human_size(int(m.get("size") or 0)),
                str(m.get("context_length", "")),
                str(m.get("slots", "-")),
                _kv_per_slot(m),
                _until(m.get("expires_at", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("    ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def stop(model: str = typer.Argument(..., help="Loaded model to unload.")) -> None:
    """Unload a model from the running server now."""
    settings = get_settings()
    if not server_is_up(settings):
        raise ServerUnavailableError(f"no server is running at {base_url(settings)}.")
    with http_client(settings) as client:
        response = client.get("/api/ps")
        raise_for_error(response)
        loaded = {m["name"] for m in response.json()["models"]}
        # `haven stop qwen` stops qwen:latest, as the store spells names in full.
        name = model if model in loaded else normalize_name(model)
        if name not in loaded:
            raise HavenError(f"model '{model}' is not loaded (see `haven ps`).")
        response = client.post("/api/generate", json={"model": name, "keep_alive": 0}, timeout=60.0)
        raise_for_error(response, model=model)
    typer.echo(f"Stopped {name}.")


def register(app: typer.Typer) -> None:
    """Registers run / ps / stop."""
    app.command("run")(run)
    app.command("ps")(ps)
    app.command("stop")(stop)
