"""Set-up from the address (issue 18): finding an address's servers against a local DNS server (dnslib)
and a local HTTPS autoconfig server, and the built-in provider table.

What a user would see: the servers filled in and where they were found, best source first (table,
autoconfig, SRV, MX); a broken or hostile autoconfig document, a resolver that never answers or a
host the policy refuses only means that source is passed over.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, DNSRecord  # type: ignore[import-untyped]

from service.config import Settings
from service.domain.discovery import MAX_SERVERS, Discovery, Source
from service.domain.discovery.autoconfig import UnsafeDocument, parse_autoconfig
from service.domain.outbound import STRICT, OutboundPolicy
from service.domain.values import Security
from service.errors import InvalidInput
from service.protocols.discovery import DnsLookup, nameservers
from service.usecases.discovery import discover, to_dict
from service.usecases.discovery.limits import LOOKUPS_PER_MINUTE, check_lookups
from service.usecases.rate_limit import TooManyAttempts
from tests.fixtures.discovery import AutoconfigServer, Zone

LOOPBACK = OutboundPolicy.parse(["127.0.0.0/8", "::1/128"])
AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
WELL_KNOWN_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"

DOCUMENT = """<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.test">
    <domain>example.test</domain>
    <displayName>Example</displayName>
    <incomingServer type="imap">
      <hostname>imap.%EMAILDOMAIN%</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.example.test</hostname>
      <port>110</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.test</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""


def make_settings(tmp_path: Path, resolver: str, timeout: float = 4) -> Settings:
    return Settings(
        data_dir=tmp_path, discovery_nameservers=resolver, discovery_timeout_seconds=timeout, outbound_allow=""
    )


def resolvable(zone: Zone, domain: str = "example.test") -> None:
    """DOCUMENT's servers resolve to loopback (the LOOPBACK policy allows it): a document's servers are
    offered only when they resolve to an allowed address."""
    for host in ("imap", "pop", "smtp"):
        zone.add(f"{host}.{domain}", "A", "127.0.0.1")


async def find(
    email: str,
    tmp_path: Path,
    zone: Zone,
    site: AutoconfigServer | None = None,
    policy: OutboundPolicy = LOOPBACK,
    seconds: float = 4,
) -> Discovery:
    settings = make_settings(tmp_path, zone.nameservers, seconds)
    return await discover(
        email=email,
        settings=settings,
        policy=policy,
        tls=site.client_context() if site else None,
        https_port=site.port if site else 443,
    )


# -- the built-in table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "provider", "imap", "smtp", "oauth2"),
    [
        ("someone@gmail.com", "Gmail", ("imap.gmail.com", 993, "ssl"), ("smtp.gmail.com", 465, "ssl"), "google"),
        ("SOMEONE@Outlook.com", "Outlook.com / Microsoft 365", ("outlook.office365.com", 993, "ssl"),
         ("smtp.office365.com", 587, "starttls"), "microsoft"),
        ("a@yahoo.com", "Yahoo", ("imap.mail.yahoo.com", 993, "ssl"), ("smtp.mail.yahoo.com", 465, "ssl"), None),
        ("a@icloud.com", "iCloud", ("imap.mail.me.com", 993, "ssl"), ("smtp.mail.me.com", 587, "starttls"), None),
        ("a@gmx.de", "GMX", ("imap.gmx.net", 993, "ssl"), ("mail.gmx.net", 465, "ssl"), None),
        ("a@web.de", "WEB.DE", ("imap.web.de", 993, "ssl"), ("smtp.web.de", 587, "starttls"), None),
        ("a@fastmail.com", "Fastmail", ("imap.fastmail.com", 993, "ssl"), ("smtp.fastmail.com", 465, "ssl"), None),
        ("a@zoho.com", "Zoho Mail", ("imap.zoho.com", 993, "ssl"), ("smtp.zoho.com", 465, "ssl"), None),
        ("a@mailbox.org", "mailbox.org", ("imap.mailbox.org", 993, "ssl"), ("smtp.mailbox.org", 465, "ssl"), None),
    ],
)  # fmt: skip
async def test_the_built_in_table_answers_without_asking_the_network(
    tmp_path: Path, dns_zone: Zone, email: str, provider: str, imap: tuple[str, int, Security],
    smtp: tuple[str, int, Security], oauth2: str | None,
) -> None:  # fmt: skip
    found = await find(email, tmp_path, dns_zone)
    assert found.source is Source.BUILT_IN
    assert found.provider == provider
    best_imap, best_smtp = found.best("imap"), found.best("smtp")
    assert best_imap is not None
    assert best_smtp is not None
    assert (best_imap.host, best_imap.port, best_imap.security) == imap
    assert (best_smtp.host, best_smtp.port, best_smtp.security) == smtp
    assert found.oauth2_provider == oauth2
    assert found.oauth2_required is (oauth2 is not None)
    assert best_imap.username == found.address.email
    assert dns_zone.asked == []
    assert f"({provider})" in found.message


