"""The OAuth2 HTTP transport (service/usecases/oauth/http.py): the address checked by the outbound
policy is the address connected to, while Host, TLS server name and certificate check stay with the name."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from service.domain.outbound import OutboundPolicy
from service.errors import ConnectionNotAllowed
from service.usecases.oauth.http import PolicyTransport
from tests.fixtures.certs import CertFiles, make_self_signed_cert


class _Seen:
    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.server_names: list[str | None] = []


class _Handler(BaseHTTPRequestHandler):
    seen: _Seen
    protocol_version = "HTTP/1.1"  # keep-alive: a client may reuse the connection

    def do_GET(self) -> None:
        self.seen.hosts.append(self.headers.get("Host", ""))
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, CertFiles, _Seen]]:
    cert = make_self_signed_cert(tmp_path)
    seen = _Seen()
    context = cert.server_context()

    def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.server_names.append(name)

    context.sni_callback = remember
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1]), cert, seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def test_https_keeps_the_name_for_host_sni_and_certificate(tls_server: tuple[int, CertFiles, _Seen]) -> None:
    port, cert, seen = tls_server
    policy = OutboundPolicy.parse(["127.0.0.0/8", "::1/128"])
    transport = PolicyTransport(policy, tls=cert.client_context())
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
        response = await http.get(f"https://localhost:{port}/.well-known/openid-configuration")
    assert response.json() == {"ok": True}
    assert seen.hosts == [f"localhost:{port}"]
    assert seen.server_names == ["localhost"]


async def test_an_address_the_policy_refuses_is_never_connected_to(tls_server: tuple[int, CertFiles, _Seen]) -> None:
    port, cert, seen = tls_server
    transport = PolicyTransport(OutboundPolicy(), tls=cert.client_context())
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
        for url in (f"https://localhost:{port}/", f"https://127.0.0.1:{port}/", f"https://2130706433:{port}/"):
            with pytest.raises(ConnectionNotAllowed):
                await http.get(url)
    assert seen.hosts == []


async def test_two_names_on_one_address_never_share_a_connection(tls_server: tuple[int, CertFiles, _Seen]) -> None:
    """httpcore pools by (scheme, address, port): a connection verified for one name must not carry a
    request for another name at the same address. Each name gets its own TLS handshake."""
    port, cert, seen = tls_server
    policy = OutboundPolicy.parse(["127.0.0.0/8", "::1/128"])
    transport = PolicyTransport(policy, tls=cert.client_context())
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
        for url in (f"https://localhost:{port}/a", f"https://localhost:{port}/b", f"https://127.0.0.1:{port}/c"):
            assert (await http.get(url)).json() == {"ok": True}
    assert seen.hosts == [f"localhost:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    assert seen.server_names == ["localhost", None]  # one handshake per name (no SNI is sent for an address)
