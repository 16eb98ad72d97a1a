"""What a look-up found, as `tributary discover --json` prints it and GET /api/v1/discover answers it:
the best server per protocol ("imap", "pop3", "smtp"; null when none), every server found, where each
came from, and whether the provider needs OAuth2 sign-in and this server offers it."""

from __future__ import annotations

from typing import Any

from service.domain.discovery import PROTOCOLS, Discovery, FoundServer


def _server(server: FoundServer | None) -> dict[str, Any] | None:
    if server is None:
        return None
    return {
        "protocol": server.protocol,
        "host": server.host,
        "port": server.port,
        "security": server.security.value,
        "username": server.username,
        "source": server.source.value,
        "where": server.where,
        "guess": server.guess,
        "oauth2_only": server.oauth2_only,
    }


def to_dict(found: Discovery) -> dict[str, Any]:
    """The answer as the CLI's --json and the API print it."""
    oauth2 = None
    if found.oauth2_provider or found.oauth2_required:
        oauth2 = {
            "required": found.oauth2_required,
            "provider": found.oauth2_provider,
            "offered": bool(found.oauth2_label),
            "label": found.oauth2_label or None,
        }
    return {
        "email": found.address.email,
        "domain": found.address.domain,
        "found": found.source is not None,
        "source": found.source.value if found.source else None,
        "guess": found.guess,
        "provider": found.provider,
        "message": found.message,
        "oauth2": oauth2,
        **{protocol: _server(found.best(protocol)) for protocol in PROTOCOLS},
        "servers": [_server(s) for s in found.servers],
        "tried": list(found.tried),
    }