async def test_proton_mail_is_not_guessed(tmp_path: Path, dns_zone: Zone) -> None:
    found = await find("me@proton.me", tmp_path, dns_zone)
    assert found.servers == ()
    assert found.source is None
    assert "Proton Mail Bridge" in found.message
    assert to_dict(found)["imap"] is None
    assert dns_zone.asked == []


# -- autoconfig ----------------------------------------------------------------------------------------


async def test_the_autoconfig_host_fills_every_protocol_with_its_templates(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    resolvable(dns_zone)
    dns_zone.add("_imaps._tcp.example.test", "SRV", "0 1 993 srv-imap.example.test.")
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, DOCUMENT)
    found = await find("Ada.L@example.test", tmp_path, dns_zone, autoconfig_server)
    assert found.source is Source.AUTOCONFIG  # autoconfig comes before SRV
    url = f"https://autoconfig.example.test:{autoconfig_server.port}{AUTOCONFIG_PATH}"
    imap, pop3, smtp = found.best("imap"), found.best("pop3"), found.best("smtp")
    assert imap is not None
    assert pop3 is not None
    assert smtp is not None
    assert (imap.host, imap.port, imap.security, imap.username, imap.where) == (
        "imap.example.test", 993, Security.SSL, "Ada.L", url,
    )  # fmt: skip
    assert (pop3.host, pop3.port, pop3.security, pop3.username) == (
        "pop.example.test",
        110,
        Security.STARTTLS,
        "Ada.L@example.test",
    )
    assert (smtp.host, smtp.port, smtp.security) == ("smtp.example.test", 587, Security.STARTTLS)
    assert found.message == "Found in the domain's autoconfig document."
    assert to_dict(found)["imap"]["source"] == "autoconfig"


async def test_the_well_known_url_is_tried_when_the_autoconfig_host_has_none(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("example.test", "A", "127.0.0.1")  # autoconfig.example.test: NXDOMAIN
    resolvable(dns_zone)
    autoconfig_server.serve("example.test", WELL_KNOWN_PATH, DOCUMENT)
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server)
    assert found.source is Source.AUTOCONFIG
    imap = found.best("imap")
    assert imap is not None
    assert imap.where.endswith(WELL_KNOWN_PATH)
    assert autoconfig_server.requests == [("example.test", WELL_KNOWN_PATH)]


async def test_an_oauth2_only_document_naming_microsoft_flags_its_sign_in(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    document = DOCUMENT.replace("imap.%EMAILDOMAIN%", "outlook.office365.com").replace("password-cleartext", "OAuth2")
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, document)
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server)
    assert found.oauth2_provider == "microsoft"
    assert found.oauth2_required
    assert to_dict(found)["oauth2"] == {"required": True, "provider": "microsoft", "offered": False, "label": None}


