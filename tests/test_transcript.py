"""Protocol transcripts keep what helps debugging and never a credential."""

from __future__ import annotations

from service.protocols.transcript import REDACTED, Transcript


def test_client_credentials_are_redacted_and_server_capabilities_kept() -> None:
    transcript = Transcript(secrets=("hunter2",))
    transcript.received("250-AUTH LOGIN PLAIN")
    transcript.sent("AUTH LOGIN")
    transcript.received("334 VXNlcm5hbWU6")
    transcript.sent("YWxpY2U=")  # a SASL answer: always redacted
    transcript.sent("A001 LOGIN alice hunter2")
    transcript.sent("PASS hunter2")
    transcript.sent("APOP alice 0123456789abcdef")
    transcript.received("-ERR your password hunter2 is wrong")  # an echo of the secret, however unlikely
    text = transcript.text()
    assert "< 250-AUTH LOGIN PLAIN" in text
    assert "hunter2" not in text
    assert "YWxpY2U=" not in text
    assert "0123456789abcdef" not in text
    assert text.count(REDACTED) >= 5


def test_oauth_sasl_exchanges_are_redacted() -> None:
    """XOAUTH2/OAUTHBEARER (issue 15): the AUTH / AUTHENTICATE line with its initial response, the
    answer after an empty challenge, and the answer to the JSON error challenge."""
    xoauth2 = "dXNlcj1tZUBleGFtcGxlLnRlc3QBYXV0aD1CZWFyZXIgY2FuYXJ5AQE="
    transcript = Transcript()
    transcript.sent(f"AUTH XOAUTH2 {xoauth2}")  # SMTP with an initial response
    transcript.received("334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=")  # the error challenge, kept
    transcript.sent("")  # XOAUTH2's answer to it
    transcript.received("535 5.7.8 Username and Password not accepted")
    transcript.sent("A001 AUTHENTICATE OAUTHBEARER")  # IMAP: the message follows a "+"
    transcript.received("+ ")
    transcript.sent("bixhPW1lQGV4YW1wbGUudGVzdCwBYXV0aD1CZWFyZXIgY2FuYXJ5AQE=")
    transcript.received("+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=")
    transcript.sent("AQ==")
    transcript.received("A001 NO [AUTHENTICATIONFAILED] Authentication failed.")
    text = transcript.text()
    assert "> AUTH XOAUTH2 [redacted]" in text
    assert "> A001 AUTHENTICATE OAUTHBEARER [redacted]" in text
    assert xoauth2 not in text
    assert "bixhPW1l" not in text
    assert "< 334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=" in text
    assert text.count(REDACTED) == 5
