"""Column helpers shared by the tables, and the constraint naming convention."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum
from sqlmodel import SQLModel

# Stable constraint names, so migrations can find them (SQLite batch mode needs this).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def enum_type(enum: type[StrEnum]) -> Enum:
    """Store a StrEnum as its value in a VARCHAR (no native enum type to migrate)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )
