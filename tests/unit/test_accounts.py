"""Accounts, conversations, rotation, retention and the security log at the domain layer, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import select, text, update

from haven.accounts.crypto import DecryptionError
from haven.accounts.passwords import WeakPasswordError, check_password
from haven.accounts.service import (
    Accounts,
    DataLossConfirmationRequired,
    InvalidCredentialsError,
    UserExistsError,
)
from haven.accounts.throttle import LoginThrottle, TooManyAttemptsError
from haven.conversations import rotation
from haven.conversations.store import ConversationStore, TitleTooLongError
from haven.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from haven.securitylog import SecurityLog
from haven.storage.db import Database, current_revision
from haven.storage.models import ApiKey, Conversation, Message, SecurityLogEntry, WebSession
from tests.support.accounts import OTHER_PASSWORD, PASSWORD, accounts_for, open_db, store_for

CANARY = "canary-7f3a9c1e-d2b4-unique"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_db(request, tmp_path)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "haven-home"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def accounts(db: Database, home: Path) -> Accounts:
    return accounts_for(db, home)


@pytest.fixture
def store(db: Database) -> ConversationStore:
    return store_for(db)


def test_schema_is_at_the_newest_revision_with_sqlite_pragmas(db: Database) -> None:
    assert current_revision(db.engine) == "0004"  # accounts (0002), audit languages (0003), shared limits (0004)
    if db.engine.dialect.name == "sqlite":
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA secure_delete")).scalar() == 1
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_password_policy() -> None:
    for weak in ("short", "password1234", "Password123!", "aaaaaaaaaaaaaaaa", "qwertyuiop123"):
        with pytest.raises(WeakPasswordError):
            check_password(weak, min_length=12)
    with pytest.raises(WeakPasswordError, match="user name"):
        check_password("alice-alice-1", name="alice-alice-1")
    check_password(PASSWORD, name="alice")


def test_users_create_duplicate_and_first_is_admin(accounts: Accounts) -> None:
    alice, code = accounts.create_user("alice", PASSWORD)
    assert alice.role == "admin" and len(code.replace("-", "")) == 32
    bob, _ = accounts.create_user("bob", OTHER_PASSWORD)
    assert bob.role == "user"
    with pytest.raises(UserExistsError):
        accounts.create_user("ALICE", OTHER_PASSWORD)
    with pytest.raises(InvalidRequestError):
        accounts.create_user("bad name!", OTHER_PASSWORD)
    with pytest.raises(WeakPasswordError):
        accounts.create_user("carol", "123456")
    assert [u.name for u in accounts.list_users()] == ["alice", "bob"]
    with pytest.raises(Exception, match="last enabled admin"):
        accounts.set_role(alice.id, "user")


def test_login_sessions_and_forged_cookies(accounts: Accounts, db: Database) -> None:
    accounts.create_user("alice", PASSWORD)
    with pytest.raises(InvalidCredentialsError):
        accounts.authenticate_password("alice", "wrong password here")
    with pytest.raises(InvalidCredentialsError):
        accounts.authenticate_password("nobody", PASSWORD)
    unlocked = accounts.authenticate_password("alice", PASSWORD)
    new = accounts.create_session(unlocked, client="127.0.0.1")
    again = accounts.session_from_cookie(new.cookie)
    assert again is not None and again.data_key == unlocked.data_key and again.csrf_token == new.csrf_token
    sid, _, secret = new.cookie.partition(".")
    forged = sid + "." + ("A" if secret[0] != "A" else "B") + secret[1:]
    for bad in (forged, "garbage", "", sid, "x" * 32 + "." + secret):
        assert accounts.session_from_cookie(bad) is None
    # the database alone cannot open the session's wrapped key: it needs the secret only the cookie has
    with db.session() as s:
        row = s.get(WebSession, sid)
        assert row is not None and secret.encode() not in row.wrapped_key
        row.last_seen_at = datetime.now(UTC) - timedelta(days=2)  # idle expiry
    assert accounts.session_from_cookie(new.cookie) is None
    other = accounts.create_session(unlocked)
    accounts.revoke_session(other.unlocked.session_id or "")
    assert accounts.session_from_cookie(other.cookie) is None


def test_api_keys_expiry_revocation(accounts: Accounts, db: Database) -> None:
    accounts.create_user("alice", PASSWORD)
    unlocked = accounts.authenticate_password("alice", PASSWORD)
    info, secret = accounts.create_key(unlocked, label="laptop", expires_days=1)
    assert secret.startswith(info.prefix + "_")
    assert accounts.key_from_bearer(secret) is not None
    with db.session() as s:
        row = s.get(ApiKey, info.id)
        assert row is not None and secret.encode() not in row.secret_hash
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert accounts.key_from_bearer(secret) is None
    _, secret2 = accounts.create_key(unlocked)
    # change a middle character (the last one carries padding bits: changing it may decode to the same secret)
    forged = secret2[:20] + ("A" if secret2[20] != "A" else "B") + secret2[21:]
    assert accounts.key_from_bearer(forged) is None
    accounts.revoke_key(unlocked.user.id, secret2)
    assert accounts.key_from_bearer(secret2) is None
    with pytest.raises(InvalidRequestError):
        accounts.create_key(unlocked, label="x" * 101)


def test_password_change_rewraps_and_reset_rules(accounts: Accounts, store: ConversationStore) -> None:
    accounts.create_user("alice", PASSWORD)
    _, bob_code = accounts.create_user("bob", OTHER_PASSWORD)
    bob = accounts.authenticate_password("bob", OTHER_PASSWORD)
    conv = store.create(bob, title="secret plans")
    accounts.change_password(bob, OTHER_PASSWORD, "brand new lantern 99")
    bob = accounts.authenticate_password("bob", "brand new lantern 99")
    assert store.get(bob, conv.id).title == "secret plans"  # re-wrapped, not re-encrypted
    with pytest.raises(DataLossConfirmationRequired):
        accounts.reset_password(bob.user.id, "reset lantern 12345")
    _, lost, code = accounts.reset_password(bob.user.id, "reset lantern 12345", recovery_code=bob_code)
    assert not lost and code is None
    bob = accounts.authenticate_password("bob", "reset lantern 12345")
    assert store.get(bob, conv.id).title == "secret plans"
    _, lost, code = accounts.reset_password(bob.user.id, "final lantern 12345", confirm_data_loss=True)
    assert lost and code
    bob = accounts.authenticate_password("bob", "final lantern 12345")
    with pytest.raises(NotFoundError):
        store.get(bob, conv.id)


def test_conversations_isolation_tree_paging_search(accounts: Accounts, store: ConversationStore) -> None:
    accounts.create_user("alice", PASSWORD)
    accounts.create_user("bob", OTHER_PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    bob = accounts.authenticate_password("bob", OTHER_PASSWORD)
    ids = [store.create(alice, title=f"talk {i} {'apple' if i % 3 == 0 else 'pear'}").id for i in range(7)]
    page, cursor = store.page(alice, limit=3)
    assert [c.id for c in page] == ids[::-1][:3] and cursor
    page2, cursor2 = store.page(alice, limit=3, cursor=cursor)
    assert [c.id for c in page2] == ids[::-1][3:6]
    found, _ = store.page(alice, query="APPLE")
    assert sorted(c.title for c in found) == ["talk 0 apple", "talk 3 apple", "talk 6 apple"]
    with pytest.raises(InvalidRequestError):
        store.page(alice, cursor="not-a-cursor")
    cid = ids[0]
    first = store.append(alice, cid, [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}])
    branch = store.append(alice, cid, [{"role": "user", "content": "hello again"}], parent_id=None)
    view = store.get(alice, cid)
    assert view.current_leaf_id == branch[0].id and len(view.messages or []) == 3
    store.update(alice, cid, current_leaf_id=first[1].id)
    assert [m.content for m in store.get(alice, cid).active_thread()] == ["hello", "hi"]
    for action in (
        lambda: store.get(bob, cid),
        lambda: store.update(bob, cid, title="mine now"),
        lambda: store.delete(bob, cid),
        lambda: store.append(bob, cid, [{"role": "user", "content": "x"}]),
        lambda: store.get(alice, "not-an-id"),
    ):
        with pytest.raises(NotFoundError):
            action()
    assert store.page(bob)[0] == []
    with pytest.raises(TitleTooLongError):
        store.create(alice, title="t" * 301)
    with pytest.raises(InvalidRequestError, match="content"):
        store.append(alice, cid, [{"role": "user", "content": "x" * 10_001}])
    assert len(store.get(alice, cid).messages or []) == 3  # nothing stored by the refusals


def test_paging_keyset_with_tied_timestamps(accounts: Accounts, store: ConversationStore, db: Database) -> None:
    """Every conversation exactly once, newest first then by id, across pages cut inside groups that share one
    ``updated_at`` (bulk imports, same-microsecond writes): the cursor's tie-break on id is what is tested."""
    accounts.create_user("alice", PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    ids = [store.create(alice, title=f"c{i}").id for i in range(23)]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with db.session() as s:
        for i, cid in enumerate(ids):  # five groups of tied stamps, older groups for lower i
            s.execute(update(Conversation).where(Conversation.id == cid).values(updated_at=base + timedelta(i // 5)))
    expected = sorted(ids, key=lambda cid: (ids.index(cid) // 5, cid), reverse=True)
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.page(alice, limit=4, cursor=cursor)
        seen += [c.id for c in page]
        pages += 1
        if cursor is None:
            break
    assert seen == expected and pages == 6
    found, _ = store.page(alice, limit=2, query="C1")  # search pages too: c1, c10..c19 in the same order
    assert [c.id for c in found] == [cid for cid in expected if store.get(alice, cid).title.startswith("c1")][:2]


def test_reply_rewrite_after_delete_stores_nothing(accounts: Accounts, store: ConversationStore, db: Database) -> None:
    accounts.create_user("alice", PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    cid = store.create(alice, title="gone soon").id
    *_, reply = store.append(
        alice, cid, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "incomplete": True}]
    )
    fields = {"reasoning": None, "tool_calls": None, "finish_reason": "stop", "incomplete": False}
    store.update_reply(alice, cid, reply.id, content="partial", meta={"usage": {"completion_tokens": 2}}, **fields)
    stored = store.get(alice, cid).messages or []
    assert stored[1].content == "partial" and stored[1].usage == {"completion_tokens": 2} and not stored[1].incomplete
    store.delete(alice, cid)
    store.update_reply(alice, cid, reply.id, content="late tokens", meta={}, **fields)  # generation outlived it
    with db.session() as s:
        assert s.scalar(select(Message.id).where(Message.conversation_id == cid)) is None
        assert s.get(Conversation, cid) is None


def test_ciphertext_bound_to_its_row(accounts: Accounts, store: ConversationStore, db: Database) -> None:
    accounts.create_user("alice", PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    cid = store.create(alice, title="t").id
    a, b = store.append(alice, cid, [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}])
    with db.session() as s:
        blob = s.get(Message, a.id).content_enc  # type: ignore[union-attr]
        s.execute(update(Message).where(Message.id == b.id).values(content_enc=blob))
    with pytest.raises(DecryptionError):
        store.get(alice, cid)


def test_canary_never_in_clear_in_the_database_files(
    accounts: Accounts, store: ConversationStore, db: Database, home: Path
) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the PostgreSQL dump is checked in tests/e2e")
    accounts.create_user("alice", PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    cid = store.create(alice, title=f"title {CANARY}", system=f"system {CANARY}").id
    store.append(
        alice,
        cid,
        [
            {
                "role": "user",
                "content": f"say {CANARY}",
                "reasoning": CANARY,
                "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": CANARY}}],
            }
        ],
    )
    blobs = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert CANARY.encode() not in blobs and b"haven.db" not in blobs[:0]
    assert any(p.name.endswith("-wal") for p in home.iterdir())  # the WAL was part of the search


def test_local_owner_is_adopted_by_the_first_user(accounts: Accounts, store: ConversationStore, home: Path) -> None:
    local = accounts.local_owner()
    keyfile = home / "local-data.key"
    assert keyfile.stat().st_mode & 0o777 == 0o600
    cid = store.create(local, title="made before any account").id
    assert accounts.user_count() == 0 and accounts.local_owner().data_key == local.data_key
    accounts.create_user("alice", PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    assert alice.user.role == "admin" and store.get(alice, cid).title == "made before any account"
    assert not keyfile.exists()


def test_rotation_resumes_after_an_interruption(accounts: Accounts, store: ConversationStore, db: Database) -> None:
    accounts.create_user("alice", PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    session = accounts.create_session(alice)
    for i in range(5):
        cid = store.create(alice, title=f"c{i}").id
        store.append(alice, cid, [{"role": "user", "content": f"m{i}"}])
    user, cipher = accounts.begin_rotation("alice", PASSWORD)
    next(store.reencrypt(user.id, cipher, batch=2))  # one batch, then "killed"
    assert accounts.session_from_cookie(session.cookie) is None  # sessions wrap the old key: revoked
    with pytest.raises(PermissionDeniedError, match="rotation"):
        accounts.authenticate_password("alice", PASSWORD)
    code = rotation.rotate_data_key(accounts, store, "alice", PASSWORD, batch=2)
    alice = accounts.authenticate_password("alice", PASSWORD)
    assert alice.user.key_version == 2 and code
    titles = sorted(c.title for c in store.page(alice)[0])
    assert titles == [f"c{i}" for i in range(5)]
    assert all(m.content.startswith("m") for c in store.page(alice)[0] for m in store.get(alice, c.id).messages or [])
    with db.session() as s:
        assert set(s.scalars(select(Message.key_version))) == {2}


def test_retention_and_user_deletion(accounts: Accounts, store: ConversationStore, db: Database) -> None:
    accounts.create_user("alice", PASSWORD)
    accounts.create_user("bob", OTHER_PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    bob = accounts.authenticate_password("bob", OTHER_PASSWORD)
    old = store.create(alice, title="old").id
    store.create(alice, title="new")
    bobs = store.create(bob, title="bob's")
    store.append(bob, bobs.id, [{"role": "user", "content": "hi"}])
    with db.session() as s:
        s.execute(
            update(Conversation).where(Conversation.id == old).values(updated_at=datetime.now(UTC) - timedelta(days=40))
        )
    assert store.delete_expired(None) == 0
    assert store.delete_expired(30) == 1
    assert [c.title for c in store.page(alice)[0]] == ["new"]
    accounts.delete_user(bob.user.id)
    with db.session() as s:
        assert s.scalar(select(Conversation).where(Conversation.user_id == bob.user.id)) is None
        assert s.scalar(select(Message).where(Message.user_id == bob.user.id)) is None


def test_login_throttle() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_per_account=3, max_per_client=5, window=60, base_delay=0.5, clock=lambda: now[0])
    delays = [throttle.failure("alice", "1.2.3.4") for _ in range(3)]
    assert delays == [0.5, 1.0, 1.5]
    with pytest.raises(TooManyAttemptsError) as info:
        throttle.check("Alice", "9.9.9.9")
    assert 1 <= info.value.retry_after <= 60
    throttle.check("bob", "1.2.3.4")
    for _ in range(2):
        throttle.failure("bob", "1.2.3.4")
    with pytest.raises(TooManyAttemptsError):
        throttle.check("carol", "1.2.3.4")  # per client address
    now[0] = 61
    throttle.check("alice", "1.2.3.4")


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap", "truncate"])
def test_security_log_verify_detects_tampering(db: Database, home: Path, tamper: str) -> None:
    log = SecurityLog(db, home)
    for i in range(5):
        log.append("login", user=f"u{i}", client="127.0.0.1", details={"n": i})
    assert log.verify() == (5, [])
    with db.session() as s:
        if tamper == "edit":
            s.execute(update(SecurityLogEntry).where(SecurityLogEntry.seq == 3).values(user_name="mallory"))
        elif tamper == "delete":
            s.execute(SecurityLogEntry.__table__.delete().where(SecurityLogEntry.seq == 2))
        elif tamper == "swap":
            a, b = (s.get(SecurityLogEntry, 2), s.get(SecurityLogEntry, 3))
            assert a is not None and b is not None
            (a.user_name, a.details, a.mac), (b.user_name, b.details, b.mac) = (
                (b.user_name, b.details, b.mac),
                (a.user_name, a.details, a.mac),
            )
        else:
            s.execute(SecurityLogEntry.__table__.delete().where(SecurityLogEntry.seq == 5))
    count, problems = log.verify()
    assert problems, tamper
    assert os.stat(home / "security-log.key").st_mode & 0o777 == 0o600


def test_queued_rows_are_written_together_in_order_and_seen_by_their_own_process(db: Database, home: Path) -> None:
    """append_soon rows share one transaction; reads, verify and append write the queue first (so seq keeps
    the order rows were logged in); close writes what is left."""
    import haven.securitylog.log as log_module

    log = SecurityLog(db, home)
    commits: list[int] = []
    sqlalchemy.event.listen(db.engine, "commit", lambda _conn: commits.append(1))
    for i in range(20):
        log.append_soon("chat_request", user=f"u{i}", client="127.0.0.1", details={"n": i})
    log.flush()
    assert len(commits) == 1  # twenty rows, one commit
    assert [e.user for e in log.entries(event="chat_request", newest_first=False)] == [f"u{i}" for i in range(20)]
    log.append_soon("chat_request", user="queued")
    log.append("login", user="sync")  # the queued row first: its seq is the earlier one
    rows = log.entries(newest_first=False)
    assert [(e.seq, e.user) for e in rows[-2:]] == [(21, "queued"), (22, "sync")]
    assert rows[-2].at <= rows[-1].at  # a queued row keeps the time it was logged at
    log.append_soon("chat_request", user="at exit")
    log.close()
    other = SecurityLog(db, home)
    assert other.entries(limit=1)[0].user == "at exit" and other.verify() == (23, [])
    with pytest.raises(ValueError, match="unknown security-log event"):
        other.append_soon("made_up")
    other.close()
    assert log_module.LINGER_SECONDS <= 0.05  # the rows reach the database within a blink


def test_a_failed_batch_is_logged_and_the_writer_goes_on(
        db: Database, home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    log = SecurityLog(db, home)
    real = log._append_rows
    failures = iter([RuntimeError("database went away")])

    def flaky(*args: object) -> tuple[int, str]:
        for failure in failures:
            raise failure
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(log, "_append_rows", flaky)
    log.append_soon("chat_request", user="lost")
    log.flush()
    assert "they are lost" in caplog.text
    log.append_soon("chat_request", user="kept")
    log.flush()
    assert [e.user for e in log.entries()] == ["kept"] and log.verify() == (1, [])
    log.close()


def test_the_recorded_head_follows_every_writer(db: Database, home: Path) -> None:
    """The server overwrites the head in place; a CLI command (its own SecurityLog) puts a new file there."""
    server, cli = SecurityLog(db, home), SecurityLog(db, home)
    server.append("login", user="a")
    server.append("login", user="b")
    cli.append("user_created", user="c")  # replaces the file the server holds open
    server.append("login", user="d")  # must land in the new file, not the unlinked one
    head = (home / "security-log.head").read_text(encoding="ascii")
    assert head.split()[0] == f"{4:020d}"
    assert server.verify() == (4, [])
    # Truncating the newest row is still detected against that head.
    with db.session() as s:
        s.execute(SecurityLogEntry.__table__.delete().where(SecurityLogEntry.seq == 4))
    assert server.verify()[1] == [(4, "the newest rows up to 4 are missing")]
    server.close()
    cli.close()
