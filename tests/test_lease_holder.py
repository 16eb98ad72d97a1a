"""A run lease names its holder's process: a holder on this machine that died (SIGKILL) gives the
task up at once, a live holder still blocks, and a holder on another machine (or an earlier
boot) blocks until the lease expires."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from service.config import Settings
from service.domain.values import Protocol, RetrievalMethod, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask
from service.persistence.types import utcnow
from service.usecases.retrieval import Runner
from service.usecases.retrieval.holder import Holder, process, this_process
from service.usecases.retrieval.lease import claim, claim_due
from tests.cli_runner import tributary
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env

SECONDS = 90


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


@pytest.fixture
async def sleeper() -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process of this machine, to stand for a worker that holds a lease."""
    child = await asyncio.create_subprocess_exec("sleep", "600")
    try:
        yield child
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def kill(child: asyncio.subprocess.Process) -> None:
    os.kill(child.pid, signal.SIGKILL)
    await child.wait()


async def add_task(env: Env, **changes: object) -> int:
    env.dovecot.deliver(env.mailbox.email, sample("waiting"))
    settings: dict[str, object] = {"method": RetrievalMethod.MANUAL, **changes}
    return await env.add_task(Protocol.POP3, port=env.dovecot.pop3_port, security=Security.NONE, **settings)


async def test_retrieve_now_takes_over_at_once_from_a_killed_holder(
    env: Env, sleeper: asyncio.subprocess.Process
) -> None:
    task_id = await add_task(env)
    assert await claim(env.db, task_id, "worker-b", seconds=SECONDS, holder=process(sleeper.pid))
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
    assert (await runner.run_now(task_id)).already_running  # the holder lives: it blocks

    await kill(sleeper)
    result = await runner.run_now(task_id)  # well inside the 90 s the lease had left
    assert (result.already_running, result.imported, result.errors) == (False, 1, [])


async def test_the_cli_runs_at_once_after_a_holder_was_killed(env: Env, sleeper: asyncio.subprocess.Process) -> None:
    task_id = await add_task(env)
    assert await claim(env.db, task_id, "worker-b", seconds=SECONDS, holder=process(sleeper.pid))
    blocked = await asyncio.to_thread(tributary, env.settings, "retrieval", "run", str(task_id))
    assert "already running" in blocked.stdout, blocked

    await kill(sleeper)
    ran = await asyncio.to_thread(tributary, env.settings, "retrieval", "run", str(task_id))
    assert ran.returncode == 0, ran.stderr
    assert "already running" not in ran.stdout
    assert env.dovecot.message_count(env.mailbox.email) == 1  # POP3 left on the server, and retrieved:
    assert (await env.run(task_id)).imported == 0  # the CLI's run stored it


@pytest.mark.parametrize(
    "elsewhere",
    [
        {"host": "another-machine"},
        {"boot_id": "00000000-0000-0000-0000-000000000000"},  # this host before a reboot
        {"namespace": "pid:[1]"},  # another container on this kernel, with this host name
    ],
)
async def test_a_holder_on_another_machine_blocks_until_its_lease_expires(env: Env, elsewhere: dict[str, str]) -> None:
    task_id = await add_task(env)
    holder = replace(this_process(), pid=2**22 + 1, started=1, **elsewhere)  # beyond pid_max: no such process here
    start = utcnow()
    assert await claim(env.db, task_id, "far-away", seconds=SECONDS, holder=holder, now=start)
    assert await claim(env.db, task_id, "us", seconds=SECONDS, now=start + timedelta(seconds=SECONDS - 1)) is None
    assert await claim(env.db, task_id, "us", seconds=SECONDS, now=start + timedelta(seconds=SECONDS + 1))


async def test_a_reused_process_id_is_not_the_holder(env: Env) -> None:
    """The holder's id now belongs to a process that started at another time: the holder is gone."""
    task_id = await add_task(env)
    here = this_process()
    assert here.started is not None
    assert await claim(env.db, task_id, "older", seconds=SECONDS, holder=replace(here, started=here.started - 1))
    assert await claim(env.db, task_id, "us", seconds=SECONDS)
    assert await claim(env.db, task_id, "another", seconds=SECONDS) is None  # and we, alive, block


async def test_the_dispatcher_takes_due_tasks_from_a_killed_holder(
    env: Env, sleeper: asyncio.subprocess.Process
) -> None:
    task_id = await add_task(env, method=RetrievalMethod.AUTOMATIC)
    async with env.db.write() as session:
        await session.exec(
            update(RetrievalTask).where(col(RetrievalTask.id) == task_id).values(next_run_at=utcnow() - timedelta(1))
        )
    assert await claim(env.db, task_id, "worker-b", seconds=SECONDS, holder=process(sleeper.pid))
    assert await claim_due(env.db, "worker-c", seconds=SECONDS, limit=5) == []
    await kill(sleeper)
    assert [lease.task_id for lease in await claim_due(env.db, "worker-c", seconds=SECONDS, limit=5)] == [task_id]


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    child = subprocess.Popen(["sleep", "600"])
    try:
        holder = process(child.pid)
        assert holder.same_machine(this_process())
        assert not holder.is_gone()
        os.kill(child.pid, signal.SIGKILL)
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, still a zombie
        assert holder.is_gone()
    finally:
        child.kill()
        child.wait()
    assert holder.is_gone()


@pytest.mark.parametrize("hidden", [FileNotFoundError, PermissionError], ids=["hidepid=2", "hidepid=1"])
def test_a_live_holder_whose_stat_cannot_be_read_is_not_gone(
    hidden: type[OSError], monkeypatch: pytest.MonkeyPatch
) -> None:
    child = subprocess.Popen(["sleep", "600"])
    try:
        live = process(child.pid)
        read_text = Path.read_text

        def hiding(path: Path, *args: Any, **kwargs: Any) -> str:
            if path == Path("/proc") / str(child.pid) / "stat":
                raise hidden(path)  # /proc mounted with hidepid: another user's process is not shown
            return read_text(path, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", hiding)
        assert not live.is_gone()
    finally:
        child.kill()
        child.wait()
    assert live.is_gone()  # once it has ended, signal 0 says so


def test_without_a_boot_id_nothing_is_judged() -> None:
    blind = Holder(host="h", boot_id=None, namespace=None, pid=2**22 + 1, started=None)
    assert not blind.same_machine(blind)
    assert not blind.is_gone()
