"""Plain words for the settings pages: health of tasks and accounts, Test Connection steps,
the outcome of "Retrieve Messages Now". Pure functions of the service's views and a clock.

Times are shown relative to now ("5 minutes ago", "in 9 minutes"), with the exact UTC
time in a <time> element's datetime and title.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.domain.connection_test import ConnectionReport
from service.domain.import_choices import InitialImport
from service.domain.retrieval import TaskView, push_applies
from service.domain.smtp_accounts import SmtpAccountView
from service.domain.values import Protocol, PushState, RetrievalMethod, Security
from service.usecases.oauth_targets import SignIn

SECURITY_LABELS = {Security.NONE: "None", Security.STARTTLS: "STARTTLS", Security.SSL: "SSL/TLS"}
PROTOCOL_LABELS = {Protocol.IMAP: "IMAP", Protocol.POP3: "POP3"}
STEP_LABELS = {
    "resolve": "Look up the server",
    "connect": "Connect",
    "tls": "Secure connection (TLS)",
    "greeting": "Server greeting",
    "capabilities": "Capabilities",
    "ehlo": "EHLO",
    "starttls": "STARTTLS",
    "login": "Sign in",
    "auth": "Sign in",
    "folders": "List folders",
    "messages": "Count messages",
    "cleartext": "Password protection",
}
RETRIEVAL_OFF = "Retrieval is turned off by your administrator"  # no run happens while the domain's switch is off
CREDENTIALS_HINT = "The server rejected the username or password. Edit it to correct them."
PENDING_HINT = "The sign-in with the provider was not completed. Click Reconnect to sign in."
RECONNECT_HINT = (
    "The provider no longer accepts this sign-in (consent withdrawn or password changed). "
    "Click Reconnect to sign in again."
)
OAUTH2 = "oauth2"
PENDING = "pending"
RECONNECT = "reconnect"


@dataclass(frozen=True, slots=True)
class Moment:
    iso: str
    text: str  # relative: "5 minutes ago", "in 9 minutes"
    exact: str  # "2024-03-05 10:00 UTC"


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    text: str = ""
    moment: Moment | None = None
    tone: str = ""  # "error" for the last error


@dataclass(frozen=True, slots=True)
class Message:
    """A sentence shown after an action: kind is ok, info, warning or error."""

    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Row:
    """One task or account as its card shows it."""

    id: int
    title: str
    summary: str
    status: str  # ok, new, failing, action, paused, off
    status_text: str
    facts: list[Fact] = field(default_factory=list)
    problem: str | None = None
    paused: bool = False
    reconnect: bool = False  # signs in with an OAuth2 provider that needs the user's consent (again)
    pending: bool = False  # that consent was never given: nothing to run or test yet
    push: str | None = None  # retrieval, automatic IMAP: "Push: listening", "Push: off"... (push_line)
    push_tone: str = ""  # ok, off, waiting, error: the style; the words say it all


@dataclass(frozen=True, slots=True)
class StepLine:
    label: str
    ok: bool
    detail: str
    hint: str
    duration: str
    warning: bool = False  # passed, with a risk to fix: shown with its hint


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def moment(value: datetime | None, now: datetime) -> Moment | None:
    if value is None:
        return None
    seconds = (value - now).total_seconds()
    distance = abs(seconds)
    if distance < 45:
        text = "in less than a minute" if seconds > 0 else "just now"
    else:
        minutes = round(distance / 60)
        hours, days = round(distance / 3600), round(distance / 86400)
        amount = (
            _plural(minutes, "minute")
            if minutes < 60
            else _plural(hours, "hour")
            if hours < 24
            else _plural(days, "day")
        )
        text = f"in {amount}" if seconds > 0 else f"{amount} ago"
    return Moment(value.isoformat(), text, value.strftime("%Y-%m-%d %H:%M UTC"))


def _when(label: str, value: datetime | None, now: datetime, never: str) -> Fact:
    found = moment(value, now)
    return Fact(label, moment=found) if found else Fact(label, never)


def _next_run(task: TaskView, now: datetime) -> Fact:
    if task.paused_reason:
        return Fact("Next run", "Paused until you resume it")
    if task.method is RetrievalMethod.MANUAL:
        return Fact("Next run", "Only when you click Retrieve Messages Now")
    if not task.is_active or task.next_run_at is None:
        return Fact("Next run", "Not scheduled")
    if task.next_run_at <= now:
        return Fact("Next run", "Due now")
    return _when("Next run", task.next_run_at, now, "")


PUSH_WORDS = {
    PushState.LISTENING: ("Push: listening", "ok"),
    PushState.UNSUPPORTED: ("Push: not offered by the server", "off"),
    PushState.CONNECTING: ("Push: connecting", "waiting"),
    PushState.FAILED: ("Push: stopped", "error"),
}


def push_line(task: TaskView) -> tuple[str | None, str]:
    """The task's push line and its tone: None for POP3 and manual tasks, where push never applies."""
    if not push_applies(task.protocol, task.method, True):
        return None, ""
    if not task.push:
        return "Push: off", "off"
    if task.push_state is None:
        if task.paused_reason:
            return "Push: paused with the task", "off"
        return "Push: on, not connected yet", "waiting"
    text, tone = PUSH_WORDS[task.push_state]
    if task.push_state is PushState.FAILED and task.push_detail:
        text += f" — {task.push_detail}"
    return text, tone


def import_words(task: TaskView) -> str:
    """The task's import choices in the form's words, "" for the default (all messages, every
    folder): "Only messages from now on · Folders: INBOX, Work/* · Not: Spam*"."""
    parts = [] if task.initial == "all" else [InitialImport.parse(task.initial).label()]
    if task.include_folders:
        parts.append("Folders: " + ", ".join(task.include_folders))
    if task.exclude_folders:
        parts.append("Not: " + ", ".join(task.exclude_folders))
    return " · ".join(parts)