HOSTILE = {
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b"<clientConfig><emailProvider><incomingServer type='imap'><hostname>&lol2;</hostname></incomingServer>"
    b"</emailProvider></clientConfig>",
    "external entity": b'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<clientConfig>&x;</clientConfig>",
    "huge": b"<clientConfig>" + b"<emailProvider/>" * 40_000 + b"</clientConfig>",
    "not utf-8": b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<clientConfig><emailProvider>\xff\xfe</emailProvider></clientConfig>",
    "html": b"<!doctype html><html><body>Domain for sale</body></html>",
    "wrong root": b"<rss><emailProvider/></rss>",
    "truncated": DOCUMENT.encode()[:200],
    "wrong types": DOCUMENT.replace("<port>993</port>", "<port>99a3</port>")
    .replace("<port>110</port>", "<port>70000</port>")
    .replace("<socketType>STARTTLS</socketType>\n      <username>%EMAILADDRESS%</username>\n    </outgoingServer>",
             "<socketType>carrier-pigeon</socketType></outgoingServer>")
    .encode(),
    "bad host names": DOCUMENT.replace("imap.%EMAILDOMAIN%", "imap.example.test&#13;&#10;evil")
    .replace("pop.example.test", "-pop-.example.test").replace("smtp.example.test", "smtp example.test").encode(),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_a_broken_or_hostile_document_is_passed_over(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer, kind: str
) -> None:
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    dns_zone.add("example.test", "MX", "10 mx.example.test.")
    dns_zone.add("mx.example.test", "A", "127.0.0.1")
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, HOSTILE[kind])
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server)
    assert found.source is Source.MX_GUESS
    assert {s.host for s in found.servers} == {"mx.example.test"}
    said = {"wrong types": "no usable server", "bad host names": "no usable server", "huge": "no document"}.get(
        kind, "not a usable autoconfig document"
    )
    assert any(AUTOCONFIG_PATH in line and said in line for line in found.tried), found.tried


@pytest.mark.parametrize("kind", ["billion laughs", "external entity", "huge", "not utf-8", "html", "wrong root"])
def test_the_parser_refuses_what_it_cannot_read_safely(kind: str) -> None:
    with pytest.raises(UnsafeDocument):
        parse_autoconfig(HOSTILE[kind], email="a@example.test", local_part="a", domain="example.test", where="x")


async def test_a_document_in_latin_1_is_read(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    resolvable(dns_zone)
    document = DOCUMENT.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').replace("Example", "Exämple")
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, document.encode("latin-1"))
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server)
    assert found.source is Source.AUTOCONFIG


async def test_a_redirect_or_error_page_is_no_document(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    dns_zone.add("example.test", "A", "127.0.0.1")
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, "", 302, Location="http://example.test/x")
    autoconfig_server.serve("example.test", WELL_KNOWN_PATH, DOCUMENT, 500)
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server)
    assert found.source is None
    assert ("example.test", "/x") not in autoconfig_server.requests


async def test_the_outbound_policy_keeps_autoconfig_off_refused_addresses(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, DOCUMENT)
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server, policy=STRICT)
    assert found.source is None
    assert autoconfig_server.requests == []
    assert any("could not be reached" in line for line in found.tried)  # told apart from nothing else


async def test_an_untrusted_certificate_is_no_document(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, DOCUMENT)
    settings = make_settings(tmp_path, dns_zone.nameservers)
    found = await discover(
        email="ada@example.test", settings=settings, policy=LOOPBACK, https_port=autoconfig_server.port
    )
    assert found.source is None
    assert any("could not be reached" in line for line in found.tried)


async def test_a_slow_drip_autoconfig_server_is_cut_by_the_overall_timeout(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    """One byte a second never trips a per-read timeout (half the 4 s allowed): only the look-up's
    overall time limit ends it, and the MX guess found meanwhile is still the answer."""
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    dns_zone.add("example.test", "MX", "10 mx.example.test.")
    dns_zone.add("mx.example.test", "A", "127.0.0.1")
    autoconfig_server.drip("autoconfig.example.test", AUTOCONFIG_PATH)
    # The outer limit only keeps a broken build from hanging the suite; it is no timing assertion.
    found = await asyncio.wait_for(find("ada@example.test", tmp_path, dns_zone, autoconfig_server), 60)
    assert found.source is Source.MX_GUESS
    assert "autoconfig: gave up after the time allowed" in found.tried
    assert autoconfig_server.requests == [("autoconfig.example.test", AUTOCONFIG_PATH)]


async def test_autoconfig_server_names_the_policy_refuses_are_left_out_unnamed(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    """A document is anyone's words: a server it names that leads only to refused (internal) addresses,
    by name or as an address, is neither filled in nor named, like an SRV target."""
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    dns_zone.add("pop.corp.example.test", "A", "10.1.2.3")
    dns_zone.add("smtp.example.test", "A", "127.0.0.1")
    document = DOCUMENT.replace("imap.%EMAILDOMAIN%", "169.254.169.254").replace(
        "pop.example.test", "pop.corp.example.test"
    )
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, document)
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server)
    assert found.source is Source.AUTOCONFIG
    assert [(s.protocol, s.host) for s in found.servers] == [("smtp", "smtp.example.test")]
    assert not any("corp" in line or "169.254" in line for line in found.tried), found.tried
    assert "2 server(s) left out: they could not be reached" in found.tried


