"""OAuth2 sign-in for retrieval tasks and SMTP accounts (issue 15).

- `start_authorization`: the provider's consent URL for a task or account
  (authorization code flow with PKCE S256; state single use, ten minutes,
  bound to the user and the browser session).
- `complete_authorization`: the callback; exchanges the code, stores the
  encrypted tokens and the mailbox address.
- `access_token_for`: a valid access token for XOAUTH2 / OAUTHBEARER,
  refreshed shortly before expiry or after a server refused it.

Built on authlib's httpx client (no hand-written token or PKCE code); every
request to a provider goes through the domain's outbound policy
(service/usecases/oauth/http.py). Providers: service.domain.oauth.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.usecases.oauth.endpoints import forget_discovery
    from service.usecases.oauth.flow import CompletedAuthorization, complete_authorization, start_authorization
    from service.usecases.oauth.tokens import access_token_for

_MODULE_OF = {
    "forget_discovery": "endpoints",
    "CompletedAuthorization": "flow",
    "complete_authorization": "flow",
    "start_authorization": "flow",
    "access_token_for": "tokens",
}


def __getattr__(name: str) -> Any:
    """`oauth.NAME`: imported from its module on first use (PEP 562), so that `oauth.targets` alone
    (which lists and loads sign-in targets) does not load httpx and authlib."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CompletedAuthorization",
    "access_token_for",
    "complete_authorization",
    "forget_discovery",
    "start_authorization",
]
