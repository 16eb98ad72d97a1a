"""Backups: a consistent copy of the running service (`take`), and putting it back (`restore`).

`manifest`: the manifest file and the checked copying both directions share. `directory`:
the empty-directory rule backup, restore and the Maildir export share.
"""

from service.usecases.backup.directory import empty_directory
from service.usecases.backup.manifest import BackupDamaged, BackupRefused, Manifest
from service.usecases.backup.restore import RestoreReport, restore, verify
from service.usecases.backup.take import BackupReport, backup

__all__ = [
    "BackupDamaged",
    "BackupRefused",
    "BackupReport",
    "Manifest",
    "RestoreReport",
    "backup",
    "empty_directory",
    "restore",
    "verify",
]
