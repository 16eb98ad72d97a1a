"""Reading a domain's autoconfig document: Thunderbird's format (clientConfig version 1.1).

https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat

    <clientConfig version="1.1">
      <emailProvider id="example.com">
        <incomingServer type="imap">
          <hostname>imap.example.com</hostname> <port>993</port>
          <socketType>SSL</socketType>              (plain | STARTTLS | SSL)
          <username>%EMAILADDRESS%</username>        (%EMAILLOCALPART%, %EMAILDOMAIN%)
          <authentication>password-cleartext</authentication>   (OAuth2 ...)
        </incomingServer>
        <outgoingServer type="smtp"> ... </outgoingServer>
      </emailProvider>
    </clientConfig>

The document comes from a server anyone can run, so it is read the way
defusedxml reads: expat, with a document type declaration (and so any entity,
internal or external: "billion laughs", XXE) refused outright; at most
MAX_BYTES; any encoding expat knows, and an undecodable byte refuses the
document. Each server is held to the rules of a typed one: a valid host name,
a port from 1 to 65535, a known socket type; anything else is skipped, never
repaired. A document that yields nothing usable counts as no document.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any
from xml.parsers import expat

from service.domain.discovery import MAX_SERVERS, FoundServer, Source
from service.domain.smtp_accounts import check_host
from service.domain.values import Security
from service.errors import InvalidInput

MAX_BYTES = 256 * 1024
_TYPES = {("incomingServer", "imap"): "imap", ("incomingServer", "pop3"): "pop3", ("outgoingServer", "smtp"): "smtp"}
_SOCKET = {"ssl": Security.SSL, "tls": Security.SSL, "starttls": Security.STARTTLS, "plain": Security.NONE}


class UnsafeDocument(ValueError):
    """The document declares a DTD or entities, or is not well-formed XML."""


def _parse(data: bytes) -> ET.Element:
    """The document's root element, parsed with expat and no DTD at all."""
    if len(data) > MAX_BYTES:
        raise UnsafeDocument("too large")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(*_args: object) -> Any:
        raise UnsafeDocument("a document type declaration or entity")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = lambda tag, attrs: builder.start(tag, attrs)
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except (expat.ExpatError, AssertionError, IndexError) as exc:
        raise UnsafeDocument(str(exc)) from exc


def _text(element: ET.Element, tag: str) -> str:
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else ""


_PLACEHOLDER = re.compile("%(EMAILADDRESS|EMAILLOCALPART|EMAILDOMAIN)%")


def _fill(template: str, email: str, local_part: str, domain: str) -> str:
    """The template with Thunderbird's placeholders filled in one pass: a "%" in the address's own
    local part (RFC 5322 allows "%EMAILDOMAIN%@example.com") is never read as another placeholder."""
    values = {"EMAILADDRESS": email, "EMAILLOCALPART": local_part, "EMAILDOMAIN": domain}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def parse_autoconfig(data: bytes, *, email: str, local_part: str, domain: str, where: str) -> list[FoundServer]:
    """The usable servers of a document, in its order (UnsafeDocument when it cannot be read at all)."""
    root = _parse(data)
    if root.tag != "clientConfig":
        raise UnsafeDocument("not a clientConfig document")
    found: list[FoundServer] = []
    for provider in root.findall("emailProvider"):
        for element in provider:
            protocol = _TYPES.get((str(element.tag), element.get("type", "").lower()))
            if protocol is None or len(found) >= MAX_SERVERS:
                continue
            server = _server(element, protocol, email=email, local_part=local_part, domain=domain, where=where)
            if server is not None:
                found.append(server)
    return found


def _server(
    element: ET.Element, protocol: str, *, email: str, local_part: str, domain: str, where: str
) -> FoundServer | None:
    host_text = _fill(_text(element, "hostname"), email, local_part, domain)
    port_text = _text(element, "port")
    security = _SOCKET.get(_text(element, "socketType").lower())
    if security is None or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        return None
    port = int(port_text)
    if not 1 <= port <= 65535 or len(host_text) > 253:
        return None
    try:
        host = check_host(host_text)
    except InvalidInput:
        return None
    username = _fill(_text(element, "username"), email, local_part, domain)
    if len(username) > 320 or any(ord(c) < 32 or ord(c) == 127 for c in username):
        username = ""
    methods = {(a.text or "").strip().lower() for a in element.findall("authentication")}
    oauth2_only = bool(methods) and methods <= {"oauth2"}
    return FoundServer(protocol, host, port, security, Source.AUTOCONFIG, where, username, oauth2_only)
