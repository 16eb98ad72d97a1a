"""Tributary's own sign-in passwords: the policy for choosing one, and argon2id hashes
(argon2-cffi's defaults, RFC 9106).

The policy (NIST SP 800-63B, 5.1.1.2): at least `MIN_PASSWORD_LENGTH` characters,
and not one of the 30,000 most common passwords (the list zxcvbn keeps, compared
case-insensitively: "Password1" is as guessable as "password1"). No composition
rules. The list is loaded once, on the first check.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from service.errors import InvalidInput

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


@cache
def _dummy_hash() -> str:
    """A real hash, so that checking an unknown user costs the same time as a known one."""
    return _hasher.hash("tributary-timing-equaliser")


TOO_COMMON = "This password is one of the most common ones; choose one that is harder to guess."


@cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # 30 ms of word lists: only when a password is set

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    """True when the password, in any case, is on zxcvbn's list of common passwords."""
    return password.lower() in _common_passwords()


def check_strength(password: str) -> None:
    """Raise InvalidInput, in one sentence, for a password too short or too common to use."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if is_common(password):
        raise InvalidInput(TOO_COMMON)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; with no hash, spends the same time and says False."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
