"""Spam and content filtering of retrieved mail arriving in the Inbox ("Apply spam and content filtering").

Two steps around each batch's commit (store.py):

1. `screen`, before the write transaction, decides everything: the spam verdict
   and the rules' verdict of each message. Never hold a session across network
   I/O, and never run CPU-bound work on the event loop: the upstream spam
   headers and the user's rules (read once per batch, in a short read
   transaction; RE2 patterns, see service.domain.filter_matching) are applied
   in a worker thread (asyncio.to_thread), so a batch of large messages
   against many patterns never stalls other requests. Spam is what upstream
   filters marked (X-Spam-Flag: YES, X-Spam-Status: Yes) or, with
   TRIBUTARY_SPAMD_ADDRESS set, what spamd calls spam. A spamd that is down,
   slow or confused never loses or holds mail: the message counts as not spam,
   a warning goes to the log, and spamd rests for SPAMD_REST_SECONDS so a dead
   daemon costs one timeout per rest, not one per message.
2. `deliver_filtered`, inside the transaction that stores the batch and its
   cursor, only applies what was decided: spam goes to Junk; the rest is
   grouped by the destination its verdict names and delivered with the rules'
   flags; a deleted message is not stored, while its remote identity (cursor
   or UIDL) is recorded by the caller as usual. A failed commit therefore
   leaves neither the messages nor any effect of the rules. The rules are
   those of the moment the batch was screened; an edit saved meanwhile
   applies from the next batch on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.filter_matching import evaluate_all, is_spam_by_headers
from service.domain.filters import FilterRule, Verdict
from service.domain.values import SpecialUse
from service.errors import InvalidInput, ServerUnavailable
from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage, deliver_many, ensure_special_folders, folder_by_path
from service.protocols.spamd import SpamdAddress, SpamdClient
from service.usecases.filters import enabled_rules

SPAMD_REST_SECONDS = 60.0
SPAMD_MAX_BYTES = 500 * 1024  # spamc's default limit: larger messages are passed unchecked
SPAMD_CONCURRENCY = 4


@dataclass(slots=True)
class SpamCheck:
    """spamd for the length of one run, resting after a failure."""

    client: SpamdClient
    resting_until: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SpamCheck | None:
        if not settings.spamd_address:
            return None
        address = SpamdAddress.parse(settings.spamd_address)
        return cls(SpamdClient(address, timeout=settings.spamd_timeout_seconds))

    @property
    def resting(self) -> bool:
        return time.monotonic() < self.resting_until


@dataclass(frozen=True, slots=True)
class InboxFilter:
    """Filtering for a run whose task has the option on: the user's Inbox, and spamd if configured."""

    inbox_id: int
    spamd: SpamCheck | None = None


@dataclass(slots=True)
class Screened:
    """Per message, in input order: spam or not, and the rules' verdict (empty for spam)."""

    spam: list[bool]
    verdicts: list[Verdict]
    warnings: list[str] = field(default_factory=list)


def _decide(rules: Sequence[FilterRule], raws: Sequence[bytes]) -> tuple[list[bool], list[Verdict]]:
    """The CPU-bound part of screening, for a worker thread: upstream spam headers, then the rules
    on the rest."""
    spam = [is_spam_by_headers(raw) for raw in raws]
    verdicts = evaluate_all(rules, [None if junk else raw for raw, junk in zip(raws, spam, strict=True)])
    return spam, verdicts


async def screen(db: Database, filtering: InboxFilter, user_id: int, messages: Sequence[IncomingMessage]) -> Screened:
    """What happens to each message (see the module docstring); never raises for spamd."""
    if not messages:
        return Screened([], [])
    async with db.read() as session:
        rules = await enabled_rules(session, user_id)
    spam, verdicts = await asyncio.to_thread(_decide, rules, [m.raw for m in messages])
    warnings = await _ask_spamd(filtering.spamd, messages, spam)
    return Screened(spam, [Verdict() if junk else v for junk, v in zip(spam, verdicts, strict=True)], warnings)


