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
