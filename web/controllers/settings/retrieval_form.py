"""The "Retrieval Task" form: what it posts, how it is read into a NewTask (with an error per
field), and how a saved task fills it for "Edit". The password is never filled in.

`transfer_examples` says, for the task being typed, where typical remote folders land with each
folder transfer method, by the very rule a run uses (service.domain.retrieval.local_target).

What to import (service.domain.import_choices): the initial import as three radios ("since"
with a date field), and the folders as include/exclude patterns (one a line). After Test
Connection the remote folders are listed with their message counts, ticked as the patterns
say; posted with that list, the ticks are the selection (`FolderSelection.from_ticks`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any

from litestar.enums import RequestEncodingType
from litestar.params import Body

from service.domain.connection_test import ConnectionReport
from service.domain.import_choices import INITIAL_LABELS, FolderSelection, InitialImport, InitialKind
from service.domain.retrieval import TaskView, default_destination, local_target
from service.domain.values import (
    DEFAULT_PORTS,
    SPECIAL_FOLDER_NAMES,
    FolderTransfer,
    Protocol,
    RetrievalMethod,
    Security,
    default_port,
)
from service.errors import InvalidInput
from service.usecases.retrieval_tasks import NewTask, task_problems
from web.controllers.settings.common import checked, choice, number

ON = "on"
PORT_MESSAGE = "The port must be a number from 1 to 65535."
EXAMPLE_FOLDERS = (("INBOX", None), ("Sent", "\\Sent"), ("Work/2024", None))
"""Remote folders most mailboxes have (path, RFC 6154 special-use flag), shown in the examples."""
UNNAMED_DESTINATION = "<account name>"


@dataclass
class TaskForm:
    """Every field as typed. Checkboxes are "on" when ticked and absent (empty) otherwise."""

    name: str = ""
    protocol: str = Protocol.IMAP.value
    host: str = ""
    security: str = Security.SSL.value
    port: str = ""
    username: str = ""
    password: str = ""
    verify_certificate: str = ""
    timeout_seconds: str = "60"
    method: str = RetrievalMethod.AUTOMATIC.value
    folder_transfer: str = FolderTransfer.SUBFOLDERS.value
    destination_folder: str = ""
    use_apop: str = ""
    leave_on_server: str = ""
    delete_after_days: str = ""
    apply_filters: str = ""
    push: str = ""
    enable_debug: str = ""
    initial: str = InitialKind.ALL.value  # the radio: all | new | since (with initial_since)
    initial_since: str = ""
    include_folders: str = ""  # patterns, one a line
    exclude_folders: str = ""
    # Posted only once Test Connection listed the remote folders: every listed path, the ticked ones.
    folder_listed: str | list[str] = ""
    folder_ticked: str | list[str] = ""
    only_these: str = ""

    @classmethod
    def blank(cls) -> TaskForm:
        """The "New Retrieval Task" form: IMAP over SSL/TLS, certificate checked, filters and push on."""
        return cls(
            port=str(default_port(Protocol.IMAP, Security.SSL)),
            verify_certificate=ON,
            leave_on_server=ON,
            apply_filters=ON,
            push=ON,
        )

    @classmethod
    def of(cls, task: TaskView) -> TaskForm:
        """The Edit form for a saved task (password left empty: it is write-only)."""
        initial = InitialImport.parse(task.initial)
        return cls(
            name=task.name,
            protocol=task.protocol.value,
            host=task.host,
            security=task.security.value,
            port=str(task.port),
            username=task.username,
            verify_certificate=ON if task.verify_certificate else "",
            timeout_seconds=str(task.timeout_seconds),
            method=task.method.value,
            folder_transfer=task.folder_transfer.value,
            destination_folder=task.destination_folder or "",
            use_apop=ON if task.use_apop else "",
            leave_on_server=ON if task.leave_on_server else "",
            delete_after_days=str(task.delete_after_days or ""),
            apply_filters=ON if task.apply_filters else "",
            push=ON if task.push else "",
            enable_debug=ON if task.enable_debug else "",
            initial=initial.kind.value,
            initial_since=initial.since.isoformat() if initial.since is not None else "",
            include_folders="\n".join(task.include_folders),
            exclude_folders="\n".join(task.exclude_folders),
        )

    def without_password(self) -> TaskForm:
        return replace(self, password="")

    def read(self, *, password_required: bool = True) -> tuple[NewTask, dict[str, str]]:
        """The NewTask this form describes, and what is wrong with it (field name -> sentence)."""
        errors: dict[str, str] = {}
        protocol = choice(Protocol, self.protocol, Protocol.IMAP)
        security = choice(Security, self.security, Security.SSL)
        port = number(self.port, errors, "port", PORT_MESSAGE)
        timeout = number(self.timeout_seconds, errors, "timeout_seconds", "The timeout must be a number of seconds.")
        leave = checked(self.leave_on_server)
        days = number(self.delete_after_days, errors, "delete_after_days", "Enter a number of days, or leave it empty.")
        imap = protocol is Protocol.IMAP
        initial = choice(InitialKind, self.initial, InitialKind.ALL)
        initial_text = initial_posted(self.initial, self.initial_since)
        include, exclude = _lines(self.include_folders), _lines(self.exclude_folders)
        listed = _values(self.folder_listed)
        if listed and imap:  # the folder list was shown: its ticks are the selection
            try:
                ticked = FolderSelection.from_ticks(
                    listed, _values(self.folder_ticked), only_these=checked(self.only_these)
                )
                include, exclude = list(ticked.include), list(ticked.exclude)
            except InvalidInput as exc:
                errors["include_folders"] = exc.message
        new = NewTask(
            protocol=protocol,
            host=self.host,
            username=self.username,
            password=self.password,
            security=security,
            port=port,
            name=self.name,
            verify_certificate=checked(self.verify_certificate),
            method=choice(RetrievalMethod, self.method, RetrievalMethod.AUTOMATIC),
            folder_transfer=choice(FolderTransfer, self.folder_transfer, FolderTransfer.SUBFOLDERS),
            destination_folder=self.destination_folder.strip() or None,
            use_apop=checked(self.use_apop) and not imap,
            leave_on_server=leave or imap,
            delete_after_days=days if leave and not imap else None,
            apply_filters=checked(self.apply_filters),
            push=checked(self.push) and imap,
            enable_debug=checked(self.enable_debug),
            timeout_seconds=timeout if timeout is not None else 60,
            initial=initial_text,
            include_folders=include if imap else [],
            exclude_folders=exclude if imap else [],
        )
        problems = task_problems(new, password_required=password_required)
        if "initial" in problems and initial is InitialKind.SINCE:
            problems["initial"] = "Enter the date to import messages since, as YYYY-MM-DD (for example 2024-03-01)."
        return new, {**problems, **errors}


def initial_posted(kind: str, since: str) -> str:
    """The initial import choice the form's radio and date field describe ("all", "new", "since:DATE")."""
    initial = choice(InitialKind, kind, InitialKind.ALL)
    return f"since:{since.strip()}" if initial is InitialKind.SINCE else initial.value


