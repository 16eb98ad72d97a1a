"""Signed links for a message's inline (cid:) images, which the body frame loads without cookies.

The body frame is sandboxed without allow-same-origin, so its document has an
opaque origin and the browser treats its image requests as cross-site: the
SameSite session cookie is not sent. An inline image's URL therefore carries
its own proof: an HMAC-SHA256 over (user id, message id, expiry) under a key
derived with HKDF from the newest encryption key (its own label, like the CSRF
secret in web.support.csrf). The route checks it, then reads the part as that
user, so a link works for one message of one user, for `TTL_SECONDS`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.config import Settings
from service.persistence.secrets import load_or_create_keys

TTL_SECONDS = 3600
_HKDF_INFO = b"tributary web inline images v1"


@lru_cache(maxsize=4)
def _derive(key: bytes) -> bytes:
    try:
        material = base64.urlsafe_b64decode(key)
    except ValueError:
        material = key
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material)


def _signature(settings: Settings, user_id: int, message_id: int, expires: int) -> str:
    key = _derive(load_or_create_keys(settings)[0])
    digest = hmac.new(key, f"{user_id}:{message_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def inline_url_maker(settings: Settings, *, user_id: int, message_id: int) -> Callable[[str], str]:
    """part id -> the signed URL of that inline image of this message."""
    expires = int(time.time()) + TTL_SECONDS
    signature = _signature(settings, user_id, message_id, expires)
    return lambda part_id: f"/mail/inline/{message_id}/{part_id}?u={user_id}&e={expires}&s={signature}"


def verify(settings: Settings, *, user_id: int, message_id: int, expires: int, signature: str) -> bool:
    """True when the link was made by `inline_url_maker` for this user and message and has not expired."""
    if expires < time.time():
        return False
    return hmac.compare_digest(_signature(settings, user_id, message_id, expires), signature)
