"""`tributary smtp ...`, `send` and `outbox`: SMTP accounts and sending."""
