"""Sending: compose, the durable outbox, delivery through an SMTP account or the company relay.

compose page -> `send_message` -> outbox row (message in Outbox) -> protocols.smtp
-> Sent folder, or back to the outbox with a retry time (`process_due_outbox`).
Modules: `senders` (Send From), `queue` (a new message), `attempt` (one delivery
attempt), `outcome` (recording it), `outbox` (retries, listing, "send again"), `drafts` (Save draft,
Edit draft), `cancel` (an outbox message back to Drafts), `sent_copy` and `background` (the copy in
the remote mailbox's Sent folder, made after the send has answered).

This package imports its modules when one of these names is first used (PEP 562), so that a
retrieval run, which needs only `known_copies`, does not load the sending stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULE_OF = {
    "wait_for_background_copies": "background",
    "CancelResult": "cancel",
    "cancel_outbox_message": "cancel",
    "DraftAttachment": "drafts",
    "DraftRef": "drafts",
    "OpenedDraft": "drafts",
    "SavedDraft": "drafts",
    "draft_attachments": "drafts",
    "new_draft_key": "drafts",
    "offered_attachments": "drafts",
    "open_draft": "drafts",
    "save_draft": "drafts",
    "list_outbox": "outbox",
    "process_due_outbox": "outbox",
    "retry_outbox_message": "outbox",
    "send_message": "queue",
    "default_sender": "senders",
    "send_from_choices": "senders",
    "signatures": "senders",
}


def __getattr__(name: str) -> Any:
    """`sending.NAME`: imported from its module on first use (then the module's own attribute)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


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
