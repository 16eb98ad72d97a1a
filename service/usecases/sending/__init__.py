"""Sending: compose, the durable outbox, delivery through an SMTP account or the company relay.

compose page -> `send_message` -> outbox row (message in Outbox) -> protocols.smtp
-> Sent folder, or back to the outbox with a retry time (`process_due_outbox`).
Modules: `senders` (Send From), `queue` (a new message), `attempt` (one delivery
attempt), `outcome` (recording it), `outbox` (retries, listing, "send again").
"""

from service.usecases.sending.outbox import list_outbox, process_due_outbox, retry_outbox_message
from service.usecases.sending.queue import send_message
from service.usecases.sending.senders import default_sender, send_from_choices

__all__ = [
    "default_sender",
    "list_outbox",
    "process_due_outbox",
    "retry_outbox_message",
    "send_from_choices",
    "send_message",
]
