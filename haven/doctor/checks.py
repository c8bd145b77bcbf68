"""The posture checks behind ``haven doctor``, one small function per concern.

A check reads settings, files and the database and never writes. "Leaves the machine" always means a
destination that is not loopback: a configured egress destination, a PostgreSQL server on another host, an
audit run whose target was elsewhere.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import math
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from haven import __version__
from haven.egress.policy import LOOPBACK_NAMES, parse_destination
from haven.egress.telemetry import TELEMETRY_SWITCHES
from haven.errors import HavenError
from haven.models.store import ModelStore
from haven.settings import Settings

Status = Literal["ok", "warn", "fail"]
MIN_PUBLIC_KEY_LENGTH = 32


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def is_loopback_host(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> list[Finding]:
    if is_loopback_host(settings.host):
        return [Finding("bind", "ok", f"serving on {settings.host}:{settings.port} (loopback only)")]
    if settings.api_key is None:
        return [Finding("bind", "fail", f"{settings.host} is reachable from the network and no API key is set",
                        "set HAVEN_API_KEY to a long random key, or HAVEN_HOST=127.0.0.1")]
    return [Finding("bind", "warn", f"serving on {settings.host}:{settings.port}: reachable from the network, "
                    "every route but /health needs a key", "bind to 127.0.0.1 unless other machines must connect")]


def key_strength_bits(key: str) -> float:
    """Upper bound of a key's entropy: its length × log2 of the alphabet its characters come from."""
    alphabet = 0
    alphabet += 26 if any(c.islower() for c in key) else 0
    alphabet += 26 if any(c.isupper() for c in key) else 0
    alphabet += 10 if any(c.isdigit() for c in key) else 0
    alphabet += 32 if any(not c.isalnum() for c in key) else 0
    return len(key) * math.log2(alphabet) if alphabet else 0.0


def check_api_key(settings: Settings) -> list[Finding]:
    if settings.api_key is None:
        return [Finding("api key", "ok", "no shared API key (loopback, local mode)")]
    key = settings.api_key.get_secret_value()
    public = not is_loopback_host(settings.host)
    if len(key) < MIN_PUBLIC_KEY_LENGTH or key_strength_bits(key) < 128 or len(set(key)) < 8:
        return [Finding("api key", "fail" if public else "warn",
                        f"HAVEN_API_KEY is weak ({len(key)} characters, ≤ {key_strength_bits(key):.0f} bits)",
                        "use a random key of ≥ 32 characters (`haven keys create`, or "
                        "python -c 'import secrets; print(secrets.token_urlsafe(32))')")]
    return [Finding("api key", "ok", f"HAVEN_API_KEY is {len(key)} characters")]


def check_egress(settings: Settings) -> list[Finding]:
    if settings.egress == "deny":
        findings = [Finding("egress", "ok", "deny: the server reaches loopback only (and the hub during a pull)")]
        if settings.egress_allow:
            findings.append(Finding("egress allowlist", "warn",
                                    f"{len(settings.egress_allow)} destination(s) listed but ignored in deny mode",
                                    "set HAVEN_EGRESS=allowlist to use them, or remove HAVEN_EGRESS_ALLOW"))
        return findings
    findings = [Finding("egress", "ok", f"allowlist: loopback plus {len(settings.egress_allow)} destination(s)")]
    for text in settings.egress_allow:
        try:
            destination = parse_destination(text)
        except HavenError as exc:
            findings.append(Finding("egress allowlist", "fail", exc.message, "fix HAVEN_EGRESS_ALLOW"))
            continue
        local = (destination.host is not None and is_loopback_host(destination.host)) or (
            destination.network is not None and _within_loopback(destination.network))
        if not local:
            findings.append(Finding("data leaves", "warn", f"requests may leave this machine for {destination}",
                                    "keep it only if that host is yours; HAVEN_REDACT=outbound masks personal data"))
    return findings


