"""Alembic environment: migrates the database that TRIBUTARY_DATABASE_URL names.

`tributary db upgrade` passes the URL in the config's attributes; plain `alembic upgrade head`
or `alembic check` read the same settings. SQLite runs in batch mode, because
its ALTER TABLE cannot change columns or constraints in place.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import create_engine, pool

from service.config import Settings
from service.persistence.tables import metadata
from service.persistence.types import UtcDateTime

config = context.config
# Callers may compare against other tables (the drift test does); normally ours.
target_metadata = config.attributes.get("target_metadata", metadata)


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our own column types with a plain import, so migrations import cleanly."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        autogen_context.imports.add("from service.persistence.types import UtcDateTime")
        return "UtcDateTime()"
    return False


def _include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave the full-text index out of the drift check: migration 0009 owns it (an FTS5
    virtual table with its shadow tables on SQLite, a tsvector side table on PostgreSQL)."""
    return not (type_ == "table" and name is not None and name.startswith("message_search"))


def _url() -> str:
    url = config.attributes.get("database_url")
    return str(url) if url else Settings().sync_database_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
        render_item=_render_item,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    if url.startswith("sqlite:///"):
        Settings().data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=_render_item,
            include_name=_include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
