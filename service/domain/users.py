"""What the faces get to see of users and domains (never the table rows themselves)."""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from service.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class UserView:
    id: int
    email: str
    display_name: str
    is_admin: bool
    domain: str


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
