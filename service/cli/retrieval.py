"""`tributary retrieval ...`: Email Retrieval tasks (add, list, run, test, reconnect, delete)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from service.cli import cli
from service.cli.common import Services, emit, fail, plain_errors, read_password, run_with_services
from service.domain.retrieval import push_applies
from service.domain.values import FolderTransfer, Protocol, RetrievalMethod, Security
from service.usecases import retrieval_tasks, users

if TYPE_CHECKING:
    from service.domain.connection_test import ConnectionReport
    from service.domain.retrieval import RunResult
    from service.usecases.oauth_targets import OAuthStarted

# Each command imports the rest of what it needs (OAuth2 sign-in, Test Connection, the retrieval
# pipeline) itself: `retrieval run`, the benchmark's command, loads neither httpx nor authlib.


@cli.group()
def retrieval() -> None:
    """Email Retrieval tasks: remote IMAP and POP3 mailboxes pulled into the local one."""


@retrieval.command("add")
@click.option("--user", "user_email", required=True, help="The Tributary user who owns the task.")
@click.option("--protocol", type=click.Choice([p.value for p in Protocol]), required=True)
@click.option("--server", help="The remote server's host name (with --oauth-provider: default the provider's).")
@click.option("--port", type=click.IntRange(1, 65535), help="Default: suggested by the security mode.")
@click.option(
    "--security",
    type=click.Choice([s.value for s in Security]),
    help="Default: ssl (with --oauth-provider: the provider's).",
)
@click.option("--username", help="Required with a password; with --oauth-provider default: the address signed in as.")
@click.option(
    "--oauth-provider",
    help="Sign in with this OAuth2 provider (google, microsoft or a configured one) instead of a password: "
    "prints the consent URL to open in a browser.",
)
@click.option("--email", help="With --oauth-provider: the same as --username.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@click.option("--name", default="", help="A name for the task (default: the account's address).")
@click.option("--folder-transfer", type=click.Choice([f.value for f in FolderTransfer]), default="subfolders")
@click.option("--destination", help="Local folder: the parent for subfolders (IMAP), or the target (POP3).")
@click.option("--manual", "method", flag_value=RetrievalMethod.MANUAL.value, help="Run only when asked.")
@click.option("--automatic", "method", flag_value=RetrievalMethod.AUTOMATIC.value, default=True, help="Every interval.")
@click.option("--no-verify-cert", is_flag=True, help="Accept any certificate (only for servers you trust).")
@click.option("--no-filter", is_flag=True, help="Do not apply spam and content filtering.")
@click.option(
    "--push/--no-push",
    default=True,
    help="IMAP, automatic: Push new mail (IMAP IDLE) as the server announces it (default: on).",
)
@click.option("--apop", is_flag=True, help="POP3: Enable APOP authentication.")
@click.option(
    "--leave-on-server/--delete-from-server", default=True, help="POP3: keep retrieved messages on the server."
)
@click.option("--delete-after-days", type=click.IntRange(min=1), help="POP3: delete from the server after N days.")
@click.option("--debug", is_flag=True, help="Enable debug: log the protocol transcript (credentials redacted).")
@click.option(
    "--initial",
    default="all",
    show_default=True,
    metavar="all|new|since:YYYY-MM-DD",
    help="What the first run imports: all messages, only messages from now on, or messages since a date "
    "(mail arriving later is always imported).",
)
@click.option(
    "--include-folder",
    "include_folders",
    multiple=True,
    metavar="PATTERN",
    help="IMAP: import only folders matching PATTERN (* for any characters; repeatable). Default: every folder.",
)
@click.option(
    "--exclude-folder",
    "exclude_folders",
    multiple=True,
    metavar="PATTERN",
    help="IMAP: do not import folders matching PATTERN (* for any characters; repeatable).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"id": N} ({"id": N, "status": "pending", "authorize_url": URL} with --oauth-provider).',
)
@plain_errors
def retrieval_add(
    user_email: str,
    protocol: str,
    server: str | None,
    port: int | None,
    security: str | None,
    username: str | None,
    oauth_provider: str | None,
    email: str | None,
    password_stdin: bool,
    name: str,
    folder_transfer: str,
    destination: str | None,
    method: str,
    no_verify_cert: bool,
    no_filter: bool,
    push: bool,
    apop: bool,
    leave_on_server: bool,
    delete_after_days: int | None,
    debug: bool,
    initial: str,
    include_folders: tuple[str, ...],
    exclude_folders: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a retrieval task and print its id (with --oauth-provider: pending until the sign-in)."""
    from service.cli.oauth import begin_for, emit_started
    from service.usecases.oauth_targets import OAuthStart

    problem = retrieval_tasks.import_problem(
        initial=initial, include_folders=include_folders, exclude_folders=exclude_folders
    )
    if problem is not None:
        fail(problem)
        return
    if oauth_provider is not None:
        if password_stdin or apop or no_verify_cert:
            fail(
                "--password-stdin, --apop and --no-verify-cert do not go with --oauth-provider: the provider signs in "
                "without a password, over TLS with a verified certificate."
            )
            return
        start = OAuthStart(
            kind="retrieval",
            provider=oauth_provider,
            protocol=Protocol(protocol),
            host=server,
            port=port,
            security=Security(security) if security else None,
            username=username or email,
            name=name,
            folder_transfer=FolderTransfer(folder_transfer),
            destination_folder=destination,
            method=RetrievalMethod(method),
            apply_filters=not no_filter,
            push=push,
            leave_on_server=leave_on_server,
            delete_after_days=delete_after_days,
            enable_debug=debug,
        )

        async def begin(services: Services) -> OAuthStarted:
            started = await begin_for(services, user_email, start)
            await retrieval_tasks.set_import_choices(
                db=services.db,
                task_id=started.id,
                user_id=None,
                initial=initial,
                include_folders=include_folders,
                exclude_folders=exclude_folders,
            )
            return started

        emit_started(run_with_services(begin), as_json=as_json)
        return
    if not server or not username:
        fail("Give --server and --username (or sign in with --oauth-provider).")
        return
    password = read_password(password_stdin)
    new = retrieval_tasks.NewTask(
        protocol=Protocol(protocol),
        host=server,
        port=port,
        security=Security(security or Security.SSL.value),
        username=username,
        password=password,
        name=name,
        folder_transfer=FolderTransfer(folder_transfer),
        destination_folder=destination,
        method=RetrievalMethod(method),
        verify_certificate=not no_verify_cert,
        apply_filters=not no_filter,
        push=push,
        use_apop=apop,
        leave_on_server=leave_on_server,
        delete_after_days=delete_after_days,
        enable_debug=debug,
        initial=initial,
        include_folders=include_folders,
        exclude_folders=exclude_folders,
    )

    async def work(services: Services) -> int:
        owner = await users.find_user(db=services.db, email=user_email)
        task = await retrieval_tasks.add_task(db=services.db, secret_box=services.secret_box, user_id=owner.id, new=new)
        return task.id

    task_id = run_with_services(work)
    emit({"id": task_id}, as_json=as_json, text=str(task_id))


