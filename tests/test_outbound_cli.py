"""`tributary domain set DOMAIN --allow-hosts LIST`: the hosts a domain's users may reach."""

from __future__ import annotations

import json

from service.config import Settings
from service.persistence.database import Database
from service.usecases import domains
from tests.cli_runner import tributary


async def test_allow_hosts_is_set_printed_and_cleared(settings: Settings, db: Database) -> None:
    changed = tributary(
        settings,
        "domain",
        "set",
        "example.test",
        "--allow-hosts",
        "Mail.Corp.Example, *.lan.example,10.0.0.0/8,",
        "--json",
    )
    assert changed.returncode == 0, changed.stderr
    shown = json.loads(changed.stdout)
    assert shown["allowed_hosts"] == ["mail.corp.example", "*.lan.example", "10.0.0.0/8"]
    assert (await domains.get_domain_settings(db=db, name="example.test")).allowed_hosts == (
        "mail.corp.example",
        "*.lan.example",
        "10.0.0.0/8",
    )

    kept = tributary(settings, "domain", "set", "example.test", "--retrieval", "off")
    assert kept.returncode == 0, kept.stderr
    assert "allowed hosts: mail.corp.example, *.lan.example, 10.0.0.0/8" in kept.stdout

    bad = tributary(settings, "domain", "set", "example.test", "--allow-hosts", "10.0.0.0/33")
    assert bad.returncode == 1
    assert "not a valid network" in bad.stderr

    cleared = tributary(settings, "domain", "set", "example.test", "--allow-hosts", "", "--json")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["allowed_hosts"] == []
