"""One adapter per protocol (the packages imap/, pop3/ and smtp/), with the TLS mode as data.

Adapters are the only code that talks to imaplib/imapclient, poplib and
aiosmtplib; they translate those libraries' and ssl's exceptions into
`service.errors` at this edge. Shared pieces: `tls` (contexts, certificate
descriptions, error translation), `steps` (Test Connection reports),
`transcript` (debug logs with credentials redacted).
"""
