"""Append, read and verify the hash-chained security log.

Each row's ``mac`` is HMAC-SHA256 under a log key over the previous row's mac and the row's canonical
JSON (seq, time, event, user, client, details). Editing a row breaks its mac; deleting one breaks the
next row's chain (and leaves a gap in ``seq``); swapping two breaks both. The log key lives in
``HAVEN_HOME/security-log.key`` (mode 0600), outside the database, so someone who can write the
database (a PostgreSQL operator, a copied file) cannot forge a consistent chain. Truncating the newest
rows is detected only against the head recorded in ``HAVEN_HOME/security-log.head``.

Details never hold conversation content: values are clipped to short strings, numbers and booleans.

Two ways in: :meth:`SecurityLog.append` writes its row before it returns (logins, keys, deletions);
:meth:`SecurityLog.append_soon` queues it for a writer thread that puts everything queued within
``LINGER_SECONDS`` into one transaction (the row per chat request: under load one commit serves many
requests, and no request waits on a thread hop for its own). Reads, verification and ``append`` first
write what is queued, so this process always sees its own rows in order; ``close`` writes the rest.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, insert, select, text
from sqlalchemy.orm import Session

from haven.storage.db import Database
from haven.storage.models import SecurityLogEntry

EVENTS = frozenset(
    {
        "setup",
        "login",
        "login_failed",
        "logout",
        "password_changed",
        "password_reset",
        "recovery_code_reset",
        "key_created",
        "key_revoked",
        "key_rotated",
        "user_created",
        "user_changed",
        "user_deleted",
        "model_imported",
        "model_pulled",
        "model_removed",
        "conversation_exported",
        "conversation_deleted",
        "chat_request",
        "retention_deleted",
        "egress_refused",
        "redaction",
    }
)
GENESIS = "0" * 64
LINGER_SECONDS = 0.025
"""How long the writer waits after the first queued row for others to share its transaction."""
MAX_BATCH = 512
"""Rows written in one transaction at most."""
log = logging.getLogger("haven.securitylog")
_lock = threading.Lock()
_head_lock = threading.Lock()
# Built once: every chat request appends a row, and SQLAlchemy's compiled cache is keyed on these objects.
_NEWEST = select(SecurityLogEntry.seq, SecurityLogEntry.mac).order_by(SecurityLogEntry.seq.desc()).limit(1)
_INSERT = insert(SecurityLogEntry)


@dataclass(frozen=True)
class LogEntry:
    seq: int
    at: datetime
    event: str
    user: str | None
    client: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class _Row:
    """A row before its place in the chain (seq and mac) is known."""

    at: datetime
    event: str
    user: str | None
    client: str | None
    details: dict[str, Any]


def _clean(details: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if isinstance(value, bool | int | float) or value is None:
            out[str(key)[:50]] = value
        else:
            out[str(key)[:50]] = str(value)[:500]
    return out


def _canonical(seq: int, at: datetime, event: str, user: str | None, client: str | None, details: Any) -> bytes:
    stamp = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps([seq, stamp, event, user, client, details], sort_keys=True, separators=(",", ":")).encode()


def _mac(key: bytes, prev: str, payload: bytes) -> str:
    return hmac.new(key, prev.encode() + payload, hashlib.sha256).hexdigest()


class SecurityLog:
    def __init__(self, db: Database, home: Path) -> None:
        self.db = db
        self.home = home
        self._key_bytes: bytes | None = None
        self._head_fd: int | None = None
        # The queue of append_soon: rows, how many were queued and written in all, and the writer thread.
        self._queue: list[_Row] = []
        self._queued = 0
        self._written = 0
        self._hurry = False
        self._closing = False
        self._writer: threading.Thread | None = None
        self._changed = threading.Condition()

    def _key(self) -> bytes:
        # Read once per log: the key never changes while Haven runs (every chat request appends a row).
        if self._key_bytes is None:
            self._key_bytes = self._read_key()
        return self._key_bytes

    def _read_key(self) -> bytes:
        path = self.home / "security-log.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path.read_bytes()
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
        return path.read_bytes()

    def append(
        self,
        name: str,
        *,
        user: str | None = None,
        client: str | None = None,
        details: Mapping[str, Any] | None = None,
        session: Session | None = None,
    ) -> int:
        """Writes the row (after any queued by :meth:`append_soon`) and returns its seq. With ``session``, the
        row is part of that transaction and the head moves when it commits."""
        row = self._row(name, user, client, details)
        if session is not None:
            with _lock:
                seq, mac = self._append_rows(session, self._key(), [row])
                # The head file moves only once the row is durable (a rolled-back append leaves no trace).
                event.listen(session, "after_commit", lambda _session: self._write_head(seq, mac), once=True)
                return seq
        written = self._write_queued(also=row)
        assert written is not None  # a row was given: it has a seq, or the write raised
        return written

    def append_soon(
        self,
        name: str,
        *,
        user: str | None = None,
        client: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Queues the row (its time is now) for the writer thread, which writes it within ``LINGER_SECONDS``
        in one transaction with whatever else is queued. A failed write is logged, not raised."""
        row = self._row(name, user, client, details)
        with self._changed:
            closing = self._closing
            if not closing:
                self._queue.append(row)
                self._queued += 1
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_forever, name="security-log", daemon=True)
                    self._writer.start()
                    atexit.register(self.close)  # a queued row is written before the process exits
                self._changed.notify_all()
        if closing:  # shut down: nobody would write it later
            try:
                self._write_queued(also=row)
            except Exception:  # noqa: BLE001 - as from the writer: logged, not raised
                log.exception("could not write a security-log row")

    def flush(self, timeout: float = 10.0) -> None:
        """Returns once every row queued before the call is written (or failed and was logged)."""
        with self._changed:
            target = self._queued
            if self._writer is None or self._written >= target:
                return
            self._hurry = True
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._written >= target, timeout)

    def _row(self, name: str, user: str | None, client: str | None, details: Mapping[str, Any] | None) -> _Row:
        if name not in EVENTS:
            raise ValueError(f"unknown security-log event {name!r}")
        return _Row(datetime.now(UTC), name, user[:64] if user else None, client[:100] if client else None,
                    _clean(details))

    def _write_forever(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or self._closing)
                if not self._queue:
                    return  # closing, and everything is written
                # Let the rows of the next few milliseconds share this transaction.
                self._changed.wait_for(lambda: self._hurry or self._closing or len(self._queue) >= MAX_BATCH,
                                       LINGER_SECONDS)
                self._hurry = False
            self._write_queued()  # a failure is logged there: the writer outlives a database outage

    def _write_queued(self, also: _Row | None = None) -> int | None:
        """Writes the queued rows (and ``also`` after them) in one transaction; the seq of the last one."""
        with _lock:
            with self._changed:
                taken, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            rows = [*taken, also] if also is not None else taken
            try:
                if not rows:
                    return None
                # A Core transaction, not an ORM session: rows need no unit of work, and one is appended per
                # chat request (1.1 ms of CPU per row with the ORM).
                with self.db.engine.begin() as connection:
                    seq, mac = self._append_rows(connection, self._key(), rows)
                self._write_head(seq, mac)  # committed: the rows are durable
                return seq
            except Exception:
                if also is None:  # the writer's batch: said here (before flush returns), not raised
                    log.exception("could not write %d queued security-log rows; they are lost", len(taken))
                    return None
                if taken:  # the caller hears of its own row; the queued ones are said here
                    log.error("%d queued security-log rows were lost with a failed append", len(taken))
                raise
            finally:
                with self._changed:
                    self._written += len(taken)
                    self._changed.notify_all()

    def _append_rows(self, s: Session | Connection, key: bytes, rows: list[_Row]) -> tuple[int, str]:
        if self.db.engine.dialect.name == "postgresql":  # one appender at a time across processes
            s.execute(text("SELECT pg_advisory_xact_lock(7263)"))
        last = s.execute(_NEWEST).first()
        seq, mac = (last[0], last[1]) if last else (0, GENESIS)
        params = []
        for row in rows:
            seq += 1
            mac = _mac(key, mac, _canonical(seq, row.at, row.event, row.user, row.client, row.details))
            params.append({"seq": seq, "at": row.at, "event": row.event, "user_name": row.user,
                           "client": row.client, "details": row.details, "mac": mac})  # fmt: skip
        s.execute(_INSERT, params)
        return seq, mac

    def _write_head(self, seq: int, mac: str) -> None:
        """Record the newest row in ``security-log.head``.

        The record has a fixed width (zero-padded seq), so after the file is first put in place
        atomically (rename) each append overwrites it with one ``pwrite`` of 86 bytes at offset 0,
        inside one disk sector: a crash leaves the old record or the new one. Creating and renaming a
        file per append cost more than the rest of the append on an overlay filesystem, and it runs
        once per chat request.
        """
        record = f"{seq:020d} {mac}\n".encode("ascii")
        path = self.home / "security-log.head"
        with _head_lock:
            fd = self._head_fd
            try:
                # Another process (a CLI command) may have put a new file in place: write that one.
                current = fd is not None and os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if fd is not None and current:
                os.pwrite(fd, record, 0)
                return
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(record)
            os.replace(tmp, path)
            if fd is not None:
                os.close(fd)
            self._head_fd = os.open(path, os.O_WRONLY)

    def close(self) -> None:
        """Writes what is queued, stops the writer, and closes the head file."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        writer = self._writer
        if writer is not None:
            atexit.unregister(self.close)  # closed: the registry need not keep this log (and its engine) alive
            if writer is not threading.current_thread():
                writer.join(timeout=30)
        with _head_lock:
            if self._head_fd is not None:
                os.close(self._head_fd)
                self._head_fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_head_fd", None)
        if fd is not None:
            os.close(fd)

    def entries(
        self,
        *,
        user: str | None = None,
        since: datetime | None = None,
        event: str | None = None,
        before_seq: int | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[LogEntry]:
        query = select(SecurityLogEntry)
        if user is not None:
            query = query.where(SecurityLogEntry.user_name == user)
        if since is not None:
            query = query.where(SecurityLogEntry.at >= since)
        if event is not None:
            query = query.where(SecurityLogEntry.event == event)
        if before_seq is not None:
            query = query.where(SecurityLogEntry.seq < before_seq)
        order = SecurityLogEntry.seq.desc() if newest_first else SecurityLogEntry.seq
        self.flush()
        with self.db.session() as s:
            rows = s.scalars(query.order_by(order).limit(limit)).all()
            return [
                LogEntry(
                    r.seq,
                    r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC),
                    r.event,
                    r.user_name,
                    r.client,
                    dict(r.details or {}),
                )
                for r in rows
            ]

    def verify(self) -> tuple[int, list[tuple[int, str]]]:
        """(rows checked, [(seq, problem)]): an empty list means the chain is intact."""
        self.flush()
        key = self._key()
        problems: list[tuple[int, str]] = []
        prev, expected, count = GENESIS, 1, 0
        with self.db.session() as s:
            for row in s.scalars(select(SecurityLogEntry).order_by(SecurityLogEntry.seq)).yield_per(1000):
                count += 1
                if row.seq != expected:
                    problems.append((row.seq, f"rows {expected}..{row.seq - 1} are missing"))
                payload = _canonical(row.seq, row.at, row.event, row.user_name, row.client, row.details)
                if not hmac.compare_digest(_mac(key, prev, payload), row.mac):
                    problems.append((row.seq, "the row was edited, moved, or the row before it removed"))
                prev, expected = row.mac, row.seq + 1
        head = self.home / "security-log.head"
        if head.exists():
            seq_text, _, mac = head.read_text(encoding="ascii").strip().partition(" ")
            if seq_text.isdigit() and int(seq_text) >= expected:
                problems.append((int(seq_text), f"the newest rows up to {int(seq_text)} are missing"))
            elif seq_text.isdigit() and int(seq_text) == expected - 1 and mac != prev:
                problems.append((int(seq_text), "the newest row differs from the recorded head"))
        return count, problems


def record(
    db: Database | Session,
    event: str,
    *,
    user: str | None = None,
    client: str | None = None,
    details: Mapping[str, Any] | None = None,
    home: Path | None = None,
) -> int:
    """Appends one event; ``db`` is a Database or a Session inside its transaction. Returns its seq."""
    if home is None:
        from haven.settings import get_settings

        home = get_settings().home
    if isinstance(db, Session):
        return SecurityLog(Database(engine=db.get_bind(), sessions=None), home).append(  # type: ignore[arg-type]
            event, user=user, client=client, details=details, session=db
        )
    return SecurityLog(db, home).append(event, user=user, client=client, details=details)


def verify(db: Database, home: Path) -> tuple[int, list[tuple[int, str]]]:
    return SecurityLog(db, home).verify()