@retrieval.command("list")
@click.option("--user", "user_email", required=True)
@click.option("--json", "as_json", is_flag=True)
@plain_errors
def retrieval_list(user_email: str, as_json: bool) -> None:
    """List a user's retrieval tasks with their health."""
    from service.cli.oauth import with_sign_in

    async def work(services: Services) -> list[dict[str, object]]:
        owner = await users.find_user(db=services.db, email=user_email)
        tasks = [asdict(t) for t in await retrieval_tasks.list_tasks(db=services.db, user_id=owner.id)]
        return await with_sign_in(services, "retrieval", owner.id, tasks)

    tasks = run_with_services(work)
    lines = [
        f"{t['id']}: {t['protocol']} {t['username']}@{t['host']}:{t['port']} ({t['method']})"
        + ("" if t["auth"] == "password" else f" [{t['auth']}: {t['status']}]")
        + _push_words(t)
        + _import_words(t)
        + (f" - last error: {t['last_error']}" if t["last_error"] else "")
        for t in tasks
    ]
    emit(tasks, as_json=as_json, text="\n".join(lines) or "No retrieval tasks.")


def _import_words(task: dict[str, object]) -> str:
    """ " initial: new" unless "all"; " folders: +INBOX -Spam*" when patterns are set."""
    words = "" if task["initial"] == "all" else f" initial: {task['initial']}"
    include, exclude = task["include_folders"], task["exclude_folders"]
    assert isinstance(include, tuple | list)
    assert isinstance(exclude, tuple | list)
    patterns = [f"+{p}" for p in include] + [f"-{p}" for p in exclude]
    return words + (" folders: " + " ".join(patterns) if patterns else "")


