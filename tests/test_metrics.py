"""Prometheus metrics: named as Prometheus asks, one series per fact, /metrics off unless
TRIBUTARY_METRICS=on, HTTP request metrics from Litestar's plugin, and a metrics port of their own
(TRIBUTARY_METRICS_PORT) for `tributary worker` and `serve`."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from tests.cli_runner import TRIBUTARY, cli_environment, terminate
from tests.fixtures import free_ports
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import WebClient
from tests.retrieval_env import Env, eventually, make_env
from tests.test_logging import serve
from web.app import create_app

RETRIEVAL_FAMILIES = {
    "tributary_retrieval_runs": "counter",  # exposed as tributary_retrieval_runs_total
    "tributary_retrieval_run_duration_seconds": "histogram",
    "tributary_retrieval_runs_in_progress": "gauge",
    "tributary_retrieval_due_tasks": "gauge",
}
RETIRED = ("tributary_retrieval_failures_total", "tributary_retrieval_run_seconds", "tributary_retrieval_running")


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_are_off_unless_turned_on(web_client: WebClient) -> None:
    assert (await web_client.get("/metrics")).status_code == 404


async def test_metrics_on_serve_retrieval_and_http_request_metrics(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics": True}))
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/login", follow_redirects=False)).status_code in (200, 303)
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    for name, kind in RETRIEVAL_FAMILIES.items():
        assert families[name].type == kind, name
    for old in RETIRED:
        assert old not in response.text
    requests = families["tributary_http_requests"]
    login = [s for s in requests.samples if s.name.endswith("_total") and s.labels["path"] == "/login"]
    assert login
    assert login[0].labels["method"] == "GET"
    assert login[0].labels["app_name"] == "tributary"
    assert "tributary_http_request_duration_seconds" in families
    assert not any(s.labels.get("path") == "/metrics" for s in requests.samples)


async def test_http_metrics_label_routes_by_template_not_by_id(web_client: WebClient) -> None:
    """A path with an id is counted under its route's template: ids cannot multiply the series."""
    await web_client.get("/mail/messages/987654321")
    paths = {
        s.labels["path"]
        for family in REGISTRY.collect()
        if family.name == "tributary_http_requests"
        for s in family.samples
    }
    assert "/mail/messages/{message_id}" in paths
    assert not any("987654321" in path for path in paths)


def test_metric_names_follow_prometheus_conventions() -> None:
    families = {f.name: f for f in REGISTRY.collect() if f.name.startswith("tributary_")}
    retrieval = {name: f.type for name, f in families.items() if name.startswith("tributary_retrieval_")}
    assert retrieval == RETRIEVAL_FAMILIES  # one series per fact: no second failures counter
    for name, family in families.items():
        if family.type == "histogram":
            assert name.endswith("_seconds"), name
        if family.type == "gauge":
            assert not name.endswith(("_total", "_count")), name
    assert REGISTRY._names_to_collectors["tributary_retrieval_runs_total"]._labelnames == ("protocol", "outcome")  # type: ignore[attr-defined]


async def test_a_run_counts_its_outcome_and_duration(env: Env) -> None:
    ok_before = sample("tributary_retrieval_runs_total", protocol="imap", outcome="ok")
    error_before = sample("tributary_retrieval_runs_total", protocol="imap", outcome="error")
    timed_before = sample("tributary_retrieval_run_duration_seconds_count", protocol="imap")
    good = await env.add_task(name="good")
    wrong = await env.add_task(name="wrong", password="not the password", destination_folder="Other")
    assert not (await env.run(good)).errors
    assert (await env.run(wrong)).errors
    assert sample("tributary_retrieval_runs_total", protocol="imap", outcome="ok") == ok_before + 1
    assert sample("tributary_retrieval_runs_total", protocol="imap", outcome="error") == error_before + 1
    assert sample("tributary_retrieval_run_duration_seconds_count", protocol="imap") == timed_before + 2


async def scrape(port: int) -> str | None:
    """The metrics on 127.0.0.1:port, or None while nothing answers there."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
    except httpx.TransportError:
        return None
    return response.text if response.status_code == 200 else None


async def scraped(port: int) -> str:
    text: list[str] = []

    async def answers() -> bool:
        body = await scrape(port)
        if body is not None:
            text.append(body)
        return body is not None

    await eventually(answers, within=30, what=f"metrics answer on port {port}")
    return text[-1]


@asynccontextmanager
async def worker(settings: Settings, log_path: Path, **environment: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real `tributary worker`, stopped with SIGTERM at the end."""
    env = {**cli_environment(settings), **environment}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(TRIBUTARY, "worker", env=env, stdout=log, stderr=log)
    try:
        yield process
    finally:
        await terminate(process)


async def test_the_worker_serves_its_metrics_on_its_port(env: Env, tmp_path: Path) -> None:
    await env.add_task()
    (port,) = free_ports(1)
    async with worker(env.settings, tmp_path / "worker.log", TRIBUTARY_METRICS_PORT=str(port)) as process:

        async def ran() -> bool:
            body = await scrape(port)
            return body is not None and 'tributary_retrieval_runs_total{outcome="ok",protocol="imap"} 1.0' in body

        await eventually(ran, within=60, what="the worker's metrics show its run")
        assert process.returncode is None
    log = (tmp_path / "worker.log").read_text()
    assert f"metrics at http://127.0.0.1:{port}/metrics" in log


async def test_a_taken_metrics_port_is_one_sentence(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**cli_environment(settings), "TRIBUTARY_METRICS_PORT": str(port)}
        result = await asyncio.to_thread(
            subprocess.run, [TRIBUTARY, "worker", "--once"], env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "TRIBUTARY_METRICS_PORT" in result.stderr


async def test_serve_serves_metrics_on_their_own_port(settings: Settings, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    async with serve(settings, tmp_path / "serve.log", TRIBUTARY_METRICS_PORT=str(port)) as base:
        body = await scraped(port)
        assert "tributary_retrieval_runs_in_progress" in body
        assert "tributary_http_requests_total" in body  # the web app's requests (serve's /health probes)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/metrics")).status_code == 404  # not on the web app's port
    assert await scrape(port) is None  # closed with serve


async def test_serve_with_metrics_on_serves_them_at_slash_metrics(settings: Settings, tmp_path: Path) -> None:
    async with serve(settings, tmp_path / "serve.log", TRIBUTARY_METRICS="on") as base, httpx.AsyncClient() as client:
        response = await client.get(f"{base}/metrics")
    assert response.status_code == 200
    assert "tributary_retrieval_runs_in_progress" in response.text