async def test_an_autoconfig_server_given_as_an_allowed_address_is_kept(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1")
    dns_zone.add("pop.example.test", "AAAA", "::1")
    dns_zone.add("smtp.example.test", "A", "127.0.0.1")
    autoconfig_server.serve(
        "autoconfig.example.test", AUTOCONFIG_PATH, DOCUMENT.replace("imap.%EMAILDOMAIN%", "127.0.0.2")
    )
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server)
    assert [s.host for s in found.servers] == ["127.0.0.2", "pop.example.test", "smtp.example.test"]


async def test_the_autoconfig_host_is_resolved_once_and_connected_to_at_the_checked_address(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: after its first answer the name turns to a refused address (TTL 0). The fetch
    connects to the address it checked and never asks again, so the second answer is never used."""
    dns_zone.add("autoconfig.example.test", "A", "127.0.0.1", ttl=0)
    resolvable(dns_zone)
    autoconfig_server.serve("autoconfig.example.test", AUTOCONFIG_PATH, DOCUMENT)
    answer = dns_zone.resolve

    def rebinding(request: DNSRecord, handler: object) -> DNSRecord:
        reply = answer(request, handler)
        if str(request.q.qname).lower() == "autoconfig.example.test.":
            dns_zone.records[("autoconfig.example.test.", "A")] = RR.fromZone("autoconfig.example.test. 0 A 10.9.9.9")
        return reply

    monkeypatch.setattr(dns_zone, "resolve", rebinding)
    found = await find("ada@example.test", tmp_path, dns_zone, autoconfig_server)
    assert found.source is Source.AUTOCONFIG
    assert autoconfig_server.requests == [("autoconfig.example.test", AUTOCONFIG_PATH)]
    assert dns_zone.asked.count(("autoconfig.example.test", "A")) == 1


# -- DNS: SRV and MX ---------------------------------------------------------------------------------


async def test_srv_records_prefer_implicit_tls_and_low_priority(tmp_path: Path, dns_zone: Zone) -> None:
    dns_zone.add("_imap._tcp.example.test", "SRV", "0 1 143 plain-imap.example.test.")
    dns_zone.add("_imaps._tcp.example.test", "SRV", "20 1 993 backup-imap.example.test.")
    dns_zone.add("_imaps._tcp.example.test", "SRV", "10 1 993 imap.example.test.")
    dns_zone.add("_pop3s._tcp.example.test", "SRV", "0 0 0 .")  # RFC 2782: not offered
    dns_zone.add("_submission._tcp.example.test", "SRV", "0 1 587 smtp.example.test.")
    dns_zone.add("_submissions._tcp.example.test", "SRV", "0 1 465 smtp.example.test.")
    for host in ("plain-imap", "backup-imap", "imap", "smtp"):
        dns_zone.add(f"{host}.example.test", "A", "127.0.0.1")
    found = await find("ada@example.test", tmp_path, dns_zone)
    assert found.source is Source.DNS_SRV
    assert [(s.protocol, s.host, s.port, s.security) for s in found.servers] == [
        ("imap", "imap.example.test", 993, Security.SSL),
        ("imap", "backup-imap.example.test", 993, Security.SSL),
        ("imap", "plain-imap.example.test", 143, Security.STARTTLS),
        ("smtp", "smtp.example.test", 465, Security.SSL),
        ("smtp", "smtp.example.test", 587, Security.STARTTLS),
    ]
    assert found.best("pop3") is None
    imap = found.best("imap")
    assert imap is not None
    assert imap.where == "_imaps._tcp.example.test"
    assert found.message == "Found in the domain's DNS SRV records."


async def test_a_flood_of_srv_records_is_capped_before_their_names_are_resolved(tmp_path: Path, dns_zone: Zone) -> None:
    """Hundreds of SRV targets would make one look-up send hundreds of DNS queries on the user's
    behalf: only the first MAX_SERVERS (by priority) are kept and checked."""
    for n in range(200):
        dns_zone.add("_imaps._tcp.example.test", "SRV", f"{n} 1 993 imap{n}.example.test.")
        dns_zone.add(f"imap{n}.example.test", "A", "127.0.0.1")
    found = await find("ada@example.test", tmp_path, dns_zone)
    assert found.source is Source.DNS_SRV
    assert [s.host for s in found.servers] == [f"imap{n}.example.test" for n in range(MAX_SERVERS)]
    looked_up = {name for name, rtype in dns_zone.asked if rtype == "A" and name.startswith("imap")}
    assert len(looked_up) == MAX_SERVERS


async def test_a_server_whose_aaaa_query_fails_is_kept_by_its_a_record(
    tmp_path: Path, dns_zone: Zone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some DNS servers fail AAAA queries (SERVFAIL): the IPv4 address found is still judged and used."""
    dns_zone.add("_imaps._tcp.example.test", "SRV", "0 1 993 imap.example.test.")
    dns_zone.add("imap.example.test", "A", "127.0.0.1")
    answer = dns_zone.resolve

    def broken_aaaa(request: DNSRecord, handler: object) -> DNSRecord:
        reply = answer(request, handler)
        if QTYPE[request.q.qtype] == "AAAA":
            reply.header.rcode = RCODE.SERVFAIL
        return reply

    monkeypatch.setattr(dns_zone, "resolve", broken_aaaa)
    found = await find("ada@example.test", tmp_path, dns_zone)
    assert found.source is Source.DNS_SRV
    assert [s.host for s in found.servers] == ["imap.example.test"]


async def test_a_custom_domain_at_google_is_recognised_by_its_mx(tmp_path: Path, dns_zone: Zone) -> None:
    dns_zone.add("example.test", "MX", "1 aspmx.l.google.com.")
    dns_zone.add("example.test", "MX", "5 alt1.aspmx.l.google.com.")
    found = await find("ada@example.test", tmp_path, dns_zone)
    assert found.source is Source.MX
    assert found.provider == "Gmail"
    assert found.oauth2_provider == "google"
    imap = found.best("imap")
    assert imap is not None
    assert imap.host == "imap.gmail.com"
    assert imap.where == "aspmx.l.google.com"


async def test_the_mx_host_is_a_last_guess_marked_as_one(tmp_path: Path, dns_zone: Zone) -> None:
    dns_zone.add("example.test", "MX", "20 mx2.example.test.")
    dns_zone.add("example.test", "MX", "10 mx1.example.test.")
    dns_zone.add("mx1.example.test", "AAAA", "::1")
    found = await find("ada@example.test", tmp_path, dns_zone)
    assert found.source is Source.MX_GUESS
    assert found.guess
    assert [(s.protocol, s.host, s.port, s.guess) for s in found.servers] == [
        ("imap", "mx1.example.test", 993, True),
        ("pop3", "mx1.example.test", 995, True),
        ("smtp", "mx1.example.test", 465, True),
    ]
    assert "guess" in found.message
    answer = to_dict(found)
    assert answer["guess"] is True
    assert answer["source"] == "mx-guess"


async def test_servers_dns_names_that_the_policy_refuses_are_left_out_unnamed(tmp_path: Path, dns_zone: Zone) -> None:
    """SRV and MX names that lead only to refused (internal) addresses, or to none, are not offered and
    not named: the lookup must not show what the server's resolver knows of the internal network."""
    dns_zone.add("_imaps._tcp.example.test", "SRV", "0 1 993 imap.corp.example.test.")
    dns_zone.add("imap.corp.example.test", "A", "10.1.2.3")
    dns_zone.add("_submissions._tcp.example.test", "SRV", "0 1 465 nowhere.example.test.")
    dns_zone.add("example.test", "MX", "10 mx.corp.example.test.")
    dns_zone.add("mx.corp.example.test", "A", "192.168.1.1")
    found = await find("ada@example.test", tmp_path, dns_zone)
    assert found.source is None
    assert found.servers == ()
    assert not any("corp" in line or "nowhere" in line for line in found.tried), found.tried
    assert "2 server(s) left out: they could not be reached" in found.tried


async def test_the_mx_guess_passes_over_a_preferred_mx_the_policy_refuses(tmp_path: Path, dns_zone: Zone) -> None:
    dns_zone.add("example.test", "MX", "10 mx.corp.example.test.")
    dns_zone.add("mx.corp.example.test", "A", "10.1.2.3")
    dns_zone.add("example.test", "MX", "20 mx2.example.test.")
    dns_zone.add("mx2.example.test", "A", "127.0.0.1")
    found = await find("ada@example.test", tmp_path, dns_zone)
    assert found.source is Source.MX_GUESS
    assert {s.host for s in found.servers} == {"mx2.example.test"}
    assert not any("corp" in line for line in found.tried), found.tried


async def test_nothing_found_says_so(tmp_path: Path, dns_zone: Zone) -> None:
    found = await find("ada@example.test", tmp_path, dns_zone)
    assert found.source is None
    assert found.servers == ()
    assert found.message == "No mail servers were found for example.test: enter them yourself."


async def test_an_idna_domain_is_looked_up_in_punycode(
    tmp_path: Path, dns_zone: Zone, autoconfig_server: AutoconfigServer
) -> None:
    dns_zone.add("autoconfig.xn--bcher-kva.test", "A", "127.0.0.1")
    resolvable(dns_zone)
    resolvable(dns_zone, "xn--bcher-kva.test")
    autoconfig_server.serve("autoconfig.xn--bcher-kva.test", AUTOCONFIG_PATH, DOCUMENT)
    found = await find("jörg@Bücher.test", tmp_path, dns_zone, autoconfig_server)
    assert found.address.domain == "xn--bcher-kva.test"
    assert found.source is Source.AUTOCONFIG
    imap = found.best("imap")
    assert imap is not None
    assert imap.host == "imap.xn--bcher-kva.test"
    assert imap.username == "jörg"
    assert ("_imaps._tcp.xn--bcher-kva.test", "SRV") in dns_zone.asked


# -- worst inputs and a dead resolver ----------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["ada@example.test\r\nBcc: eve@example.test", "ada\n@example.test", "ada@exa\x00mple.test", "", "   ",
     "not an address", "ada@" + "a" * 400 + ".test", "ada@[127.0.0.1]"],
)  # fmt: skip
async def test_an_address_that_is_not_one_is_refused_before_any_lookup(
    tmp_path: Path, dns_zone: Zone, email: str
) -> None:
    with pytest.raises(InvalidInput):
        await find(email, tmp_path, dns_zone)
    assert dns_zone.asked == []


