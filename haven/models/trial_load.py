"""Trial load: open a new model file with llama.cpp in a child process before the store accepts it.

llama.cpp validates much of a GGUF only while loading it, and some of its checks are ``GGML_ASSERT``s
that abort the whole process (SIGABRT). A file that would do that must never reach the server, so every
new blob is first loaded here in a throwaway child: the model, a small context, one tokenization and one
decoded token (the decode builds the compute graph, where shape mismatches assert). The child's fate
becomes one line: ``None`` when it worked, else the reason (llama.cpp's own error line when it printed
one, the signal when it died, the time limit when it hung).

The child is ``python -m haven.models.trial_load PATH``: a fresh interpreter (no fork of a threaded
server), core dumps off, llama.cpp's log on its stderr (read back into a temp file, tail only).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_TIMEOUT = 300.0  # a cold multi-GB file is paged in once by the decode; tiny ones take a second
_TAIL_BYTES = 64 << 10
_ERROR_LINE = re.compile(r"error loading model.*|\berror\b.*|\bfailed\b.*", re.I)


def trial_load(path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Load ``path`` in a child process; ``None`` if llama.cpp took it, else one line saying why not."""
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "haven.models.trial_load", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=timeout,
                preexec_fn=_child_limits,  # noqa: PLW1509 — only resource limits, no locks taken
                env={**os.environ, "PYTHONFAULTHANDLER": ""},
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"llama.cpp did not finish loading it within {timeout:.0f} s"
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - _TAIL_BYTES))
        stderr = log.read().decode("utf-8", errors="replace")
    result = _last_json(proc.stdout.decode("utf-8", errors="replace"))
    if proc.returncode == 0 and result.get("ok") is True:
        return None
    reason = _error_line(stderr) or str(result.get("error") or "") or None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return f"llama.cpp crashed loading it ({name}{': ' + reason if reason else ''})"
    return f"llama.cpp could not load it ({reason or f'exit status {proc.returncode}'})"


def _child_limits() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _last_json(stdout: str) -> dict[str, object]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _error_line(stderr: str) -> str | None:
    """The most telling line llama.cpp wrote: an assertion, else the last error it logged."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in ("GGML_ASSERT", "error loading model: "):
        for line in lines:
            if marker in line:
                return _short(" ".join(line[line.index(marker) :].removeprefix("error loading model: ").split()))
    for line in reversed(lines):
        if " - kv " in line or " - type " in line:  # the metadata dump (a template may say "error")
            continue
        match = _ERROR_LINE.search(line)
        if match:
            return _short(match.group(0).strip())
    return None


def _short(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _child(path: str) -> int:
    """Runs in the child: load, tokenize, decode one token; print {"ok": true} or {"error": "..."}."""
    from haven.engine.llama_backend import LlamaBackend

    try:
        backend = LlamaBackend(path, context_length=64, parallel=1, batch_size=16, threads=1, verbose=True)
        tokens = backend.tokenize("Hello", add_special=True, parse_special=False)[:8] or [0]
        batch = backend.batch
        batch.clear()
        for pos, token in enumerate(tokens):
            batch.add(token, pos, 0, pos == len(tokens) - 1)
        status = backend.decode(batch)
        if status != 0:
            raise RuntimeError(f"decoding a token failed with status {status}")
        backend.close()
    except Exception as exc:  # noqa: BLE001 — any failure is the answer, reported as one line
        print(json.dumps({"error": _short(" ".join(str(exc).split()) or type(exc).__name__)}), flush=True)
        return 1
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
