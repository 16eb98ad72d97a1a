"""TLS for every adapter: one way to build client contexts, describe certificates and
turn ssl's exceptions into sentences.

Verification is on unless the account turns it off; then the context still
encrypts but accepts any certificate and any name. `extra_ca_file` (setting
TRIBUTARY_EXTRA_CA_FILE) adds a company CA to the system's trust store.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from service.errors import TlsFailure

WRONG_PORT_HINT = (
    "The port may not match the security setting: SSL/TLS ports (993, 995, 465) expect TLS at once, "
    "STARTTLS and None ports (143, 110, 587, 25) expect plain text first."
)


def client_context(*, verify: bool, extra_ca_file: Path | None = None) -> ssl.SSLContext:
    """A client context: TLS 1.2+, certificate and host name checked unless `verify` is False."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if extra_ca_file is not None:
        context.load_verify_locations(cafile=str(extra_ca_file))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@cache
def shared_client_context(verify: bool, extra_ca_file: Path | None = None) -> ssl.SSLContext:
    """`client_context`, built once per (verify, extra_ca_file) and shared: loading the trust
    store costs hundreds of KB per context, too much for each of hundreds of long-lived IMAP push
    connections. Treat it as read-only; a context is safe to share between connections."""
    return client_context(verify=verify, extra_ca_file=extra_ca_file)


def _name(parts: Any) -> str:
    """'CN=mail.example.com, O=Example' from getpeercert()'s nested tuples."""
    names = [f"{key}={value}" for rdn in parts or () for key, value in rdn]
    return ", ".join(names)


def describe_certificate(sock: ssl.SSLSocket | ssl.SSLObject, *, verified: bool) -> str:
    """Subject, issuer and expiry of the peer's certificate, and whether it was verified."""
    cert = sock.getpeercert() if verified else None
    if cert:
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), UTC)
        return (
            f"{sock.version()}, certificate for {_name(cert.get('subject'))} issued by {_name(cert.get('issuer'))}, "
            f"expires {expires:%Y-%m-%d}, verified"
        )
    der = sock.getpeercert(binary_form=True)
    return f"{sock.version()}, certificate not verified ({len(der or b'')} bytes, verification is off)"


CERTIFICATE_HINT = (
    "A certificate is accepted when an authority this machine trusts issued it, it names the server "
    "address you entered, and it has not expired. Enter the name the certificate is for; if you trust "
    'this server (one with a self-signed certificate, say), turn off "Verify certificate" for it.'
)


class CertificateNotVerified(TlsFailure):
    """The server speaks TLS, but its certificate did not verify: untrusted issuer, another name, expired."""


# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) in plain words.
_UNTRUSTED = "it is not issued by an authority this machine trusts (self-signed, or from a private authority)"
_PROBLEMS = {
    2: _UNTRUSTED,  # unable to get issuer certificate
    9: "it is not valid yet (or this machine's clock is wrong)",
    10: "it has expired",
    18: _UNTRUSTED,  # depth zero self-signed
    19: _UNTRUSTED,  # self-signed certificate in chain
    20: _UNTRUSTED,  # unable to get local issuer certificate
    21: _UNTRUSTED,  # unable to verify the first certificate
    62: "it is for another name than the server address",  # hostname mismatch
    64: "it is for another address than the server address",  # IP address mismatch
}


def tls_failure(exc: BaseException, host: str) -> TlsFailure:
    """A sentence for an ssl error: which host, what was wrong, what to do."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        problem = _PROBLEMS.get(exc.verify_code, "")
        return CertificateNotVerified(
            f"The certificate of {host} could not be verified{': ' + problem if problem else ''} ({reason}). "
            'If you trust this server, turn off "Verify certificate" for this account.'
        )
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "packet length too long" in text:
        return TlsFailure(f"{host} did not answer with TLS. {WRONG_PORT_HINT}")
    return TlsFailure(f"TLS with {host} failed ({getattr(exc, 'reason', None) or text}).")
