"""Users, web sessions and API keys, and the data keys they unlock (the repository owns the queries).

:class:`Accounts` is the one place that reads and writes the ``users``, ``web_sessions`` and
``api_keys`` tables. Every credential check that succeeds returns an :class:`Unlocked` — the user
plus their data key, unwrapped for this request only; nothing here keeps a data key after returning.

* Password: Argon2id hash (argon2-cffi) for verification, and a separate Argon2id raw derivation
  (own salt) as the KEK that wraps the data key.
* Session cookie ``<id>.<secret>``: the row keeps SHA-256(secret) and the data key wrapped under
  HKDF(secret); the database alone can open no session. CSRF token = HMAC(secret, "csrf").
* API key ``hvn_<id>_<secret>``: same scheme as sessions; shown once.
* Recovery code (shown once): wraps the data key too, so an admin reset with it keeps the data.
* Local single-user mode: an implicit ``local`` user whose data key is wrapped by a 0600 key file in
  HAVEN_HOME; creating the first real user turns that row into the new admin (conversations kept) and
  deletes the key file wrap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from haven.accounts import crypto
from haven.accounts.crypto import Argon2Params, DecryptionError, FieldCipher
from haven.accounts.passwords import PasswordHashing, check_password
from haven.errors import AuthenticationError, HavenError, InvalidRequestError, NotFoundError, PermissionDeniedError
from haven.storage.db import Database
from haven.storage.models import ApiKey, Conversation, User, WebSession

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_PREFIX = "hvn_"
KEY_RE = re.compile(r"^hvn_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
LOCAL_NAME = "local"
KEYFILE_NAME = "local-data.key"
ROLES = ("admin", "user")


class ConflictError(HavenError):
    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class UserExistsError(ConflictError):
    code = "user_exists"


class DataLossConfirmationRequired(ConflictError):
    code = "data_loss_confirmation_required"


class InvalidCredentialsError(AuthenticationError):
    code = "invalid_credentials"


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands timezone-aware columns back naive; they are stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_id() -> str:
    return secrets.token_hex(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class UserInfo:
    id: str
    name: str
    role: str
    disabled: bool
    is_local: bool
    created_at: datetime
    last_login_at: datetime | None
    retention_days: int | None
    key_version: int

    @classmethod
    def of(cls, row: User) -> UserInfo:
        return cls(
            id=row.id,
            name=row.name,
            role=row.role,
            disabled=row.disabled,
            is_local=row.is_local,
            created_at=aware(row.created_at),
            last_login_at=aware(row.last_login_at) if row.last_login_at else None,
            retention_days=row.retention_days,
            key_version=row.key_version,
        )

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Unlocked:
    """An authenticated user with their data key, for the duration of one request or command."""

    user: UserInfo
    data_key: bytes = b""
    session_id: str | None = None
    key_id: str | None = None
    csrf_token: str | None = None

    def cipher(self) -> FieldCipher:
        return FieldCipher(self.user.id, {self.user.key_version: self.data_key}, self.user.key_version)


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    label: str
    prefix: str
    user_id: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> ApiKeyInfo:
        return cls(
            id=row.id,
            label=row.label,
            prefix=f"{KEY_PREFIX}{row.id}",
            user_id=row.user_id,
            created_at=aware(row.created_at),
            expires_at=aware(row.expires_at) if row.expires_at else None,
            last_used_at=aware(row.last_used_at) if row.last_used_at else None,
        )


@dataclass(frozen=True)
class NewSession:
    cookie: str
    csrf_token: str
    expires_at: datetime
    unlocked: Unlocked


def csrf_for(secret: bytes) -> str:
    return _b64(hmac.new(secret, b"haven csrf v1", hashlib.sha256).digest())


def new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(20)).decode()  # 160 bits, 32 chars
    return "-".join(raw[i : i + 4] for i in range(0, 32, 4))


def _recovery_secret(code: str) -> bytes:
    return re.sub(r"[^A-Z2-7]", "", code.upper()).encode()


class Accounts:
    """Repository and domain logic of users, sessions and API keys."""

    def __init__(
        self,
        db: Database,
        *,
        home: Path,
        params: Argon2Params | None = None,
        password_min_length: int = 12,
        session_idle: timedelta = timedelta(hours=12),
        session_max: timedelta = timedelta(days=7),
    ) -> None:
        self.db = db
        self.home = home
        self.params = params or Argon2Params()
        self.hashing = PasswordHashing(self.params)
        self.password_min_length = password_min_length
        self.session_idle = session_idle
        self.session_max = session_max

    @classmethod
    def from_settings(cls, db: Database, settings: Any) -> Accounts:
        return cls(
            db,
            home=settings.home,
            params=Argon2Params(
                settings.password_time_cost, settings.password_memory_kib, settings.password_parallelism
            ),
            password_min_length=settings.password_min_length,
            session_idle=timedelta(minutes=settings.session_idle_minutes),
            session_max=timedelta(hours=settings.session_max_hours),
        )

    # --- wrapping helpers ------------------------------------------------------------------

    def _password_wrap(self, row: User, password: str, data_key: bytes, version: int) -> None:
        row.kek_salt = os.urandom(16)
        row.kek_params = self.params.as_dict()
        kek = crypto.password_kek(password, row.kek_salt, self.params)
        row.password_wrapped = crypto.seal(kek, data_key, crypto.wrap_aad(row.id, "password", version))

    def _password_unwrap(
        self, row: User, password: str, blob: bytes | None = None, version: int | None = None
    ) -> bytes:
        if row.kek_salt is None or (blob or row.password_wrapped) is None:
            raise DecryptionError("this account has no password-wrapped data key.")
        kek = crypto.password_kek(password, row.kek_salt, Argon2Params.from_dict(row.kek_params))
        aad = crypto.wrap_aad(row.id, "password", version if version is not None else row.key_version)
        return crypto.open_sealed(kek, blob or row.password_wrapped or b"", aad)

    def _recovery_wrap(self, row: User, data_key: bytes, version: int) -> str:
        code = new_recovery_code()
        kek = crypto.secret_kek(_recovery_secret(code), "recovery", row.id)
        row.recovery_wrapped = crypto.seal(kek, data_key, crypto.wrap_aad(row.id, "recovery", version))
        return code

    def _recovery_unwrap(self, row: User, code: str) -> bytes | None:
        if row.recovery_wrapped is None:
            return None
        kek = crypto.secret_kek(_recovery_secret(code), "recovery", row.id)
        try:
            return crypto.open_sealed(kek, row.recovery_wrapped, crypto.wrap_aad(row.id, "recovery", row.key_version))
        except DecryptionError:
            return None

    def keyfile_path(self) -> Path:
        return self.home / KEYFILE_NAME

    def _keyfile_secret(self, *, create: bool) -> bytes:
        path = self.keyfile_path()
        if not path.exists():
            if not create:
                raise DecryptionError(f"the local key file {path} is missing; local conversations cannot be read.")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
                handle.flush()
                os.fsync(handle.fileno())
        data = path.read_bytes()
        if len(data) != 32:
            raise DecryptionError(f"the local key file {path} is damaged.")
        return data

    # --- users ---------------------------------------------------------------------------------

    def user_count(self) -> int:
        """Real users (the implicit local owner does not count)."""
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(User).where(User.is_local.is_(False))) or 0)

    def list_users(self) -> list[UserInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(User).where(User.is_local.is_(False)).order_by(User.name_key)).all()
            return [UserInfo.of(r) for r in rows]

    def get(self, user_id: str) -> UserInfo:
        with self.db.session() as s:
            return UserInfo.of(self._row(s, user_id))

    def by_name(self, name: str) -> UserInfo:
        with self.db.session() as s:
            return UserInfo.of(self._row_by_name(s, name))

    @staticmethod
    def _row(s: Session, user_id: str) -> User:
        row = s.get(User, user_id) if re.fullmatch(r"[0-9a-f]{32}", user_id or "") else None
        if row is None or row.is_local:
            raise NotFoundError("no such user.")
        return row

    @staticmethod
    def _row_by_name(s: Session, name: str) -> User:
        row = s.scalar(select(User).where(User.name_key == name.casefold(), User.is_local.is_(False)))
        if row is None:
            raise NotFoundError(f"no user named {name!r}.")
        return row

    @staticmethod
    def check_name(name: str) -> None:
        if not NAME_RE.fullmatch(name or "") or name.casefold() == LOCAL_NAME:
            raise InvalidRequestError(
                "a user name has 1 to 64 characters: letters, digits, '_', '.', '-' (starting with a letter or "
                "digit), and 'local' is reserved.",
                param="name",
            )

    def create_user(self, name: str, password: str, *, role: str = "user") -> tuple[UserInfo, str]:
        """Creates a user; returns it and its recovery code (to be shown once).

        The first real user adopts the local single-user owner's data key and conversations.
        """
        self.check_name(name)
        if role not in ROLES:
            raise InvalidRequestError("role must be 'admin' or 'user'.", param="role")
        check_password(password, name=name, min_length=self.password_min_length)
        password_hash = self.hashing.hash(password)
        with self.db.session() as s:
            if s.scalar(select(User.id).where(User.name_key == name.casefold())) is not None:
                raise UserExistsError(f"a user named {name!r} already exists.", param="name")
            real_users = s.scalar(select(func.count()).select_from(User).where(User.is_local.is_(False))) or 0
            local = s.scalar(select(User).where(User.is_local.is_(True)))
            if local is not None and real_users == 0 and local.keyfile_wrapped is not None:
                data_key = self._keyfile_unwrap(local)
                row = local
                row.is_local = False
                row.keyfile_wrapped = None
                role = "admin"
            else:
                data_key = crypto.new_key()
                row = User(id=new_id(), key_version=1, kek_params={})
                s.add(row)
                if real_users == 0:
                    role = "admin"  # the first user administers the server
            row.name, row.name_key, row.role, row.disabled = name, name.casefold(), role, False
            row.password_hash = password_hash
            self._password_wrap(row, password, data_key, row.key_version)
            code = self._recovery_wrap(row, data_key, row.key_version)
            s.flush()
            info = UserInfo.of(row)
        if info.id and self.keyfile_path().exists() and self._no_local_user():
            self.keyfile_path().unlink(missing_ok=True)
        return info, code

    def _no_local_user(self) -> bool:
        with self.db.session() as s:
            return s.scalar(select(User.id).where(User.is_local.is_(True))) is None

    def _keyfile_unwrap(self, row: User) -> bytes:
        kek = crypto.secret_kek(self._keyfile_secret(create=False), "keyfile", row.id)
        return crypto.open_sealed(kek, row.keyfile_wrapped or b"", crypto.wrap_aad(row.id, "keyfile", row.key_version))

    def local_owner(self) -> Unlocked:
        """The implicit user of local single-user mode (created on first use, key file wrapped)."""
        with self.db.session() as s:
            row = s.scalar(select(User).where(User.is_local.is_(True)))
            if row is None:
                row = User(
                    id=new_id(),
                    name=LOCAL_NAME,
                    name_key=f"{LOCAL_NAME}:{secrets.token_hex(4)}",
                    role="admin",
                    disabled=False,
                    is_local=True,
                    key_version=1,
                    kek_params={},
                )
                data_key = crypto.new_key()
                kek = crypto.secret_kek(self._keyfile_secret(create=True), "keyfile", row.id)
                row.keyfile_wrapped = crypto.seal(kek, data_key, crypto.wrap_aad(row.id, "keyfile", 1))
                s.add(row)
                s.flush()
            else:
                data_key = self._keyfile_unwrap(row)
            return Unlocked(UserInfo.of(row), data_key)

    def set_role(self, user_id: str, role: str) -> UserInfo:
        if role not in ROLES:
            raise InvalidRequestError("role must be 'admin' or 'user'.", param="role")
        with self.db.session() as s:
            row = self._row(s, user_id)
            if row.role == "admin" and role != "admin":
                self._keep_an_admin(s, row)
            row.role = role
            return UserInfo.of(row)

    def set_disabled(self, user_id: str, disabled: bool) -> UserInfo:
        with self.db.session() as s:
            row = self._row(s, user_id)
            if disabled and row.role == "admin":
                self._keep_an_admin(s, row)
            row.disabled = disabled
            if disabled:
                s.execute(delete(WebSession).where(WebSession.user_id == row.id))
            return UserInfo.of(row)

    def set_retention(self, user_id: str, days: int | None) -> UserInfo:
        if days is not None and not 1 <= days <= 36_500:
            raise InvalidRequestError("retention_days must be between 1 and 36500 (or null).", param="retention_days")
        with self.db.session() as s:
            row = s.get(User, user_id)
            if row is None:
                raise NotFoundError("no such user.")
            row.retention_days = days
            return UserInfo.of(row)

    @staticmethod
    def _keep_an_admin(s: Session, row: User) -> None:
        others = s.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == "admin", User.disabled.is_(False), User.is_local.is_(False), User.id != row.id)
        )
        if not others:
            raise ConflictError("this is the last enabled admin; make another user admin first.")

    def delete_user(self, user_id: str) -> UserInfo:
        """Deletes the user row: sessions, keys, wrapped data keys and conversations go with it (cascade)."""
        with self.db.session() as s:
            row = self._row(s, user_id)
            if row.role == "admin":
                self._keep_an_admin(s, row)
            info = UserInfo.of(row)
            s.delete(row)
            return info

    # --- passwords --------------------------------------------------------------------------

    def authenticate_password(self, name: str, password: str) -> Unlocked:
        """Checks a name and password; raises InvalidCredentialsError (same message for unknown names)."""
        with self.db.session() as s:
            row = s.scalar(select(User).where(User.name_key == (name or "").casefold(), User.is_local.is_(False)))
            if row is None or row.password_hash is None:
                self.hashing.dummy_verify()
                raise InvalidCredentialsError("wrong user name or password.")
            if not self.hashing.verify(row.password_hash, password):
                raise InvalidCredentialsError("wrong user name or password.")
            if row.disabled:
                raise PermissionDeniedError("this account is disabled.")
            if row.rotation is not None:
                raise PermissionDeniedError(
                    f"a data key rotation is in progress; finish it with `haven users rotate-key {row.name}`."
                )
            data_key = self._password_unwrap(row, password)
            row.last_login_at = utcnow()
            return Unlocked(UserInfo.of(row), data_key)

    def change_password(self, unlocked: Unlocked, current: str, new: str) -> None:
        check_password(new, name=unlocked.user.name, min_length=self.password_min_length)
        with self.db.session() as s:
            row = self._row(s, unlocked.user.id)
            if row.password_hash is None or not self.hashing.verify(row.password_hash, current):
                raise InvalidCredentialsError("the current password is wrong.", param="current_password")
            data_key = self._password_unwrap(row, current)
            row.password_hash = self.hashing.hash(new)
            self._password_wrap(row, new, data_key, row.key_version)  # re-wrap: nothing is re-encrypted
            others = delete(WebSession).where(WebSession.user_id == row.id)
            if unlocked.session_id:
                others = others.where(WebSession.id != unlocked.session_id)
            s.execute(others)

    def renew_recovery_code(self, unlocked: Unlocked, password: str) -> str:
        with self.db.session() as s:
            row = self._row(s, unlocked.user.id)
            if row.password_hash is None or not self.hashing.verify(row.password_hash, password):
                raise InvalidCredentialsError("the password is wrong.", param="password")
            return self._recovery_wrap(row, self._password_unwrap(row, password), row.key_version)

    def reset_password(
        self, user_id: str, new: str, *, recovery_code: str | None = None, confirm_data_loss: bool = False
    ) -> tuple[UserInfo, bool, str | None]:
        """Admin reset. With the recovery code the data key is kept; without it (and confirmation)
        the user's conversations are deleted (they could never be read again) and a new key is made.

        Returns (user, data_lost, new recovery code or None when the old one stays valid).
        """
        with self.db.session() as s:
            row = self._row(s, user_id)
            check_password(new, name=row.name, min_length=self.password_min_length)
            data_key = self._recovery_unwrap(row, recovery_code) if recovery_code else None
            if recovery_code and data_key is None:
                raise InvalidRequestError("the recovery code is wrong.", param="recovery_code")
            data_lost = data_key is None
            if data_lost and not confirm_data_loss:
                raise DataLossConfirmationRequired(
                    f"resetting {row.name}'s password without their recovery code makes their conversations "
                    "unreadable (they will be deleted); confirm to proceed."
                )
            code: str | None = None
            if data_key is None:
                s.execute(delete(Conversation).where(Conversation.user_id == row.id))
                s.execute(delete(ApiKey).where(ApiKey.user_id == row.id))
                row.key_version += 1
                row.rotation = None
                data_key = crypto.new_key()
                code = self._recovery_wrap(row, data_key, row.key_version)
            row.password_hash = self.hashing.hash(new)
            self._password_wrap(row, new, data_key, row.key_version)
            s.execute(delete(WebSession).where(WebSession.user_id == row.id))
            return UserInfo.of(row), data_lost, code

    # --- sessions ---------------------------------------------------------------------------

    def create_session(self, unlocked: Unlocked, *, client: str | None = None) -> NewSession:
        session_id, secret = secrets.token_hex(16), secrets.token_bytes(32)
        now = utcnow()
        expires = now + self.session_max
        kek = crypto.secret_kek(secret, "session", session_id)
        with self.db.session() as s:
            s.add(
                WebSession(
                    id=session_id,
                    user_id=unlocked.user.id,
                    secret_hash=hashlib.sha256(secret).digest(),
                    wrapped_key=crypto.seal(
                        kek, unlocked.data_key, crypto.wrap_aad(unlocked.user.id, "session", unlocked.user.key_version)
                    ),
                    key_version=unlocked.user.key_version,
                    client=(client or "")[:100] or None,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                )
            )
        csrf = csrf_for(secret)
        return NewSession(
            cookie=f"{session_id}.{_b64(secret)}",
            csrf_token=csrf,
            expires_at=expires,
            unlocked=Unlocked(unlocked.user, unlocked.data_key, session_id=session_id, csrf_token=csrf),
        )

    def session_from_cookie(self, value: str) -> Unlocked | None:
        """The session's user and data key, or None (malformed, forged, expired, revoked, disabled)."""
        session_id, _, encoded = (value or "").partition(".")
        if not re.fullmatch(r"[0-9a-f]{32}", session_id) or not re.fullmatch(r"[A-Za-z0-9_-]{43}", encoded):
            return None
        secret = _unb64(encoded)
        now = utcnow()
        with self.db.session() as s:
            row = s.get(WebSession, session_id)
            if row is None or not hmac.compare_digest(row.secret_hash, hashlib.sha256(secret).digest()):
                return None
            if aware(row.expires_at) <= now or aware(row.last_seen_at) + self.session_idle <= now:
                s.delete(row)
                return None
            opened = self._open_wrapped(s, row, secret, "session")
            if opened is None:
                return None
            user, data_key = opened
            if now - aware(row.last_seen_at) > timedelta(seconds=60):  # one write a minute, not per request
                row.last_seen_at = now
            return Unlocked(UserInfo.of(user), data_key, session_id=session_id, csrf_token=csrf_for(secret))

    @staticmethod
    def _open_wrapped(s: Session, row: WebSession | ApiKey, secret: bytes, kind: str) -> tuple[User, bytes] | None:
        """The owner and the data key a session or API key row wraps (None: disabled user, old key, bad secret)."""
        user = s.get(User, row.user_id)
        if user is None or user.disabled or row.key_version != user.key_version:
            return None
        try:
            return user, crypto.open_sealed(
                crypto.secret_kek(secret, kind, row.id),
                row.wrapped_key,
                crypto.wrap_aad(user.id, kind, row.key_version),
            )
        except DecryptionError:
            return None

    def revoke_session(self, session_id: str) -> None:
        with self.db.session() as s:
            s.execute(delete(WebSession).where(WebSession.id == session_id))

    def purge_expired_sessions(self) -> int:
        now = utcnow()
        with self.db.session() as s:
            result = s.execute(
                delete(WebSession).where(
                    (WebSession.expires_at <= now) | (WebSession.last_seen_at <= now - self.session_idle)
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    # --- API keys -----------------------------------------------------------------------------

    def create_key(
        self, unlocked: Unlocked, *, label: str = "", expires_days: int | None = None
    ) -> tuple[ApiKeyInfo, str]:
        if len(label) > 100:
            raise InvalidRequestError("a key label has at most 100 characters.", param="label")
        if expires_days is not None and not 1 <= expires_days <= 3650:
            raise InvalidRequestError("expires_days must be between 1 and 3650.", param="expires_days")
        key_id, secret = secrets.token_hex(6), secrets.token_bytes(32)
        now = utcnow()
        kek = crypto.secret_kek(secret, "api key", key_id)
        row = ApiKey(
            id=key_id,
            user_id=unlocked.user.id,
            label=label,
            secret_hash=hashlib.sha256(secret).digest(),
            wrapped_key=crypto.seal(
                kek, unlocked.data_key, crypto.wrap_aad(unlocked.user.id, "api key", unlocked.user.key_version)
            ),
            key_version=unlocked.user.key_version,
            created_at=now,
            expires_at=now + timedelta(days=expires_days) if expires_days else None,
        )
        with self.db.session() as s:
            s.add(row)
            s.flush()
            info = ApiKeyInfo.of(row)
        return info, f"{KEY_PREFIX}{key_id}_{_b64(secret)}"

    def list_keys(self, user_id: str) -> list[ApiKeyInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at)).all()
            return [ApiKeyInfo.of(r) for r in rows]

    def revoke_key(self, user_id: str | None, key_id: str) -> ApiKeyInfo:
        """Deletes the key (and its wrapped data key). ``user_id`` None: any user's key (CLI admin)."""
        key_id = key_id.removeprefix(KEY_PREFIX).split("_")[0]
        with self.db.session() as s:
            row = s.get(ApiKey, key_id) if re.fullmatch(r"[0-9a-f]{12}", key_id) else None
            if row is None or (user_id is not None and row.user_id != user_id):
                raise NotFoundError("no such API key.")
            info = ApiKeyInfo.of(row)
            s.delete(row)
            return info

    def key_from_bearer(self, token: str) -> Unlocked | None:
        match = KEY_RE.fullmatch(token or "")
        if match is None:
            return None
        key_id, secret = match.group(1), _unb64(match.group(2))
        now = utcnow()
        with self.db.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None or not hmac.compare_digest(row.secret_hash, hashlib.sha256(secret).digest()):
                return None
            if row.expires_at is not None and aware(row.expires_at) <= now:
                return None
            opened = self._open_wrapped(s, row, secret, "api key")
            if opened is None:
                return None
            user, data_key = opened
            if row.last_used_at is None or now - aware(row.last_used_at) > timedelta(seconds=60):
                row.last_used_at = now
            return Unlocked(UserInfo.of(user), data_key, key_id=key_id)

    # --- data key rotation (resumable; the conversations layer re-encrypts the rows) ------------------

    def begin_rotation(self, name: str, password: str) -> tuple[UserInfo, FieldCipher]:
        """Starts (or resumes) a rotation: returns a cipher holding the old and the new data key.

        Starting revokes the user's sessions and API keys (they wrap the old key) and stores the new
        key wrapped by the password, so a rerun after a crash picks up the same new key.
        """
        with self.db.session() as s:
            row = self._row_by_name(s, name)
            if row.password_hash is None or not self.hashing.verify(row.password_hash, password):
                raise InvalidCredentialsError("wrong password.")
            old_key = self._password_unwrap(row, password)
            new_version = row.key_version + 1
            if row.rotation is None:
                new_key = crypto.new_key()
                kek = crypto.password_kek(password, row.kek_salt or b"", Argon2Params.from_dict(row.kek_params))
                wrapped = crypto.seal(kek, new_key, crypto.wrap_aad(row.id, "password", new_version))
                row.rotation = {"version": new_version, "password_wrapped": _b64(wrapped)}
                s.execute(delete(WebSession).where(WebSession.user_id == row.id))
                s.execute(delete(ApiKey).where(ApiKey.user_id == row.id))
            else:
                new_key = self._password_unwrap(
                    row, password, _unb64(row.rotation["password_wrapped"]), int(row.rotation["version"])
                )
            info = UserInfo.of(row)
        return info, FieldCipher(info.id, {info.key_version: old_key, new_version: new_key}, new_version)

    def finish_rotation(self, user_id: str, password: str, cipher: FieldCipher) -> str:
        """Makes the new key current (password and a new recovery code wrap it); returns the code."""
        with self.db.session() as s:
            row = self._row(s, user_id)
            new_key = cipher._keys[cipher.current]
            row.key_version = cipher.current
            row.rotation = None
            self._password_wrap(row, password, new_key, row.key_version)
            return self._recovery_wrap(row, new_key, row.key_version)
