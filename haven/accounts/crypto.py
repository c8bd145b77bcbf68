"""Encryption at rest: per-user data keys, AES-256-GCM field encryption, and key wrapping.

Each user has a random 256-bit *data key*. Conversation text (titles, system prompts, message content,
reasoning, tool calls) is sealed with AES-256-GCM under it, with associated data naming the user,
conversation, message and field, so a ciphertext copied to another row (or another user) fails to open.
The data key is only ever stored *wrapped* (AES-GCM again) under a key-encryption key (KEK) derived
from a credential the server does not keep:

* the password → Argon2id (raw) with a per-user salt (slow on purpose);
* an API key secret, a web-session secret or the recovery code → HKDF-SHA256 (they are 256-bit random
  values or close to it, so a fast KDF is enough);
* local single-user mode → a random key file (mode 0600) in HAVEN_HOME.

Blobs are ``version byte ‖ 12-byte nonce ‖ ciphertext+tag``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from haven.errors import HavenError

BLOB_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12


class DecryptionError(HavenError):
    """A ciphertext did not open: wrong key, or a row moved/edited (AES-GCM authenticates both)."""

    code = "decryption_failed"


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    def as_dict(self) -> dict[str, int]:
        return {"t": self.time_cost, "m": self.memory_kib, "p": self.parallelism}

    @classmethod
    def from_dict(cls, value: dict[str, int]) -> Argon2Params:
        return cls(time_cost=int(value["t"]), memory_kib=int(value["m"]), parallelism=int(value["p"]))


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def seal(key: bytes | AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    return bytes([BLOB_VERSION]) + nonce + aead.encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes | AESGCM, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[0] != BLOB_VERSION:
        raise DecryptionError("the stored ciphertext is malformed.")
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    try:
        return aead.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], aad)
    except InvalidTag:
        raise DecryptionError("the stored ciphertext does not open with this key (wrong key or moved row).") from None


def password_kek(password: str, salt: bytes, params: Argon2Params) -> bytes:
    return hash_secret_raw(
        password.encode("utf-8"),
        salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


def secret_kek(secret: bytes, purpose: str, context: str) -> bytes:
    """KEK for a high-entropy secret (API key, session secret, recovery code, key file)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=context.encode(), info=purpose.encode()).derive(
        secret
    )


def wrap_aad(user_id: str, kind: str, version: int) -> bytes:
    return f"haven:wrap:v1:{user_id}:{kind}:{version}".encode()


def field_aad(user_id: str, conversation_id: str, message_id: str, field: str) -> bytes:
    return f"haven:field:v1:{user_id}:{conversation_id}:{message_id}:{field}".encode()


class FieldCipher:
    """Seals and opens one user's text fields under their (unwrapped) data key(s).

    ``keys`` maps key versions to data keys: normally one; two while ``haven users rotate-key`` moves
    rows from the old key to the new one. New ciphertext is always sealed under ``current``.
    """

    def __init__(self, user_id: str, keys: dict[int, bytes], current: int) -> None:
        self.user_id = user_id
        self.current = current
        self._keys = dict(keys)
        self._aeads = {version: AESGCM(key) for version, key in keys.items()}  # built once, used per field

    def seal(self, text: str, conversation_id: str, message_id: str, field: str) -> bytes:
        aad = field_aad(self.user_id, conversation_id, message_id, field)
        return seal(self._aeads[self.current], text.encode("utf-8"), aad)

    def open(self, blob: bytes, conversation_id: str, message_id: str, field: str, version: int) -> str:
        key = self._aeads.get(version)
        if key is None:
            raise DecryptionError(f"this text is sealed under data key version {version}, which is not unlocked.")
        return open_sealed(key, blob, field_aad(self.user_id, conversation_id, message_id, field)).decode("utf-8")
