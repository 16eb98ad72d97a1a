"""Reading the local mailbox: the folder tree with counts, a folder's messages page by page,
a message as the reader sees it (opening it marks it read), its parts, its bytes.

Every query is scoped to the user: another user's folder, message or part is
`NotFound`, exactly like one that does not exist.

Message lists use keyset pagination, never OFFSET: a page is the `limit`
messages just below (older) or above (newer) a cursor, the (sort_date, id) of
a message, in the order of the index ix_message_folder_listing (folder_id,
sort_date, id). A page deep in a 100,000-message folder costs the same as the
first one. The cursor travels as an opaque token (`PageCursor.token`).

`folders`: the tree with counts. `listing`: keyset pages of a folder.
`messages`: opening a message, its body frame, its parts, its bytes.
"""

from service.usecases.reading.folders import list_folders
from service.usecases.reading.listing import (
    PAGE_SIZE,
    MessagePage,
    PageCursor,
    folders_and_page,
    list_messages,
    list_page,
    page_query,
)
from service.usecases.reading.messages import (
    OpenedMessage,
    attachment,
    export_raw,
    inline_image,
    open_message,
    open_raw,
    render_body,
)

__all__ = [
    "PAGE_SIZE",
    "MessagePage",
    "OpenedMessage",
    "PageCursor",
    "attachment",
    "export_raw",
    "folders_and_page",
    "inline_image",
    "list_folders",
    "list_messages",
    "list_page",
    "open_message",
    "open_raw",
    "page_query",
    "render_body",
]