def task_row(task: TaskView, now: datetime, *, retrieval_enabled: bool = True, sign_in: SignIn | None = None) -> Row:
    """`sign_in` (service.usecases.oauth_targets.sign_in_states): how the task signs in, when known."""
    protocol = PROTOCOL_LABELS[task.protocol]
    oauth = sign_in is not None and sign_in.auth == OAUTH2
    status_of = sign_in.status if sign_in is not None and oauth else None
    who = task.username or "the address you sign in with"
    summary = f"{protocol} · {who} on {task.host}:{task.port} · {SECURITY_LABELS[task.security]} · " + (
        "Automatic" if task.method is RetrievalMethod.AUTOMATIC else "Manual"
    )
    if oauth:
        summary += " · Signs in with the provider"
    waiting = {PENDING: "After you sign in with the provider", RECONNECT: "After you reconnect"}
    facts = [
        _when("Last run", task.last_run_at, now, "Never"),
        _when("Last success", task.last_success_at, now, "Never"),
        Fact("Messages imported", f"{task.messages_imported:,}"),
        Fact("Next run", RETRIEVAL_OFF)
        if not retrieval_enabled
        else Fact("Next run", waiting[status_of])
        if status_of in waiting
        else _next_run(task, now),
    ]
    if task.failing_since:
        facts.append(_when("Failing since", task.failing_since, now, ""))
    if task.last_error:
        facts.append(Fact("Last error", task.last_error, tone="error"))
    chosen = import_words(task)
    if chosen:
        facts.append(Fact("What to import", chosen))
    problem: str | None = None
    if not retrieval_enabled:
        status, status_text = "off", "Turned off by your administrator"
    elif status_of == PENDING:
        status, status_text, problem = "pending", "Waiting for sign-in", PENDING_HINT
    elif status_of == RECONNECT:
        status, status_text, problem = "action", "Needs your action", RECONNECT_HINT
    elif task.paused_reason:
        status, status_text, problem = "paused", "Paused: needs your action", task.paused_reason
    elif task.needs_action:
        status, status_text, problem = "action", "Needs your action", CREDENTIALS_HINT
    elif task.last_error:
        status, status_text = "failing", "Failing"
    elif task.last_run_at is None:
        status, status_text = "new", "Not run yet"
    else:
        status, status_text = "ok", "Working"
    title = task.name or task.username or "New retrieval task"
    push, push_tone = push_line(task)
    return Row(
        task.id,
        title,
        summary,
        status,
        status_text,
        facts,
        problem,
        paused=bool(task.paused_reason),
        reconnect=status_of in (PENDING, RECONNECT),
        pending=status_of == PENDING,
        push=push if retrieval_enabled else None,
        push_tone=push_tone,
    )


def smtp_row(account: SmtpAccountView, now: datetime, *, enabled: bool = True, sign_in: SignIn | None = None) -> Row:
    """`sign_in` (service.usecases.oauth_targets.sign_in_states): how the account signs in, when known."""
    oauth = sign_in is not None and sign_in.auth == OAUTH2
    status_of = sign_in.status if sign_in is not None and oauth else None
    if oauth:
        who = account.username or account.email_address or "the address you sign in with"
        auth = f"signs in with the provider as {who}"
    else:
        auth = f"signs in as {account.username}" if account.auth_required else "no authentication"
    summary = f"{account.host}:{account.port} · {SECURITY_LABELS[account.security]} · {auth}"
    if account.is_default:
        summary += " · Default From address"
    facts = [
        _when("Last used", account.last_used_at, now, "Never"),
        _when("Last success", account.last_success_at, now, "Never"),
    ]
    if account.last_error:
        facts.append(Fact("Last error", account.last_error, tone="error"))
    if account.sent_copy_task is not None:  # issue 18: the copy for the remote Sent folder
        facts.append(Fact("Sent copy", account.sent_copy_note or "Also saved in the Sent folder of its mailbox."))
    problem: str | None = None
    if not enabled:
        status, status_text = "turned-off", "Turned off by your administrator"
    elif status_of == PENDING:
        status, status_text, problem = "pending", "Waiting for sign-in", PENDING_HINT
    elif status_of == RECONNECT:
        status, status_text, problem = "action", "Needs your action", RECONNECT_HINT
    elif account.needs_action:
        status, status_text, problem = "action", "Needs your action", CREDENTIALS_HINT
    elif not account.is_active:
        status, status_text = "off", "Not offered in Send From"
    elif account.last_error:
        status, status_text = "failing", "Failing"
    elif account.last_used_at is None:
        status, status_text = "new", "Not used yet"
    else:
        status, status_text = "ok", "Working"
    title = account.label if account.email_address else "New SMTP account"
    return Row(
        account.id,
        title,
        summary,
        status,
        status_text,
        facts,
        problem,
        reconnect=enabled and status_of in (PENDING, RECONNECT),
        pending=status_of == PENDING,
    )


def steps(report: ConnectionReport) -> list[StepLine]:
    return [
        StepLine(
            STEP_LABELS.get(step.name, step.name.capitalize()),
            step.ok,
            step.detail,
            step.hint if not step.ok or step.warning else "",
            f"{step.duration_ms:,.0f} ms",
            step.warning,
        )
        for step in report.steps
    ]


def report_context(report: ConnectionReport) -> dict[str, Any]:
    """What templates/settings/_steps.html shows for a Test Connection report."""
    lines = steps(report)
    return {"steps": lines, "steps_ok": report.ok, "steps_warned": any(line.warning for line in lines)}
