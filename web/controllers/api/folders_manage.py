"""/api/v1 folder management (service.usecases.folders), beside the folder reads in `mail`.

POST   /folders                 {"name": "...", "parent_id": n|null}   a new folder (201)
PATCH  /folders/{id}            {"name": "..."}                        rename; subfolders follow
POST   /folders/{id}/move       {"parent_id": n|null}                  move inside another, or to the top
DELETE /folders/{id}                                                    delete with subfolders; mail to Trash
POST   /folders/{id}/empty                                              Trash or Junk: delete all for good

Special folders (and the top-level Archive) answer 400; a sibling with the name answers 409.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases import folders
from web.controllers.api.contract import writes
from web.controllers.api.schemas import FolderOut, Id, IdParam


class FolderIn(msgspec.Struct):
    """A new folder: its name (one level, no "/") and the folder it goes inside (null: the top)."""

    name: str
    parent_id: Id | None = None


class RenameIn(msgspec.Struct):
    name: str


class PlaceIn(msgspec.Struct):
    """Where the folder goes: inside `parent_id`, or at the top when null."""

    parent_id: Id | None = None


class FolderDeletedOut(msgspec.Struct):
    """How many folders went (the folder and its subfolders) and how many messages moved to Trash."""

    folders: int
    trashed: int


class EmptiedOut(msgspec.Struct):
    """How many messages were deleted for good."""

    deleted: int


class FolderAdminController(Controller):
    path = "/folders"
    tags = ["Mail"]

    @post("/", status_code=201, **writes(400, 404, 409, body=True))
    async def create_folder(
        self, data: JSONBody[FolderIn], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> FolderOut:
        made = await folders.create_folder(db=db, user_id=user.id, name=data.name, parent_id=data.parent_id)
        return FolderOut.from_view(made)

    @patch("/{folder_id:int}", **writes(400, 404, 409, body=True))
    async def rename_folder(
        self,
        folder_id: FromPath[IdParam],
        data: JSONBody[RenameIn],
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
    ) -> FolderOut:
        renamed = await folders.rename_folder(db=db, user_id=user.id, folder_id=folder_id, name=data.name)
        return FolderOut.from_view(renamed)

    @post("/{folder_id:int}/move", status_code=200, **writes(400, 404, 409, body=True))
    async def move_folder(
        self,
        folder_id: FromPath[IdParam],
        data: JSONBody[PlaceIn],
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
    ) -> FolderOut:
        moved = await folders.move_folder(db=db, user_id=user.id, folder_id=folder_id, parent_id=data.parent_id)
        return FolderOut.from_view(moved)

    @delete("/{folder_id:int}", status_code=200, **writes(400, 404, 409))
    async def delete_folder(
        self, folder_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> FolderDeletedOut:
        gone = await folders.delete_folder(db=db, user_id=user.id, folder_id=folder_id)
        return FolderDeletedOut(folders=gone.folders, trashed=gone.trashed)

    @post("/{folder_id:int}/empty", status_code=200, **writes(400, 404))
    async def empty_folder(
        self, folder_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> EmptiedOut:
        return EmptiedOut(deleted=await folders.empty_folder(db=db, user_id=user.id, folder_id=folder_id))
