"""Settings, read from the environment (prefix TRIBUTARY_) when asked for, never at import.

`Settings()` reads the environment each time it is built; the faces build one at
start-up and pass it down. Secrets that may be generated (the encryption key) are
resolved by `service.persistence.secrets`, not here, so building settings has no
side effects.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. Each field is TRIBUTARY_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="TRIBUTARY_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the embedded database, key file and sessions live.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite file tributary.db in DATA_DIR. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s), comma-separated, newest first. "
        "Unset: a key file in DATA_DIR is created (mode 0600) and reused.",
    )
    retrieval_interval: int = Field(default=600, ge=10, description="Seconds between automatic retrievals.")
    retrieval_jitter: float = Field(default=0.1, ge=0, le=1, description="Fraction of the interval to spread runs by.")
    run_deadline_seconds: int = Field(
        default=3600, ge=10, description="A retrieval run stops (keeping what it stored) after this long."
    )
    retrieval_batch_messages: int = Field(default=250, ge=1, description="Messages per committed batch.")
    retrieval_batch_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="About this many bytes per batch."
    )
    lease_seconds: int = Field(
        default=90, ge=2, description="A run's lease on its task; renewed while it runs, expires if the worker dies."
    )
    worker_concurrency: int = Field(default=8, ge=1, description="Retrieval runs at once per process.")
    push_connections: int = Field(
        default=500,
        ge=0,
        description="IMAP push (IDLE) connections one serve or worker process holds at most; 0 turns push off here.",
    )
    push_lease_seconds: int = Field(
        default=60,
        ge=2,
        description="A worker's lease on a task's push connection; a dead worker's are taken over after this.",
    )
    log_retention_days: int = Field(default=30, ge=1, description="Log entries older than this are pruned.")
    session_idle_minutes: int = Field(default=120, ge=1, description="Signed-in sessions expire after this idle time.")
    secure_cookies: bool = Field(
        default=False,
        description="Served over HTTPS: cookies are Secure and named with the __Host- prefix.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated IP addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed, e.g. 127.0.0.1 or 10.0.0.0/8. Empty: no forwarded header is believed.",
    )
    allowed_hosts: str = Field(
        default="",
        description="Comma-separated host names the web app answers to (the Host header), e.g. "
        "mail.example.com,*.example.com. Empty: any host.",
    )
    extra_ca_file: Path | None = Field(
        default=None,
        description="A PEM file of extra certificate authorities to trust for remote servers "
        "(a company CA), beside the system's.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="The least severe log lines written: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one readable line per event; json: one JSON object per line (time, level, logger, "
        "message, request_id, client, user_id).",
    )
    metrics: bool = Field(
        default=False, description="on: the web app serves Prometheus metrics at /metrics (off: /metrics is 404)."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="A port on which `tributary worker` (and `serve`) serve their Prometheus metrics at /metrics, "
        "apart from the web app. Unset: no metrics port.",
    )
    metrics_address: str = Field(
        default="127.0.0.1", description="The address the metrics port listens on (0.0.0.0: every interface)."
    )
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    body_store: Literal["database", "files"] | None = Field(
        default=None,
        description="Where message bodies live: database (the message_body table) or files (append-only "
        "segment files under DATA_DIR/bodies). Unset: files on SQLite, database on PostgreSQL. With "
        "PostgreSQL, choose files only when every serve and worker process shares one DATA_DIR (one host): "
        "a body written on one host is unreadable on another.",
    )
    outbound_allow: str = Field(
        default="",
        description="Comma-separated networks every domain may reach despite the default policy, e.g. 127.0.0.0/8.",
    )

    public_url: str = Field(
        default="",
        description="The address users reach the web app at, e.g. https://mail.example.com; OAuth2 sign-in "
        "sends browsers back to {PUBLIC_URL}/oauth/callback, the redirect URI registered with each provider.",
    )
    oauth_google_client_id: str = Field(
        default="", description='Google OAuth client id; empty: "Sign in with Google" is not offered.'
    )
    oauth_google_client_secret: SecretStr | None = Field(default=None, description="Google OAuth client secret.")
    oauth_microsoft_client_id: str = Field(
        default="",
        description='Microsoft (Entra ID) application id; empty: "Sign in with Microsoft" is not offered.',
    )
    oauth_microsoft_client_secret: SecretStr | None = Field(
        default=None, description="Microsoft application client secret."
    )
    oauth_microsoft_tenant: str = Field(
        default="common",
        description="Microsoft tenant: common, organizations, consumers, or a tenant id or domain.",
    )
    oauth_providers: str = Field(
        default="",
        description="Comma-separated names of further OAuth2 providers, each configured by "
        "TRIBUTARY_OAUTH_<NAME>_ISSUER (or _AUTHORIZE_URL, _TOKEN_URL, _USERINFO_URL), _CLIENT_ID, "
        "_CLIENT_SECRET, _SCOPES, _LABEL and the mail-server defaults _IMAP_HOST, _IMAP_PORT, _POP3_HOST, "
        "_POP3_PORT, _SMTP_HOST, _SMTP_PORT, _SMTP_SECURITY.",
    )

    spamd_address: str = Field(
        default="",
        description="SpamAssassin's spamd as host:port, e.g. 127.0.0.1:783, to check mail arriving in the Inbox "
        "of tasks with filtering on. Empty: only the spam headers of upstream filters count.",
    )
    spamd_timeout_seconds: float = Field(
        default=5,
        gt=0,
        le=120,
        description="How long one spamd check may take before the message is delivered unchecked.",
    )

    discovery_nameservers: str = Field(
        default="",
        description="Comma-separated DNS servers (address or address:port) that set-up from an email address "
        "asks for SRV and MX records and autoconfig host addresses. Empty: the system's resolvers.",
    )
    discovery_timeout_seconds: float = Field(
        default=6,
        gt=0,
        le=60,
        description="How long finding the servers for an email address may take in all (each lookup gets less).",
    )

    @field_validator("discovery_nameservers")
    @classmethod
    def _nameservers(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            host = item.rsplit(":", 1)[0] if item.count(":") == 1 else item
            host = host.strip("[]").split("]:")[0]
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address (with an optional :port)") from None
        return ",".join(items)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("spamd_address")
    @classmethod
    def _spamd(cls, value: str) -> str:
        text = value.strip()
        if text and not re.fullmatch(r"\[[0-9A-Fa-f:.]+\](:\d{1,5})?|[^:\[\]\s]+(:\d{1,5})?", text):
            raise ValueError("write host:port, for example 127.0.0.1:783")
        return text

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        text = value.strip().rstrip("/")
        if text and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", text):
            raise ValueError("write the web app's address, for example https://mail.example.com")
        return text

    @field_validator("oauth_microsoft_tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        text = value.strip() or "common"
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,100}", text):
            raise ValueError("write common, organizations, consumers, or a tenant id or domain")
        return text

    @property
    def oauth_redirect_uri(self) -> str:
        """Where providers send the browser back after consent: {PUBLIC_URL}/oauth/callback."""
        return f"{self.public_url}/oauth/callback"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return ",".join(items)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        items = [item.strip().lower() for item in value.split(",") if item.strip()]
        for item in items:
            if not re.fullmatch(r"\*|(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\]", item):
                raise ValueError(f"write host names separated by commas, for example mail.example.com (not {item!r})")
        return ",".join(items)

    @property
    def allowed_host_list(self) -> list[str]:
        """ALLOWED_HOSTS as a list (empty: any Host header is accepted)."""
        return [item for item in self.allowed_hosts.split(",") if item]

    @property
    def trusted_proxy_list(self) -> list[str]:
        """TRUSTED_PROXIES as a list of addresses and networks (empty: trust no forwarded header)."""
        return [item for item in self.trusted_proxies.split(",") if item]

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def async_database_url(self) -> str:
        """The URL for the asyncio engine (aiosqlite for SQLite, psycopg 3 for PostgreSQL)."""
        url = self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'tributary.db'}"
        if url.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
        if url.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    @property
    def sync_database_url(self) -> str:
        """The same database for synchronous tools (Alembic)."""
        url = self.async_database_url
        if url.startswith("sqlite+aiosqlite://"):
            return "sqlite://" + url.removeprefix("sqlite+aiosqlite://")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.async_database_url.startswith("sqlite")

    @property
    def resolved_body_store(self) -> Literal["database", "files"]:
        """BODY_STORE, or its default for the database: files on SQLite, database on PostgreSQL."""
        if self.body_store is not None:
            return self.body_store
        return "files" if self.is_sqlite else "database"