def _within_loopback(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return network.network_address.is_loopback and network.broadcast_address.is_loopback


def check_redaction(settings: Settings) -> list[Finding]:
    if settings.redact == "off" and settings.egress == "allowlist" and settings.egress_allow:
        return [Finding("redaction", "warn", "off, while requests may leave the machine",
                        "set HAVEN_REDACT=outbound")]
    return [Finding("redaction", "ok", f"{settings.redact}")]


def check_database(settings: Settings) -> list[Finding]:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        return [Finding("database", "ok", f"SQLite at {url.split(':///', 1)[-1]} (on this machine)")]
    host = urlsplit(url).hostname or "localhost"
    if is_loopback_host(host) or host.startswith("/"):
        return [Finding("database", "ok", f"PostgreSQL on {host} (this machine)")]
    return [Finding("database", "warn", f"PostgreSQL on {host}: stored data leaves this machine (encrypted where "
                    "Haven encrypts it)", "use TLS (sslmode=verify-full) and a host you control")]


# Files under HAVEN_HOME that hold secrets or user data and must be private to Haven's own user.
PRIVATE_PATTERNS = ("*.db", "*.db-wal", "*.db-shm", "*.key", "*.head", "keys/*", "kv-state/**/*", "secrets/*")


def check_permissions(settings: Settings) -> list[Finding]:
    home = settings.home
    if not home.exists():
        return [Finding("permissions", "ok", f"{home} does not exist yet")]
    findings: list[Finding] = []
    mode = home.stat().st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        findings.append(Finding("permissions", "fail", f"{home} is writable by other users ({stat.filemode(mode)})",
                                f"chmod 700 {home}"))
    for path in _private_files(home):
        file_mode = path.stat().st_mode
        if file_mode & (stat.S_IRWXG | stat.S_IRWXO):
            findings.append(Finding("permissions", "fail", f"{path} is accessible to other users "
                                    f"({stat.filemode(file_mode)})", f"chmod 600 {path}"))
    return findings or [Finding("permissions", "ok", f"secrets and data under {home} are private to their owner")]


def _private_files(home: Path) -> Iterable[Path]:
    seen: set[Path] = set()
    for pattern in PRIVATE_PATTERNS:
        for path in home.glob(pattern):
            if path.is_file() and path not in seen:
                seen.add(path)
                yield path


def check_models(settings: Settings, *, verify_hashes: bool = True) -> list[Finding]:
    store = ModelStore.from_settings(settings)
    try:
        manifests = store.list()
    except HavenError as exc:
        return [Finding("models", "fail", exc.message, "see `haven models list`")]
    if not manifests:
        return [Finding("models", "ok", "no models in the store")]
    findings: list[Finding] = []
    for manifest in manifests:
        if verify_hashes and not store.verify(manifest.name):
            findings.append(Finding("model hash", "fail", f"{manifest.name}: the blob is missing or its sha256 no "
                                    "longer matches the manifest",
                                    f"haven models rm {manifest.name}, then import or pull it again"))
        if not manifest.template_safe:
            findings.append(Finding("template scan", "warn", f"{manifest.name}: chat template accepted despite the "
                                    f"scan ({manifest.template_warning or 'unsafe'})",
                                    "keep only if you trust its source; it still renders sandboxed"))
    hashed = "verified" if verify_hashes else "not re-hashed (--quick)"
    return findings or [
        Finding("models", "ok", f"{len(manifests)} model(s), hashes {hashed}, templates passed the scan")]


def check_audit_targets(settings: Settings) -> list[Finding]:
    """Audit runs whose target endpoint was not on this machine (their prompts left it)."""
    url = settings.effective_database_url
    if url.startswith("sqlite") and not (settings.home / "haven.db").exists() and settings.database_url is None:
        return [Finding("audit targets", "ok", "no audit run stored")]
    try:
        from sqlalchemy import select

        from haven.storage.db import open_database
        from haven.storage.models import AuditRun

        db = open_database(url, upgrade=False)  # doctor reads; it never migrates
        try:
            with db.session() as session:
                endpoints = sorted(set(session.scalars(select(AuditRun.endpoint))))
        finally:
            db.close()
    except Exception as exc:  # a database doctor cannot read is itself a finding, not a crash
        return [Finding("audit targets", "warn", f"could not read audit runs ({type(exc).__name__})",
                        "run `haven db upgrade`")]
    remote = [e for e in endpoints if e and not is_loopback_host(urlsplit(e).hostname or "localhost")]
    if remote:
        return [Finding("data leaves", "warn", f"audit runs sent their prompts to {', '.join(remote)}",
                        "audit models served on this machine, or accept that suite prompts left it")]
    return [Finding("audit targets", "ok", f"{len(endpoints)} audit endpoint(s), all on this machine")]


def check_upstreams(settings: Settings) -> list[Finding]:
    """Configured remote upstreams: each one on another machine receives chats (said in red)."""
    from haven.chat.upstreams import UpstreamsFile

    try:
        upstreams = UpstreamsFile.load(settings.home).upstreams
    except HavenError as exc:
        return [Finding("upstreams", "fail", exc.message, f"fix {settings.home / 'upstreams.yaml'}")]
    if not upstreams:
        return [Finding("upstreams", "ok", "none configured: every model runs on this machine")]
    findings = [Finding("upstreams", "ok", f"{len(upstreams)} configured")]
    for upstream in upstreams:
        if not is_loopback_host(upstream.host):
            masked = "personal data masked" if settings.redact != "off" else "NOT masked (HAVEN_REDACT=off)"
            findings.append(Finding("data leaves", "warn", f"chats for {', '.join(upstream.models) or 'its models'} "
                                    f"go to upstream {upstream.name} at {upstream.host} ({masked})",
                                    "keep it only if that machine is yours; `haven upstreams remove "
                                    f"{upstream.name}` otherwise"))
    return findings


def check_conversation_encryption(settings: Settings) -> list[Finding]:
    """How stored conversations are keyed: per-user credential-wrapped keys, or the local single-user key file."""
    key_file = settings.home / "local-data.key"
    users = _count_users(settings)
    if users:
        return [Finding("encryption", "ok", f"conversations of {users} user(s) are AES-256-GCM encrypted under "
                        "keys only their own credentials unwrap")]
    if key_file.exists():
        return [Finding("encryption", "ok", "local single-user mode: conversations are encrypted under "
                        f"{key_file.name}, which protects a copied database, not a stolen disk",
                        "create a user (`haven users create NAME --admin`) for credential-wrapped keys")]
    return [Finding("encryption", "ok", "no conversation stored yet")]


def _count_users(settings: Settings) -> int:
    if settings.database_url is None and not (settings.home / "haven.db").exists():
        return 0
    try:
        from sqlalchemy import func, select

        from haven.storage.db import open_database
        from haven.storage.models import User

        db = open_database(settings.effective_database_url, upgrade=False)
        try:
            with db.session() as session:
                return int(session.scalar(select(func.count()).select_from(User)) or 0)
        finally:
            db.close()
    except Exception:  # no users table yet (an older schema): nobody to count
        return 0


def check_telemetry(environ: dict[str, str] | None = None) -> list[Finding]:
    """Installed packages that can report telemetry; `haven serve` sets their opt-outs unless the operator set
    a variable already, so a variable set to anything but "off" is the one way they could still report."""
    env = os.environ if environ is None else environ
    installed = [(dist, variable, value) for dist, variable, value in TELEMETRY_SWITCHES if _installed(dist)]
    names = ", ".join(sorted({d for d, _, _ in installed}))
    findings = [Finding("telemetry", "ok", "no installed dependency reports telemetry" if not installed else
                        f"`haven serve` switches off the telemetry of {names}")]
    for dist, variable, value in installed:
        if variable in env and env[variable] != value:
            findings.append(Finding("telemetry", "warn", f"{variable}={env[variable]} turns {dist}'s telemetry on "
                                    "for Haven's server", f"unset {variable} (or set {variable}={value})"))
    if env.get("DO_NOT_TRACK") not in (None, "1"):
        findings.append(Finding("telemetry", "warn", f"DO_NOT_TRACK={env['DO_NOT_TRACK']}", "unset DO_NOT_TRACK"))
    return findings


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def check_versions() -> list[Finding]:
    try:
        llama = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return [Finding("versions", "fail", f"haven {__version__}; llama-cpp-python is not installed", "make install")]
    return [Finding("versions", "ok", f"haven {__version__}, llama-cpp-python {llama} (llama.cpp vendored)")]


Check = Callable[[Settings], list[Finding]]


def run_checks(settings: Settings, *, verify_hashes: bool = True) -> list[Finding]:
    checks: list[Check] = [
        check_bind, check_api_key, check_egress, check_upstreams, check_redaction, check_database,
        check_conversation_encryption, check_permissions, lambda s: check_models(s, verify_hashes=verify_hashes),
        check_audit_targets, lambda s: check_telemetry(), lambda s: check_versions(),
    ]
    return [finding for check in checks for finding in check(settings)]
