"""Shared fixtures: real servers and a fresh database per test (see tests/fixtures/)."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.dovecot",
    "tests.fixtures.smtp",
    "tests.fixtures.oauth_server",
    "tests.fixtures.dovecot_oauth",
    "tests.fixtures.smtp_oauth",
    "tests.fixtures.spamd",
    "tests.fixtures.webapp",
    "tests.fixtures.browser",
    "tests.fixtures.discovery",
]
