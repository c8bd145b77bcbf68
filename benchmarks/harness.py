"""The benchmark harness's shared types: what a ``benchmarks/bench_*.py`` module receives and returns.

A benchmark module exposes ``run(ctx: BenchContext) -> list[Result]``. The runner
(:mod:`benchmarks.run`) builds one :class:`BenchContext` (machine facts, model paths, peer
binaries, thread count, quick/full mode), calls every module, and renders the results as
the table in ``benchmarks/RESULTS.md``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
PEERS_BIN = ROOT / ".peers" / "bin"


@dataclass(frozen=True)
class Result:
    """One row of RESULTS.md.

    ``haven`` and ``peer`` are measurements in ``unit``. The *ratio* is Haven's advantage:
    ``haven / peer`` when higher is better (tokens/s), ``peer / haven`` when lower is better
    (seconds, percent). It passes when ``ratio >= target_ratio``. Rows without a peer (e.g.
    "Python overhead per step") instead compare ``haven`` with ``limit`` (``haven <= limit``
    when lower is better, ``>=`` otherwise). Rows with neither target are informational.
    """

    name: str
    haven: float | None
    peer: float | None
    peer_name: str
    unit: str
    target_ratio: float | None = None
    notes: str = ""
    higher_is_better: bool = True
    limit: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.haven is None or self.peer is None:
            return None
        return ratio(self.haven, self.peer, higher_is_better=self.higher_is_better)

    @property
    def passed(self) -> bool | None:
        """True/False against the target; None when there is no target or no measurement."""
        if self.target_ratio is not None:
            r = self.ratio
            return None if r is None else r >= self.target_ratio
        if self.limit is not None and self.haven is not None:
            return self.haven >= self.limit if self.higher_is_better else self.haven <= self.limit
        return None

    @property
    def target_text(self) -> str:
        if self.target_ratio is not None:
            return f"≥ {self.target_ratio:g}×"
        if self.limit is not None:
            return f"{'≥' if self.higher_is_better else '≤'} {self.limit:g} {self.unit}"
        return ""


def ratio(haven: float, peer: float, *, higher_is_better: bool = True) -> float:
    """Haven's advantage over the peer (>1 is better), whatever the direction of the unit."""
    if higher_is_better:
        return haven / peer if peer else float("inf")
    return peer / haven if haven else float("inf")


@dataclass
class BenchContext:
    """Everything a benchmark module needs, built once by the runner."""

    quick: bool
    threads: int
    machine: dict[str, str]
    bandwidth_bytes_per_s: float
    bench_dir: Path = BENCH_DIR
    peers_bin: Path = PEERS_BIN
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    def model(self, quant: str = "q8_0", *, arch: str = "qwen2", size: str = "0.5b") -> Path:
        """Path of a factory model in ``.bench/``, built on first use (same file for every peer)."""
        path = self.bench_dir / f"{arch}-{size}-{quant}.gguf"
        if not path.exists():
            from haven.models.factory import make_model

            self.bench_dir.mkdir(parents=True, exist_ok=True)
            self.log(f"building {path.name} with the model factory…")
            make_model(path, arch=arch, size=size, quant=quant, template="qwen2.5", seed=0)
        return path

    def peer(self, name: str) -> Path | None:
        """A peer binary from ``make peers`` (``.peers/bin``), or None if it was not built."""
        path = self.peers_bin / name
        return path if path.exists() and os.access(path, os.X_OK) else None

    def ratio(self, haven: float, peer: float, *, higher_is_better: bool = True) -> float:
        return ratio(haven, peer, higher_is_better=higher_is_better)

    def bandwidth_bound_tok_s(self, weight_bytes: int) -> float:
        """Decode ceiling if every token must stream all weights from RAM once."""
        return self.bandwidth_bytes_per_s / weight_bytes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def physical_cores() -> int:
    """Physical cores from /proc/cpuinfo (llama.cpp's default thread count), else os.cpu_count()."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.cpu_count() or 1
    cores = set()
    phys = core = ""
    for line in text.splitlines():
        if line.startswith("physical id"):
            phys = line.split(":")[1].strip()
        elif line.startswith("core id"):
            core = line.split(":")[1].strip()
            cores.add((phys, core))
    return len(cores) or os.cpu_count() or 1


def peer_buffer_flags(tool: str) -> list[str]:
    """The peer's flags for the weight buffers Haven uses on this build, so both run the same kernels: on
    an AMX build Haven keeps weights in plain CPU buffers (the AMX buffer segfaults on a batched decode:
    llama-bench's pp and llama-server's first prompt crash too), and the peers are told the same."""
    from haven.engine.llama_backend import extra_buffer_types_allowed

    if extra_buffer_types_allowed():
        return []
    return ["--repack", "0"] if tool == "llama-bench" else ["--no-repack"]


def machine_info(peers_bin: Path = PEERS_BIN) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    ram = ""
    try:
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        ram = f"{int(m.group(1)) / 2**20:.1f} GiB" if m else ""
    except OSError:
        pass
    import llama_cpp

    from haven.engine.llama_backend import extra_buffer_types_allowed

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": f"{physical_cores()} physical / {os.cpu_count()} logical",
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "llama-cpp-python": llama_cpp.__version__,
        "weight buffers": (
            "repacking allowed" if extra_buffer_types_allowed() else "plain CPU buffers (an AMX build; peers too)"
        ),
    }
    server = peers_bin / "llama-server"
    if server.exists():
        out = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=30)
        m = re.search(r"version: (.+)", out.stdout + out.stderr)
        info["llama.cpp (peers)"] = m.group(1) if m else "unknown"
    try:
        load = os.getloadavg()
        info["load average at start"] = " ".join(f"{x:.2f}" for x in load)
    except OSError:
        pass
    return info


def measure_bandwidth(size_mb: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s: best of ``repeats`` numpy copies (read + write counted)."""
    import numpy as np

    src = np.ones(size_mb * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def which(name: str) -> str | None:
    return shutil.which(name)
