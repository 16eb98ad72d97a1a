"""The push supervisor of one `serve` or `worker` process: IMAP IDLE/NOTIFY connections that
start a retrieval run as soon as the remote server announces new mail (issue 16).

Every third of TRIBUTARY_PUSH_LEASE_SECONDS the supervisor renews the push
leases it holds (push_leases.py), closing the connections of tasks it lost or
that no longer push, then claims free ones up to TRIBUTARY_PUSH_CONNECTIONS and
starts one watcher per task: an asyncio task (no thread) that signs in
(service.protocols.imap.push; an OAuth2 task with its access token, refreshed
and retried once like a run), reports LISTENING, and hands every announcement
to the Runner: news for INBOX alone goes through the fast path (push_fetch.py: the new
messages fetched over this very connection, under the run lease), any other news or a
declined fast path into ordinary runs under the run lease, which coalesce.

What a watcher does when the connection fails:

- the server offers no IDLE: UNSUPPORTED, the lease is released and the task is
  tried again in UNSUPPORTED_RETRY; polling goes on at the interval;
- sign-in refused (password, token, reconnect needed) or the server is not
  allowed: FAILED, released until one retrieval interval has passed; the
  polling run meets the same refusal and counts it, pausing the task after
  repeated failures exactly as before (which then stops push too);
- the server unreachable, TLS failing, or the connection dropped: the lease is
  kept and the watcher reconnects with exponential backoff and jitter
  (BACKOFF_FIRST doubling to BACKOFF_MAX, +-20 %); after every reconnect it asks
  for one run, to catch up on what arrived while it was away.

A task taken over from another process (which died, or handed it over at
shutdown) also gets one run once listening: mail that arrived in between was
announced to nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Protocol

from sqlmodel import select

from service import metrics
from service.config import Settings
from service.domain.oauth import AuthKind
from service.domain.values import PushState
from service.errors import (
    ConnectionNotAllowed,
    CredentialsRejected,
    RemoteError,
    TributaryError,
    UnsupportedByServer,
)
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask, User
from service.persistence.types import utcnow
from service.protocols.imap import ImapAccount
from service.usecases.domains import outbound_policy
from service.usecases.oauth_sign_in import with_token
from service.usecases.retrieval.push_fetch import FetchingConnection
from service.usecases.retrieval.push_leases import claim_push_handover, release_push, renew_push, set_push_state
from service.usecases.retrieval.runner import Runner
from service.usecases.retrieval_tasks import imap_account

log = logging.getLogger(__name__)

UNSUPPORTED_RETRY = timedelta(hours=6)
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
CLOSE_SECONDS = 5.0
STEADY_SECONDS = 60.0


class Connection(Protocol):
    """What a watcher needs of service.protocols.imap.push.PushConnection."""

    mode: str

    async def open(self) -> None: ...
    async def wait(self) -> object: ...
    async def close(self) -> None: ...


Connect = Callable[[ImapAccount], Connection]


def _default_connect(account: ImapAccount) -> Connection:
    from service.protocols.imap.push import PushConnection

    return PushConnection(account)


def backoff(attempt: int, rand: random.Random) -> float:
    """Seconds before reconnect attempt `attempt` (1, 2, ...): doubling from BACKOFF_FIRST up to
    BACKOFF_MAX, +-20 % so that many connections cut at once do not come back together."""
    base = min(BACKOFF_MAX, BACKOFF_FIRST * float(1 << min(30, max(0, attempt - 1))))
    return base * rand.uniform(0.8, 1.2)


class _Stopped(Exception):
    """The watcher ends: its task no longer has a push connection here (the lease is handled)."""


class PushSupervisor:
    def __init__(
        self,
        *,
        db: Database,
        secret_box: SecretBox,
        settings: Settings,
        runner: Runner,
        connect: Connect | None = None,
    ) -> None:
        self.db = db
        self.secret_box = secret_box
        self.settings = settings
        self.runner = runner
        self.owner = runner.worker_id
        self._connect = connect or _default_connect
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._random = random.Random()  # noqa: S311  (jitter, not secrets)
        self._renewed = time.monotonic()  # the last tick that renewed what we hold (or held nothing)

    @property
    def held(self) -> set[int]:
        """The tasks this process watches now."""
        return set(self._watchers)

    @property
    def period(self) -> float:
        return self.settings.push_lease_seconds / 3

    def start(self) -> None:
        """Start the supervising loop (from inside the running event loop); no-op when this
        process holds no push connections (TRIBUTARY_PUSH_CONNECTIONS=0)."""
        if self.settings.push_connections > 0 and self._loop is None:
            self._loop = asyncio.create_task(self._supervise(), name="push-supervisor")

    async def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tick()
            except Exception:  # a database hiccup: the next tick tries again (leases outlive a tick)
                log.exception("push supervisor: renewing or claiming push leases failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.period)

    async def tick(self) -> None:
        """Renew what we hold (closing what we lost), then claim up to the connection budget."""
        held = self.held
        if held:
            try:
                kept = await renew_push(self.db, self.owner, held, seconds=self.settings.push_lease_seconds)
            except Exception:
                if time.monotonic() - self._renewed > self.settings.push_lease_seconds:
                    # Our push leases have expired: another process may hold these tasks' connections now.
                    log.warning("push: push leases not renewed for a lease period; closing every connection")
                    await self._drop(held)
                raise
            for task_id in held - kept:
                log.info("push: task %d no longer pushes here; closing its connection", task_id)
            await self._drop(held - kept)  # together: each close may take CLOSE_SECONDS
            await release_push(self.db, self.owner, held - kept)  # ours but no longer eligible
        self._renewed = time.monotonic()
        if self._stop.is_set():
            return
        free = self.settings.push_connections - len(self._watchers)
        seconds = self.settings.push_lease_seconds
        for task_id, handover in await claim_push_handover(self.db, self.owner, seconds=seconds, limit=free):
            watcher = asyncio.create_task(self._watch(task_id, catch_up=handover), name=f"push-{task_id}")
            self._watchers[task_id] = watcher
        metrics.PUSH_CONNECTIONS.set(len(self._watchers))

    async def _drop(self, task_ids: Iterable[int]) -> None:
        """Stop these tasks' watchers, all at once, and wait until their connections are closed."""
        watchers = [watcher for task_id in task_ids if (watcher := self._watchers.pop(task_id, None)) is not None]
        for watcher in watchers:
            watcher.cancel()
        if watchers:
            await asyncio.wait(watchers)  # their connections closed; their outcomes are their own (logged there)
        metrics.PUSH_CONNECTIONS.set(len(self._watchers))

    async def shutdown(self) -> None:
        """Close every connection and give the push leases back (another process takes them at once)."""
        self._stop.set()
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.wait([self._loop])
        held = self.held
        await self._drop(held)
        # CONNECTING: push stays on for these tasks, and whoever claims them next catches up.
        await release_push(self.db, self.owner, held, state=PushState.CONNECTING)

    # One watcher per task.

    async def _watch(self, task_id: int, *, catch_up: bool = False) -> None:
        """Hold the task's connection until cancelled or push stops for it. `catch_up`: another
        process held it until now, so mail may have arrived unannounced: run once when listening.

        A listening connection that drops asks for one run after it is back (only then: a first
        connection that takes a few attempts missed nothing it was ever listening for). The
        backoff starts again from BACKOFF_FIRST only after a connection stayed up STEADY_SECONDS,
        so a server that accepts and drops at once is not hammered."""
        attempt = 0
        try:
            while True:
                connection = await self._open(task_id, attempt)
                if connection is None:
                    attempt += 1
                    await asyncio.sleep(backoff(attempt, self._random))
                    continue
                opened = time.monotonic()
                try:
                    await set_push_state(self.db, task_id, self.owner, PushState.LISTENING, None)
                    if catch_up:
                        self.runner.request_push_run(task_id)
                        catch_up = False
                    while True:
                        news = await connection.wait()
                        metrics.PUSH_NOTIFICATIONS.inc()
                        noticed = time.monotonic()
                        if _inbox_only(news) and isinstance(connection, FetchingConnection):
                            await self.runner.push_fetch(task_id, connection, noticed=noticed)
                        else:
                            self.runner.request_push_run(task_id, noticed=noticed)
                except RemoteError as exc:
                    log.info("push: task %d lost its connection (%s); reconnecting", task_id, exc.message)
                    await set_push_state(
                        self.db, task_id, self.owner, PushState.CONNECTING, f"{exc.message} Reconnecting."
                    )
                    catch_up = True
                finally:
                    await _close(connection)
                attempt = 1 if time.monotonic() - opened >= STEADY_SECONDS else attempt + 1
                await asyncio.sleep(backoff(attempt, self._random))
        except _Stopped:
            pass
        except Exception:
            log.exception("push: the watcher of task %d failed; its lease expires and it is tried again", task_id)
        finally:
            if self._watchers.get(task_id) is asyncio.current_task():
                del self._watchers[task_id]
                metrics.PUSH_CONNECTIONS.set(len(self._watchers))

    async def _open(self, task_id: int, attempt: int) -> Connection | None:
        """A listening connection; None after a transient failure (the caller backs off); _Stopped
        when push stops for this task (state and lease recorded here)."""
        async with self.db.read() as session:
            task = await session.get(RetrievalTask, task_id)
            domain = (
                (await session.exec(select(Domain).join(User).where(User.id == task.user_id))).first() if task else None
            )
        if task is None or domain is None:
            await release_push(self.db, self.owner, [task_id])
            raise _Stopped
        policy = outbound_policy(self.settings, domain)
        opened: list[Connection] = []

        async def sign_in(token: str | None) -> None:
            account = imap_account(task, self.secret_box, self.settings, policy=policy, oauth_token=token)
            connection = self._connect(account)
            try:
                await connection.open()
            except BaseException:
                await _close(connection)
                raise
            opened.append(connection)

        try:
            if task.auth is AuthKind.OAUTH2:
                await with_token(
                    db=self.db,
                    settings=self.settings,
                    secret_box=self.secret_box,
                    kind="retrieval",
                    target_id=task_id,
                    sign_in=sign_in,
                )
            else:
                await sign_in(None)
        except UnsupportedByServer as exc:
            await self._stop_task(
                task_id,
                PushState.UNSUPPORTED,
                f"{exc.message} New mail is fetched every {_interval(self.settings)} instead.",
                UNSUPPORTED_RETRY,
            )
        except (CredentialsRejected, ConnectionNotAllowed) as exc:  # TokenRejected, NeedsReconnect too
            retry = timedelta(seconds=self.settings.retrieval_interval)
            await self._stop_task(task_id, PushState.FAILED, exc.message, retry)
        except (RemoteError, TributaryError) as exc:  # unreachable, TLS, token endpoint down: try again
            log.info("push: task %d could not connect (%s); attempt %d", task_id, exc.message, attempt + 1)
            await set_push_state(self.db, task_id, self.owner, PushState.FAILED, f"{exc.message} Trying again.")
            return None
        return opened[-1]

    async def _stop_task(self, task_id: int, state: PushState, detail: str, retry: timedelta) -> None:
        log.info("push: task %d stops pushing (%s): %s", task_id, state.value, detail)
        await release_push(self.db, self.owner, [task_id], state=state, detail=detail, retry_at=utcnow() + retry)
        raise _Stopped


def _inbox_only(news: object) -> bool:
    """News for INBOX alone (IDLE's EXISTS, or NOTIFY's for the selected INBOX): the fast path's case."""
    return getattr(news, "folders", None) == frozenset({"INBOX"})


def _interval(settings: Settings) -> str:
    minutes = round(settings.retrieval_interval / 60)
    return f"{minutes} minutes" if minutes != 1 else "minute"


async def _close(connection: Connection) -> None:
    """Close without letting a slow or broken server hold up the caller; a cancellation of the
    caller does not stop the close (shielded)."""
    with contextlib.suppress(Exception):
        await asyncio.shield(asyncio.wait_for(connection.close(), CLOSE_SECONDS))
