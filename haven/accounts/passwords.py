"""The password policy and Argon2id password hashing.

Policy (documented in README "Security model"): at least ``HAVEN_PASSWORD_MIN_LENGTH`` characters
(default 12) and at most 1024; not in the shipped list of common passwords (``common-passwords.txt``,
compared case-insensitively, also with trailing digits/punctuation stripped); not the user name; not a
single repeated character. Length beats composition rules (NIST SP 800-63B), so there are none.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from haven.accounts.crypto import Argon2Params
from haven.errors import InvalidRequestError

MAX_LENGTH = 1024
COMMON_FILE = Path(__file__).with_name("common-passwords.txt")


class WeakPasswordError(InvalidRequestError):
    code = "weak_password"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def check_password(password: str, *, name: str = "", min_length: int = 12) -> None:
    """Raises WeakPasswordError with one sentence naming the rule that failed."""
    if len(password) < min_length:
        raise WeakPasswordError(f"the password must have at least {min_length} characters.", param="password")
    if len(password) > MAX_LENGTH:
        raise WeakPasswordError(f"the password must have at most {MAX_LENGTH} characters.", param="password")
    folded = password.casefold()
    core = re.sub(r"[\d\W_]+$", "", folded)
    common = common_passwords()
    if folded in common or core in common or folded.replace(" ", "") in common:
        raise WeakPasswordError("this password is in the list of common passwords; choose another.", param="password")
    if name and name.casefold() in folded and len(folded) - len(name) < min_length // 2:
        raise WeakPasswordError("the password must not be the user name.", param="password")
    if len(set(password)) <= 2:
        raise WeakPasswordError("the password must not repeat one or two characters.", param="password")


class PasswordHashing:
    """argon2-cffi's PasswordHasher with the configured Argon2id parameters."""

    def __init__(self, params: Argon2Params) -> None:
        self.params = params
        self._hasher = PasswordHasher(
            time_cost=params.time_cost, memory_cost=params.memory_kib, parallelism=params.parallelism
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def dummy_verify(self) -> None:
        """Spend the same time for an unknown user as for a wrong password (no user enumeration)."""
        self.verify(self._dummy(), "not the password")

    @lru_cache(maxsize=1)  # noqa: B019 - one per instance, the instance lives as long as the app
    def _dummy(self) -> str:
        return self._hasher.hash("haven dummy password")
