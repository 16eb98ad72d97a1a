"""CSRF protection for every form and htmx request (Litestar's CSRFConfig, double-submit cookie).

Litestar signs each token with an HMAC secret. Ours is derived with HKDF-SHA256
from the newest Fernet key (TRIBUTARY_SECRET_KEY, or the 0600 key file in the
data directory that `service.persistence.secrets` creates on first start), with
its own label, so:

- every web process that shares the key (or the data directory) accepts the
  others' tokens, with no second secret to generate, store or back up;
- knowing the CSRF secret reveals nothing about the encryption key;
- rotating the encryption key also rotates the CSRF secret (open forms then
  need a reload once).

Forms carry the token as the hidden field `_csrf_token` (`{{ csrf_input | safe }}`);
htmx sends it in the X-CSRFToken header (hx-headers on <body>). The cookie is
HttpOnly (pages never read it from script) and Secure behind HTTPS.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar.config.csrf import CSRFConfig

from service.config import Settings
from service.persistence.secrets import load_or_create_keys

CSRF_COOKIE = "tributary_csrf"
CSRF_HEADER = "x-csrftoken"
_HKDF_INFO = b"tributary web csrf v1"


def derive_csrf_secret(settings: Settings) -> str:
    """The HMAC secret for CSRF tokens, derived from the newest encryption key."""
    newest = load_or_create_keys(settings)[0]
    try:
        key_material = base64.urlsafe_b64decode(newest)
    except ValueError:
        key_material = newest  # a malformed key is reported by SecretBox at start-up
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(key_material).hex()


def csrf_config(settings: Settings) -> CSRFConfig:
    return CSRFConfig(
        secret=derive_csrf_secret(settings),
        cookie_name=CSRF_COOKIE,
        header_name=CSRF_HEADER,
        cookie_secure=settings.secure_cookies,
        cookie_httponly=True,
        cookie_samesite="lax",
        exclude=["^/health$", "^/metrics$"],
    )
