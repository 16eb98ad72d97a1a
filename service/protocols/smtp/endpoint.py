"""Where and how to reach an SMTP server: the adapter's only input besides the message."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service.domain.outbound import STRICT, OutboundPolicy
from service.domain.values import Security


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """Host, port, security mode (as data), certificate checking, credentials, and the outbound
    policy deciding which of the host's addresses may be reached. The password and the OAuth2 token
    stay out of repr()."""

    host: str
    port: int
    security: Security
    verify_certificate: bool = True
    auth_required: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    timeout_seconds: float = 30
    extra_ca_file: Path | None = None
    # Strict unless the use case passes the domain's (usecases/smtp_accounts.endpoint_for, sending/senders).
    policy: OutboundPolicy = field(default=STRICT, repr=False)
    # An OAuth2 access token: AUTH OAUTHBEARER or XOAUTH2 instead of the password (see auth.py).
    oauth_token: str | None = field(default=None, repr=False)
