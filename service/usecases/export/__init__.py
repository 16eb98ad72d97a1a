"""Your mail out in standard formats: a Maildir++ tree (`maildir`) and a folder as an mboxrd
file (`mbox`). Both read each message's stored bytes through `bodies`, one message at a time,
so an export of any size holds one message in memory at most, never a folder.
"""

from service.usecases.export.maildir import MaildirReport, export_maildir, maildir_name
from service.usecases.export.mbox import MboxDownload, folder_mbox, mboxrd

__all__ = ["MaildirReport", "MboxDownload", "export_maildir", "folder_mbox", "maildir_name", "mboxrd"]
