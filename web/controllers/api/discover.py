"""GET /api/v1/discover?email=: the servers of an email address, and where they were found (issue 18).

The same answer as `tributary discover EMAIL --json` and the lookup on the New
Retrieval Task and New SMTP Account forms (service.usecases.discovery): the
built-in provider table, the domain's autoconfig document (HTTPS, under the
user's domain policy), DNS SRV records, then the MX hosts as a guess. `imap`,
`pop3` and `smtp` are the best server of each (null: none found); `servers`
all of them. `oauth2` says whether the provider needs OAuth2 sign-in and
whether this server offers it (`offered`, with its `label`). An address that is
not one answers 400; finding nothing is a 200 with `found` false; more than 30 look-ups a minute
answer 429 with Retry-After.
"""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from service.config import Settings
from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases.discovery import discover_for_user, to_dict
from web.controllers.api.contract import reads


class FoundServerOut(msgspec.Struct):
    """One server: `security` is "ssl", "starttls" or "none"; `source` is "built-in", "autoconfig",
    "dns-srv", "mx" or "mx-guess"; `where` the table entry, document URL, DNS name or MX host."""

    protocol: str
    host: str
    port: int
    security: str
    username: str
    source: str
    where: str
    guess: bool
    oauth2_only: bool


class OAuth2Out(msgspec.Struct):
    """The provider's OAuth2 sign-in: needed or not, and whether this server offers it (`provider` is
    the name POST /api/v1/oauth/start takes)."""

    required: bool
    provider: str | None
    offered: bool
    label: str | None


class DiscoverOut(msgspec.Struct):
    """What was found for `email`, and a sentence (`message`) saying where."""

    email: str
    domain: str
    found: bool
    source: str | None
    guess: bool
    provider: str | None
    message: str
    oauth2: OAuth2Out | None
    imap: FoundServerOut | None
    pop3: FoundServerOut | None
    smtp: FoundServerOut | None
    servers: list[FoundServerOut]
    tried: list[str]


@get("/discover", tags=["Set-up"], **reads(400, 429))
async def discover(
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
    user: NamedDependency[UserView],
    email: FromQuery[str],
) -> DiscoverOut:
    """The servers of `email` and where each was found."""
    found = await discover_for_user(db=db, settings=settings, user_id=user.id, email=email)
    return msgspec.convert(to_dict(found), DiscoverOut)


ROUTES = [discover]
