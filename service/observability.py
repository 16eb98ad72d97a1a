"""How a process logs and exposes its metrics: the faces call `configure_logging` and `start_metrics_server`.

Logs go to stderr as TRIBUTARY_LOG_FORMAT says: `text` (one readable line,
`TIME LEVEL LOGGER: MESSAGE`) or `json` (one JSON object per line with the keys
time, level, logger, message, and request_id, client, user_id while a web
request is being answered; exception when there is a traceback).

What a visitor or a remote server chose (a request path, whose %0A the ASGI scope has
already decoded; a folder name; a server's reply) reaches messages, so no message may
break a line: a line-oriented reader (fail2ban, journald, grep) would take what follows
for a line of its own. The text format writes control characters and Unicode line
separators as Python escapes (`\\r`, `\\n`, `\\x85`, `\\u2028`); a traceback keeps its
line breaks but each of its lines starts with a tab, so none can pass for a record. The
json format escapes what json.dumps leaves raw (C1 controls, U+2028, U+2029). The web face
sets the request's context (`bind_request`) in a middleware; records made
anywhere below it, in any module, carry it, because the context lives in a
`contextvars.ContextVar` (copied into worker threads by asyncio.to_thread).

TRIBUTARY_LOG_LEVEL is the least severe level written. APScheduler says
"Running job ..." and "... executed successfully" at INFO for every job, every
few seconds: its loggers are held at WARNING unless the level is DEBUG.
uvicorn's loggers are made to go through the same handler, so `serve` writes one
format.

Metrics (service.metrics, and the web face's HTTP metrics) live in
prometheus_client's default registry. `start_metrics_server` serves that
registry on TRIBUTARY_METRICS_PORT (bound to TRIBUTARY_METRICS_ADDRESS,
127.0.0.1 by default) from a thread, for `tributary worker`, which has no web
app, and for `serve` when its metrics should not share the web app's port.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from prometheus_client import start_http_server

from service.config import Settings
from service.errors import PortUnavailable

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS = ("apscheduler",)
"""Held at WARNING unless the level is DEBUG: APScheduler logs each job's start and end at INFO."""
TAKEN_OVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
"""uvicorn gives these handlers of its own; they are made to propagate to ours instead."""


def _nobody() -> int | None:
    return None


@dataclass(frozen=True)
class RequestContext:
    """Who a web request comes from. `user_id` is asked for when a line is written, because the
    session (and so the user) is known only after the middleware that binds the context has run."""

    request_id: str
    client: str | None
    user_id: Callable[[], int | None] = field(default=_nobody)


_REQUEST: ContextVar[RequestContext | None] = ContextVar("tributary_request", default=None)


def bind_request(context: RequestContext) -> Token[RequestContext | None]:
    """Make `context` the current request's for every log line until `unbind_request(token)`."""
    return _REQUEST.set(context)


def unbind_request(token: Token[RequestContext | None]) -> None:
    _REQUEST.reset(token)


class RequestContextFilter(logging.Filter):
    """Adds request_id, client and user_id to each record (None outside a web request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _REQUEST.get()
        record.request_id = context.request_id if context else None
        record.client = context.client if context else None
        try:
            record.user_id = context.user_id() if context else None
        except Exception:  # a session that cannot be read must not lose the line
            record.user_id = None
        return True


_UNSAFE_IN_TEXT = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
"""Every control character but tab, and the Unicode line and paragraph separators."""
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029]")
"""What json.dumps(ensure_ascii=False) leaves unescaped that some readers take for a line break."""


def escape_controls(text: str) -> str:
    """`text` with each character of `_UNSAFE_IN_TEXT` written as its Python escape (CR -> \\r)."""
    return _UNSAFE_IN_TEXT.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: MESSAGE` on one line, whatever the message holds (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        cached = record.exc_text  # another handler's (or another process's) traceback text: indent it too
        record.exc_text = None if record.exc_info or not cached else _indented(cached)
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(block: str) -> str:
    return "\n".join("\t" + escape_controls(line) for line in block.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the message is formatted with its arguments first, so line breaks in
    user input are escaped (\\n) and can never start a forged line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "client", "user_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(entry, ensure_ascii=False, default=str)
        return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


class _TributaryHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (recognised, so configuring again replaces it)."""


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Send this process's logs to `stream` (stderr) in the configured format and level.

    Replaces a handler installed by an earlier call, leaves other handlers (pytest's, an operator's) alone.
    Returns the handler, so a caller may remove it.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _TributaryHandler)]:
        root.removeHandler(handler)
    handler = _TributaryHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    level = logging.getLevelName(settings.log_level)
    handler.setLevel(level)  # also for loggers that set a lower level of their own (uvicorn's)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    for name in TAKEN_OVER_LOGGERS:
        logger = logging.getLogger(name)
        for own in list(logger.handlers):
            logger.removeHandler(own)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    return handler


def logging_configured() -> bool:
    """True when the root logger has handlers already (pytest's, an operator's, ours)."""
    return bool(logging.getLogger().handlers)


def start_metrics_server(settings: Settings) -> Callable[[], None] | None:
    """Serve the default registry on TRIBUTARY_METRICS_PORT from a thread; returns how to stop it (None: no port).

    Raises PortUnavailable when the port cannot be taken (in use, or the address is not this machine's).
    """
    if settings.metrics_port is None:
        return None
    try:
        server, thread = start_http_server(settings.metrics_port, addr=settings.metrics_address)
    except OSError as exc:
        raise PortUnavailable(
            f"The metrics port {settings.metrics_address}:{settings.metrics_port} cannot be opened "
            f"({exc.strerror or exc}): set TRIBUTARY_METRICS_PORT to a free port, or "
            "TRIBUTARY_METRICS_ADDRESS to an address of this machine."
        ) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
