"""Messages the tests deliver: ordinary ones, 8-bit ones, and ones a parser chokes on."""

from __future__ import annotations

import itertools

_counter = itertools.count(1)


def sample(subject: str, *, body: str = "Hello,\r\nthis is a test.\r\n", sender: str = "sender@example.test") -> bytes:
    """A small, valid, unique RFC 5322 message with CRLF line ends."""
    n = next(_counter)
    return (
        f"From: Sender <{sender}>\r\n"
        f"To: reader@example.test\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Tue, 05 Mar 2024 10:{n % 60:02d}:00 +0000\r\n"
        f"Message-ID: <sample-{n}@example.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}"
    ).encode()


# Raw UTF-8 and Latin-1 in headers and body, no MIME declaration at all.
EIGHT_BIT = (
    b"From: J\xc3\xb6rg <joerg@example.test>\r\n"
    b"To: reader@example.test\r\n"
    b"Subject: Gr\xc3\xbc\xc3\x9fe aus K\xf6ln\r\n"
    b"Message-ID: <eight-bit@example.test>\r\n"
    b"\r\n"
    b"Stra\xdfe \xc3\xa4\xc3\xb6\xc3\xbc \xff\xfe\r\n"
)

# A header without a colon, a broken encoded word, a boundary that never comes, control
# bytes and invalid UTF-8 (no NUL: IMAP servers replace it, RFC 3501 4.3).
MALFORMED = (
    b"From: <<<@@@>>>\r\n"
    b"this line is not a header\r\n"
    b"Subject: =?utf-8?B?broken===?=\r\n"
    b"Date: 32 Foo 99999 99:99:99\r\n"
    b'Content-Type: multipart/mixed; boundary="never"\r\n'
    b"\r\n"
    b"--wrong\r\n\x01\x02 binary \xc3\x28\r\n"
)
