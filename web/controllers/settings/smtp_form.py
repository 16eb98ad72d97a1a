"""The "SMTP Account" form: what it posts, how it is read into an SmtpAccountInput with an error
per field (using the domain's own checks), and how a saved account fills it for "Edit".
The password is never filled in: it is write-only."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from litestar.enums import RequestEncodingType
from litestar.params import Body

from service.domain.compose import check_header_text, parse_address
from service.domain.smtp_accounts import (
    COPY_NEEDS_LOCAL,
    MAX_TIMEOUT,
    MIN_TIMEOUT,
    SmtpAccountInput,
    SmtpAccountView,
    check_host,
)
from service.domain.values import Security, default_port
from service.errors import InvalidInput
from web.controllers.settings.common import checked, choice, number

ON = "on"
ASK_FOR_CREDENTIALS = "Enter the password for this SMTP account, or turn authentication off."
NO_COPY_TASK = "Choose one of your IMAP retrieval tasks, or none."


@dataclass
class SmtpForm:
    """Every field as typed. Checkboxes are "on" when ticked and absent (empty) otherwise."""

    display_name: str = ""
    email_address: str = ""
    host: str = ""
    security: str = Security.STARTTLS.value
    port: str = ""
    auth_required: str = ""
    username: str = ""
    password: str = ""
    verify_certificate: str = ""
    timeout_seconds: str = "30"
    signature_text: str = ""
    signature_html: str = ""
    save_copy_in_sent: str = ""
    messages_per_minute: str = ""
    is_default: str = ""
    enable_debug: str = ""
    is_active: str = ""
    sent_copy_task: str = ""  # a retrieval task's id, or empty: no copy in a remote Sent folder

    @classmethod
    def blank(cls) -> SmtpForm:
        """The "New SMTP Account" form: STARTTLS on 587, signing in, certificate checked."""
        return cls(
            port=str(default_port("smtp", Security.STARTTLS)),
            auth_required=ON,
            verify_certificate=ON,
            save_copy_in_sent=ON,
            is_active=ON,
        )

    @classmethod
    def of(cls, account: SmtpAccountView) -> SmtpForm:
        def box(value: bool) -> str:
            return ON if value else ""

        return cls(
            display_name=account.display_name,
            email_address=account.email_address,
            host=account.host,
            security=account.security.value,
            port=str(account.port),
            auth_required=box(account.auth_required),
            username=account.username,
            verify_certificate=box(account.verify_certificate),
            timeout_seconds=str(account.timeout_seconds),
            signature_text=account.signature_text,
            signature_html=account.signature_html,
            save_copy_in_sent=box(account.save_copy_in_sent),
            messages_per_minute=str(account.messages_per_minute or ""),
            is_default=box(account.is_default),
            enable_debug=box(account.enable_debug),
            is_active=box(account.is_active),
            sent_copy_task=str(account.sent_copy_task or ""),
        )

    def without_password(self) -> SmtpForm:
        return replace(self, password="")

    def read(self, *, has_password: bool = False) -> tuple[SmtpAccountInput, dict[str, str]]:
        """The settings this form describes, and what is wrong with them (field name -> sentence).

        `has_password`: an account being edited already stores one, so an empty password keeps it.
        """
        errors: dict[str, str] = {}
        for name, check in (
            ("email_address", lambda v: parse_address(v, "email address")),
            ("host", check_host),
            ("display_name", lambda v: check_header_text(v, "display name")),
            ("username", lambda v: check_header_text(v, "username")),
        ):
            try:
                check(getattr(self, name))
            except InvalidInput as exc:
                errors[name] = exc.message
        port = number(self.port, errors, "port", "The port must be a number from 1 to 65535.")
        if port is not None and not 1 <= port <= 65535:
            errors["port"] = "The port must be a number from 1 to 65535."
        timeout_message = f"The connection timeout must be from {MIN_TIMEOUT} to {MAX_TIMEOUT} seconds."
        timeout = number(self.timeout_seconds, errors, "timeout_seconds", timeout_message)
        if timeout is not None and not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
            errors["timeout_seconds"] = timeout_message
        rate_message = "Enter a number of messages per minute (at least 1), or leave it empty for no limit."
        rate = number(self.messages_per_minute, errors, "messages_per_minute", rate_message)
        if rate is not None and rate < 1:
            errors["messages_per_minute"] = rate_message
        copy_task = number(self.sent_copy_task, errors, "sent_copy_task", NO_COPY_TASK)
        auth = checked(self.auth_required)
        if auth and not self.password and not has_password:
            errors["password"] = ASK_FOR_CREDENTIALS
        account = SmtpAccountInput(
            email_address=self.email_address,
            host=self.host,
            port=port,
            security=choice(Security, self.security, Security.STARTTLS),
            display_name=self.display_name,
            auth_required=auth,
            username=self.username,
            verify_certificate=checked(self.verify_certificate),
            timeout_seconds=timeout or 30,
            signature_text=self.signature_text,
            signature_html=self.signature_html,
            save_copy_in_sent=checked(self.save_copy_in_sent),
            messages_per_minute=rate,
            enable_debug=checked(self.enable_debug),
            is_active=checked(self.is_active),
            is_default=checked(self.is_default),
            sent_copy_task_id=copy_task,
        )
        if copy_task is not None and not account.save_copy_in_sent:
            errors["sent_copy_task"] = COPY_NEEDS_LOCAL
        return account, errors


SmtpBody = Annotated[SmtpForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