def _push_words(task: dict[str, object]) -> str:
    """ " push: off" / " push: listening" (or on, before the supervisor reports) for an automatic IMAP task."""
    if not push_applies(Protocol(str(task["protocol"])), RetrievalMethod(str(task["method"])), True):
        return ""
    if not task["push"]:
        return " push: off"
    return f" push: {task['push_state'] or 'on'}"


@retrieval.command("run")
@click.argument("task_id", type=int)
@click.option("--json", "as_json", is_flag=True, help='Print {"imported": N, "skipped": N, "errors": [...]}.')
@plain_errors
def retrieval_run(task_id: int, as_json: bool) -> None:
    """Retrieve Messages Now: run the task at once (exit code 1 if it reported errors)."""
    from service.usecases.retrieval import run_task

    async def work(services: Services) -> RunResult:
        return await run_task(
            db=services.db, secret_box=services.secret_box, settings=services.settings, task_id=task_id
        )

    result = run_with_services(work)
    shown = {
        "imported": result.imported,
        "skipped": result.skipped,
        "errors": result.errors,
        "already_running": result.already_running,
        "folders": [asdict(f) for f in result.folders],
    }
    text = result.summary()
    if result.already_running:
        text = "This task is already running; " + (text if result.folders else "its result will show on the task.")
    emit(shown, as_json=as_json, text=text)
    if result.errors:
        if not as_json:
            click.echo(" ".join(result.errors), err=True)
        sys.exit(1)


@retrieval.command("test")
@click.argument("task_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@plain_errors
def retrieval_test(task_id: int, as_json: bool) -> None:
    """Test Connection: each step with its result and duration (exit code 1 if a step failed)."""
    from service.usecases.connection_tests import SavedTask, run_connection_test

    async def work(services: Services) -> ConnectionReport:
        return await run_connection_test(
            db=services.db,
            secret_box=services.secret_box,
            settings=services.settings,
            user_id=None,  # the operator: any task, under its owner's domain policy, not rate limited
            subject=SavedTask(task_id),
        )

    report = run_with_services(work)
    lines = [
        f"{'ok  ' if s.ok else 'FAIL'} {s.name:<13} {s.duration_ms:>8.1f} ms  {s.detail}"
        + (f"\n     hint: {s.hint}" if not s.ok and s.hint else "")
        for s in report.steps
    ]
    emit({"ok": report.ok, "steps": [asdict(s) for s in report.steps]}, as_json=as_json, text="\n".join(lines))
    if not report.ok:
        sys.exit(1)


@retrieval.command("delete")
@click.argument("task_id", type=int)
@plain_errors
def retrieval_delete(task_id: int) -> None:
    """Delete a task (the messages it brought in stay)."""

    async def work(services: Services) -> None:
        await retrieval_tasks.delete_task(db=services.db, task_id=task_id, user_id=None)

    run_with_services(work)
    click.echo(f"Deleted retrieval task {task_id}.")


@retrieval.command("reconnect")
@click.argument("task_id", type=int)
@click.option("--json", "as_json", is_flag=True, help='Print {"id": N, "status": S, "authorize_url": URL}.')
@plain_errors
def retrieval_reconnect(task_id: int, as_json: bool) -> None:
    """Sign in with the task's OAuth2 provider again: prints a fresh consent URL to open in a browser."""
    from service.cli.oauth import emit_started, reconnect_for

    started = run_with_services(lambda services: reconnect_for(services, "retrieval", task_id))
    emit_started(started, as_json=as_json)
