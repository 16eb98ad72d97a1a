"""The Administration page's two forms as posted (every field a string; a checkbox is "on" or
absent), and turning the domain form into a `DomainSettingsInput` (numbers parsed, MB to bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from service.domain.values import Security
from service.errors import InvalidInput
from service.usecases.domains import DomainSettings, DomainSettingsInput

MB = 1024 * 1024
ON = "on"


def _whole(value: str, what: str) -> int | None:
    text = value.strip()
    if not text:
        return None
    if not text.isdigit():
        raise InvalidInput(f"{what} must be a whole number, or empty for no limit.")
    return int(text)


def _megabytes(size: int) -> str:
    """Bytes as MB for the form: "50", "0.5", "0.003906" (saved back, it rounds to the same bytes)."""
    return f"{Decimal(size) / MB:.6f}".rstrip("0").rstrip(".")


@dataclass
class DomainForm:
    """One domain's settings as the form shows them (after a mistake: as typed, but never a password)."""

    retrieval_enabled: str = ""
    smtp_accounts_enabled: str = ""
    oauth_enabled: str = ""
    relay_host: str = ""
    relay_port: str = ""
    relay_security: str = Security.STARTTLS.value
    relay_username: str = ""
    relay_password: str = ""
    relay_verify_certificate: str = ""
    max_tasks_per_user: str = ""
    max_smtp_accounts_per_user: str = ""
    max_message_mb: str = ""
    allowed_hosts: str = ""

    @classmethod
    def of(cls, domain: DomainSettings) -> DomainForm:
        def number(value: int | None) -> str:
            return "" if value is None else str(value)

        return cls(
            retrieval_enabled=ON if domain.retrieval_enabled else "",
            smtp_accounts_enabled=ON if domain.smtp_accounts_enabled else "",
            oauth_enabled=ON if domain.oauth_enabled else "",
            relay_host=domain.relay_host or "",
            relay_port=number(domain.relay_port),
            relay_security=domain.relay_security.value,
            relay_username=domain.relay_username or "",
            relay_verify_certificate=ON if domain.relay_verify_certificate else "",
            max_tasks_per_user=number(domain.max_tasks_per_user),
            max_smtp_accounts_per_user=number(domain.max_smtp_accounts_per_user),
            max_message_mb=_megabytes(domain.max_message_bytes),
            allowed_hosts="\n".join(domain.allowed_hosts),
        )

    def settings(self) -> DomainSettingsInput:
        """The settings to save; InvalidInput for a number or choice that is not one."""
        try:
            security = Security(self.relay_security)
        except ValueError as exc:
            raise InvalidInput("Choose the relay's security: None, STARTTLS or SSL/TLS.") from exc
        port = self.relay_port.strip()
        if port and not port.isdigit():
            raise InvalidInput("The relay's port must be a number between 1 and 65535.")
        try:
            megabytes = Decimal(self.max_message_mb.strip().replace(",", "."))
        except InvalidOperation as exc:
            raise InvalidInput("The maximum message size must be a number of MB, such as 25 or 0.5.") from exc
        if not megabytes.is_finite():
            raise InvalidInput("The maximum message size must be a number of MB, such as 25 or 0.5.")
        return DomainSettingsInput(
            retrieval_enabled=self.retrieval_enabled == ON,
            smtp_accounts_enabled=self.smtp_accounts_enabled == ON,
            oauth_enabled=self.oauth_enabled == ON,
            max_tasks_per_user=_whole(self.max_tasks_per_user, "Retrieval tasks per user"),
            max_smtp_accounts_per_user=_whole(self.max_smtp_accounts_per_user, "SMTP accounts per user"),
            max_message_bytes=round(megabytes * MB),
            allowed_hosts=tuple(self.allowed_hosts.splitlines()),
            relay_host=self.relay_host,
            relay_port=int(port) if port else None,
            relay_security=security,
            relay_username=self.relay_username,
            relay_verify_certificate=self.relay_verify_certificate == ON,
        )


@dataclass
class UserForm:
    """The "Add user" form."""

    email: str = ""
    display_name: str = ""
    password: str = ""
    is_admin: str = ""


@dataclass
class UserEditForm:
    """A user's "Edit" form: display name and administrator role."""

    display_name: str = ""
    is_admin: str = ""


@dataclass
class NewPasswordForm:
    """ "Set a new password" for a user: typed twice by the administrator."""

    password: str = ""
    password_confirm: str = ""


@dataclass
class DeleteUserForm:
    """ "Delete user": the box saying the administrator understands that everything of theirs goes."""

    confirm: str = ""