def patterns_posted(text: str) -> list[str]:
    """A pattern textarea as posted: one a line (service.domain.import_choices checks them)."""
    return _lines(text)


def _lines(text: str) -> list[str]:
    """A textarea's patterns: one a line, blank lines dropped (a pattern holds no line break)."""
    return [line for line in text.splitlines() if line.strip()]


def _values(posted: str | list[str]) -> list[str]:
    """A field posted once (a string), several times (a list) or not at all ("")."""
    if isinstance(posted, list):
        return posted
    return [posted] if posted else []


def initial_choices() -> list[tuple[str, str]]:
    """The initial import radios: (value, label), in the issue's words."""
    return [(kind.value, label) for kind, label in INITIAL_LABELS.items()]


def folder_choices(report: ConnectionReport, new: NewTask) -> dict[str, Any]:
    """The folder list Test Connection found, each ticked as the task's patterns say."""
    selection = FolderSelection(tuple(new.include_folders), tuple(new.exclude_folders))
    return {
        "folders": [(f.path, f.messages, selection.includes(f.path)) for f in report.folders],
        "only_these": selection.only_these,
    }


def example_destination(name: str, username: str, host: str, destination_folder: str) -> str:
    """The folder "Add as subfolders" puts this task's folders under: the one typed (as it is
    stored), else the one named after the account, as the run picks it (default_destination).
    Before the name or the account is typed, a placeholder says what it will be."""
    typed = destination_folder.strip("/ ")
    if typed:
        return typed
    name, username, host = name.strip(), username.strip(), host.strip().lower()
    if not (name or "@" in username or (username and host)):
        return UNNAMED_DESTINATION
    return default_destination(name, username, host)


def transfer_examples(destination: str) -> dict[str, str]:
    """Where EXAMPLE_FOLDERS land with each folder transfer method (its value -> a line such as
    "Remote INBOX → Work mail/INBOX, Sent → Work mail/Sent, Work/2024 → Work mail/Work/2024")."""
    lines: dict[str, str] = {}
    for transfer in FolderTransfer:
        pairs = []
        for remote, special_use in EXAMPLE_FOLDERS:
            target = local_target(remote, special_use, transfer=transfer, destination=destination)
            local = SPECIAL_FOLDER_NAMES[target.special_use] if target.special_use else target.path
            pairs.append(f"{remote} → {local}")
        lines[transfer.value] = "Remote " + ", ".join(pairs)
    return lines


def suggested_port(kind: str, security: str, current: str) -> str:
    """The port a security mode suggests for IMAP, POP3 or SMTP, unless the user typed their own.

    A port is replaced when it is empty or one of the well-known ports (143/993, 110/995,
    25/587/465): switching IMAP over SSL/TLS to POP3 moves 993 to 995, a custom 10993 stays.
    """
    try:
        wanted = default_port(kind if kind == "smtp" else Protocol(kind), Security(security))
    except (KeyError, ValueError):
        return current
    known = {str(port) for port in DEFAULT_PORTS.values()}
    return str(wanted) if current.strip() in known | {""} else current


TaskBody = Annotated[TaskForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
