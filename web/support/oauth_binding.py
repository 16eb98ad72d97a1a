"""The browser-session binding of an OAuth2 sign-in (issue 15): one helper for the start and the callback.

`start_authorization` stores (the SHA-256 of) a binding with the `state` it sends to the
provider, and `complete_authorization` accepts the callback only from a browser that
presents the same binding (RFC 6749 10.12: the state must be bound to the user agent).
The binding is an HMAC-SHA256 of the server-side session id (support.sessions), under a
secret derived with HKDF from the newest Fernet key with its own label, like the CSRF
token (support.csrf): the id itself never reaches the database, and a binding cannot be
computed without the key. A browser without a stored session has no binding (None): then
only a flow started by the CLI (stored without a binding) can complete in it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar import Request

from service.config import Settings
from service.persistence.secrets import load_or_create_keys
from web.support.sessions import loaded_session_id

STATE_KEY = "oauth_binding_secret"  # in app.state, set by create_app
_HKDF_INFO = b"tributary web oauth session binding v1"


def derive_binding_secret(settings: Settings) -> bytes:
    """The HMAC secret for session bindings, derived from the newest encryption key."""
    newest = load_or_create_keys(settings)[0]
    try:
        key_material = base64.urlsafe_b64decode(newest)
    except ValueError:
        key_material = newest  # a malformed key is reported by SecretBox at start-up
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(key_material)


def binding_for(secret: bytes, session_id: str) -> str:
    return hmac.new(secret, f"session:{session_id}".encode(), hashlib.sha256).hexdigest()


def session_binding(request: Request[Any, Any, Any]) -> str | None:
    """The binding of the browser session this request came with; None without a stored session."""
    session_id = loaded_session_id(request.scope)
    if session_id is None:
        return None
    secret = request.app.state[STATE_KEY]
    assert isinstance(secret, bytes)
    return binding_for(secret, session_id)
