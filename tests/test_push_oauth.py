"""Push for an OAuth2 task (issues 15 and 16): the push connection signs in with the task's access
token (refreshed once when the server refuses it, like a run), and a revoked consent stops push
until the user reconnects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from service.domain.oauth import CredentialStatus
from service.domain.values import Protocol, PushState, RetrievalMethod, Security
from service.persistence.types import utcnow
from service.usecases.retrieval import Runner
from service.usecases.retrieval.push import PushSupervisor
from tests import test_oauth_wiring
from tests.fixtures.dovecot import MailUser
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.mail_samples import sample
from tests.test_oauth_wiring import World
from tests.test_push import eventually

# The OAuth2 world of tests/test_oauth_wiring.py: a provider, Dovecot checking its tokens, a user.
world = test_oauth_wiring.world
_fresh_discovery = test_oauth_wiring._fresh_discovery


@asynccontextmanager
async def pushing(world: World) -> AsyncIterator[PushSupervisor]:
    settings = world.settings.model_copy(
        update={"retrieval_interval": 3600, "push_lease_seconds": 3, "push_connections": 500}
    )
    runner = Runner(db=world.db, secret_box=world.box, settings=settings)
    supervisor = PushSupervisor(db=world.db, secret_box=world.box, settings=settings, runner=runner)
    supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.shutdown()
        await runner.shutdown()


async def signed_in_task(world: World, dovecot_oauth: OAuthDovecot, mail_user: MailUser) -> int:
    started = await world.begin(
        "retrieval",
        protocol=Protocol.IMAP,
        host="127.0.0.1",
        port=dovecot_oauth.imaps_port,
        security=Security.SSL,
        method=RetrievalMethod.AUTOMATIC,
    )
    await world.consent(started.authorize_url, mail_user.email)
    assert (await world.run(started.id)).errors == []
    return started.id


async def test_an_oauth_task_pushes_with_its_token_refreshed_once_when_refused(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser
) -> None:
    task_id = await signed_in_task(world, dovecot_oauth, oauth_mail_user)
    refreshes = sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests)
    # The provider's clock passes the token's lifetime while ours still holds it fresh: Dovecot refuses it.
    world.oauth.advance(world.oauth.access_token_lifetime + 60)
    async with pushing(world):

        async def listening() -> bool:
            return (await world.task(task_id)).push_state is PushState.LISTENING

        await eventually(listening, within=15, what="the OAuth2 task listening")
        assert sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests) == refreshes + 1
        dovecot_oauth.deliver(oauth_mail_user.email, sample("pushed with a token"))

        async def stored() -> bool:
            return (await world.task(task_id)).messages_imported == 1

        await eventually(stored, within=20, what="the pushed message stored")


async def test_a_revoked_consent_stops_push_until_reconnect(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser
) -> None:
    task_id = await signed_in_task(world, dovecot_oauth, oauth_mail_user)
    world.oauth.revoke_user(oauth_mail_user.email)
    world.oauth.advance(world.oauth.access_token_lifetime + 60)  # the token dies; the refresh is refused
    async with pushing(world) as supervisor:

        async def failed() -> bool:
            return (await world.task(task_id)).push_state is PushState.FAILED

        await eventually(failed, within=15, what="push failed")
        task = await world.task(task_id)
        assert task.push_owner is None
        assert task.push_detail
        assert "Reconnect" in task.push_detail
        assert task.oauth_status is CredentialStatus.RECONNECT
        assert task.push_retry_at is not None
        assert task.push_retry_at > utcnow() + timedelta(minutes=50)
        token_requests = len(world.oauth.token_requests)
        await supervisor.tick()
        assert supervisor.held == set()  # no retry loop against the provider
        assert len(world.oauth.token_requests) == token_requests
