"""What the faces get to see of users and domains (never the table rows themselves)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from service.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class UserView:
    id: int
    email: str
    display_name: str
    is_admin: bool
    domain: str


@dataclass(frozen=True, slots=True)
class Authenticated(UserView):
    """A user who just proved their password, with the stamp of the hash it was checked against.

    A face keeps `session_stamp` in the signed-in session; `session_stamp_of` of the user's hash
    changes whenever their password does, so sessions started before a change are ended."""

    session_stamp: str = ""


@dataclass(frozen=True, slots=True)
class AdminUserView:
    """A user as the Administration page lists them (a UserView plus whether they may sign in)."""

    id: int
    email: str
    display_name: str
    is_admin: bool
    domain: str
    is_active: bool


def session_stamp_of(password_hash: str) -> str:
    """A short fingerprint of a password hash, kept in each signed-in session.

    Every argon2 hash carries a fresh random salt, so any new password (or a re-hash of the
    same one) gives a new stamp. The stamp is a SHA-256 of the whole hash string: it reveals
    nothing that would help guess the password (the salt is not recoverable from it), so the
    session store may hold it without a key."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def same_stamp(stored: object, current: str) -> bool:
    """True when a session's stored stamp is the user's current one (constant-time)."""
    return isinstance(stored, str) and hmac.compare_digest(stored.encode(), current.encode())


@dataclass(frozen=True, slots=True)
class DomainView:
    id: int
    name: str
    retrieval_enabled: bool
    smtp_accounts_enabled: bool
    max_tasks_per_user: int | None
    max_message_bytes: int


def normalise_email(address: str) -> str:
    """Validate an address's syntax (no DNS look-up) and return it normalised, lower-case."""
    from email_validator import EmailNotValidError, validate_email  # 20 ms of regexes: on first use

    if any(ch in address for ch in "\r\n\0"):
        raise InvalidInput("An email address cannot contain line breaks.")
    try:
        # test_environment admits the reserved .test names that test and demo set-ups use.
        valid = validate_email(address.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{address.strip()!r} is not a valid email address: {exc}") from exc
    return valid.normalized.lower()


def normalise_domain(name: str) -> str:
    """A domain name as stored: lower-case, no trailing dot, checked like an address's domain."""
    return normalise_email(f"postmaster@{name.strip().rstrip('.')}").split("@", 1)[1]