async def test_a_resolver_that_never_answers_does_not_hold_the_lookup(tmp_path: Path, silent_dns: str) -> None:
    settings = make_settings(tmp_path, silent_dns, timeout=0.6)
    found = await discover(email="ada@example.test", settings=settings, policy=LOOPBACK)
    assert found.source is None
    assert any("no answer from DNS" in line or "gave up" in line for line in found.tried)


def test_the_nameserver_setting_takes_addresses_and_ports() -> None:
    assert nameservers("127.0.0.1:5353, [::1]:53,9.9.9.9,::1") == [
        ("127.0.0.1", 5353), ("::1", 53), ("9.9.9.9", 53), ("::1", 53)
    ]  # fmt: skip
    assert DnsLookup(nameservers("127.0.0.1:5353")).servers == [("127.0.0.1", 5353)]


async def test_an_encoded_word_in_the_address_stays_literal_text(tmp_path: Path, dns_zone: Zone) -> None:
    """RFC 2047 is not decoded in an address: the encoded line break stays the text "=0D=0A"."""
    found = await find("=?utf-8?q?a=0D=0ABcc=3A_x?=@gmail.com", tmp_path, dns_zone)
    imap = found.best("imap")
    assert imap is not None
    assert imap.username == "=?utf-8?q?a=0D=0ABcc=3A_x?=@gmail.com"
    assert "\r" not in imap.username
    assert "\n" not in imap.username


def test_a_percent_sign_in_the_local_part_is_not_read_as_a_placeholder() -> None:
    """%EMAILADDRESS% is filled once: the address's own "%EMAILDOMAIN%" stays as the user typed it."""
    email = "%EMAILDOMAIN%@example.test"
    servers = parse_autoconfig(
        DOCUMENT.encode(), email=email, local_part="%EMAILDOMAIN%", domain="example.test", where="x"
    )
    assert [s.username for s in servers] == ["%EMAILDOMAIN%", email, email]


def test_the_look_up_limit_counts_each_user_apart() -> None:
    """One user's look-ups never use up another's (nor another Database's)."""

    class Owner:  # stands for a Database: the limiter is kept per owner, weakly
        pass

    owner, other_owner = Owner(), Owner()
    for _ in range(LOOKUPS_PER_MINUTE):
        check_lookups(owner, 1)
    with pytest.raises(TooManyAttempts):
        check_lookups(owner, 1)
    check_lookups(owner, 2)
    check_lookups(other_owner, 1)