async def _ask_spamd(check: SpamCheck | None, messages: Sequence[IncomingMessage], spam: list[bool]) -> list[str]:
    """spamd's verdict on each message not yet spam (updates `spam`); the warnings for the log."""
    if check is None:
        return []
    wanted = [i for i, m in enumerate(messages) if not spam[i] and len(m.raw) <= SPAMD_MAX_BYTES]
    failures: list[str] = []
    unchecked = 0
    gate = asyncio.Semaphore(SPAMD_CONCURRENCY)

    async def ask(index: int) -> None:
        nonlocal unchecked
        async with gate:
            if check.resting:
                unchecked += 1
                return
            try:
                spam[index] = (await check.client.check(messages[index].raw)).is_spam
            except ServerUnavailable as exc:
                check.resting_until = time.monotonic() + SPAMD_REST_SECONDS
                failures.append(exc.message)
                unchecked += 1

    await asyncio.gather(*(ask(i) for i in wanted))
    if not unchecked:
        return []
    reason = failures[0] if failures else f"spamd at {check.client.address} failed earlier in this run."
    noun = "message was" if unchecked == 1 else "messages were"
    return [f"{reason} {unchecked} {noun} delivered without its spam check; the rest of the filtering still applied."]


@dataclass(slots=True)
class Delivered:
    """Per message, in input order: its new id, or None when a filter deleted it; and what happened."""

    ids: list[int | None]
    summary: str | None


async def deliver_filtered(
    session: AsyncSession,
    *,
    user_id: int,
    inbox_id: int,
    messages: Sequence[IncomingMessage],
    screened: Screened,
) -> Delivered:
    """Deliver a batch bound for the Inbox as `screen` decided, in the caller's transaction."""
    groups: dict[tuple[str, str], list[tuple[int, IncomingMessage]]] = {}  # ("inbox"|"junk"|"path", path)
    ids: list[int | None] = [None] * len(messages)
    junked = moved = deleted = 0
    for index, (message, junk, verdict) in enumerate(zip(messages, screened.spam, screened.verdicts, strict=True)):
        if junk:
            groups.setdefault(("junk", ""), []).append((index, message))
            junked += 1
            continue
        if verdict.deleted:
            deleted += 1
            continue
        if verdict.seen or verdict.flagged:
            message = replace(message, seen=message.seen or verdict.seen, flagged=message.flagged or verdict.flagged)
        moved += verdict.folder is not None
        key = ("inbox", "") if verdict.folder is None else ("path", verdict.folder)
        groups.setdefault(key, []).append((index, message))
    for destination, members in groups.items():
        folder_id = await _folder_id(session, user_id, inbox_id, destination)
        stored = await deliver_many(
            session, user_id=user_id, folder_id=folder_id, messages=[m for _, m in members], search_later=True
        )
        for (index, _), message_id in zip(members, stored, strict=True):
            ids[index] = message_id
    parts = [
        f"{junked} to Junk as spam" if junked else "",
        f"{moved} moved by your filters" if moved else "",
        f"{deleted} deleted by your filters" if deleted else "",
    ]
    summary = "Filtering: " + ", ".join(p for p in parts if p) + "." if any(parts) else None
    return Delivered(ids, summary)


async def _folder_id(session: AsyncSession, user_id: int, inbox_id: int, destination: tuple[str, str]) -> int:
    kind, path = destination
    if kind == "inbox":
        return inbox_id
    if kind == "junk":
        folder = (await ensure_special_folders(session, user_id))[SpecialUse.JUNK]
    else:
        try:
            folder = await folder_by_path(session, user_id, path)
        except InvalidInput:  # a path that no longer reads: the Inbox keeps the message
            return inbox_id
    assert folder.id is not None
    return folder.id
