"""Sending: compose, the durable outbox, delivery through an SMTP account or the company relay.

compose page -> `send_message` -> outbox row (message in Outbox) -> protocols.smtp
-> Sent folder, or back to the outbox with a retry time (`process_due_outbox`).
Modules: `senders` (Send From), `queue` (a new message), `attempt` (one delivery
attempt), `outcome` (recording it), `outbox` (retries, listing, "send again"), `drafts` (Save draft,
Edit draft), `cancel` (an outbox message back to Drafts), `sent_copy` and `background` (the copy in
the remote mailbox's Sent folder, made after the send has answered).
"""

from service.usecases.sending.background import wait_for_background_copies
from service.usecases.sending.cancel import CancelResult, cancel_outbox_message
from service.usecases.sending.drafts import (
    DraftAttachment,
    DraftRef,
    OpenedDraft,
    SavedDraft,
    draft_attachments,
    new_draft_key,
    offered_attachments,
    open_draft,
    save_draft,
)
from service.usecases.sending.outbox import list_outbox, process_due_outbox, retry_outbox_message
from service.usecases.sending.queue import send_message
from service.usecases.sending.senders import default_sender, send_from_choices, signatures

__all__ = [
    "CancelResult",
    "DraftAttachment",
    "DraftRef",
    "OpenedDraft",
    "SavedDraft",
    "cancel_outbox_message",
    "default_sender",
    "draft_attachments",
    "list_outbox",
    "new_draft_key",
    "offered_attachments",
    "open_draft",
    "process_due_outbox",
    "retry_outbox_message",
    "save_draft",
    "send_from_choices",
    "send_message",
    "signatures",
    "wait_for_background_copies",
]
