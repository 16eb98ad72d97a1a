"""Segment files: message bodies appended to numbered files under `<data_dir>/bodies/`.

A segment is `NNNNNNNN.seg`, bytes only: which message lies where is in the database
(`message_body_ref`). Writers append to the highest-numbered segment and roll over to a
new one once it has reached `roll_bytes` (64 MB). One batch is one `writev` (a bulk batch:
positioned writes with O_DIRECT from a block boundary, see `direct`) and one `fdatasync`;
creating a segment also fsyncs the directory, so the file's name survives a power cut
with its bytes (and so does the first write of a process to a segment it did not create:
its creator may have been killed before its directory fsync). The caller commits
the references only after `append` returns: a crash in between leaves bytes nobody
references (compaction reclaims them), never a reference to bytes that are not on disk.

Appends from several threads or processes (a `serve` and a `worker`, or `bodies migrate`)
queue on `flock` of `append.lock`; the offset is the file's size under that lock (bytes a
killed writer left half-written are skipped, not overwritten).

Everything here blocks: callers run it in a worker thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.errors import BodyDamaged, BodyMissing
from service.persistence.bodies import direct

SEGMENT_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
_IOV_MAX = 512
_NAME = re.compile(r"^(\d{8})\.seg$")


@dataclass(frozen=True, slots=True)
class BodyRef:
    """Where one message's bytes lie: `length` bytes at `offset` of segment `segment`."""

    segment: int
    offset: int
    length: int
    sha256: str


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Segments:
    """The segment files of one data directory."""

    def __init__(self, root: Path, *, roll_bytes: int = SEGMENT_BYTES) -> None:
        self.root = root
        self.roll_bytes = roll_bytes
        self._lock = threading.Lock()
        self._named: set[int] = set()  # segments whose directory entry this process has fsynced
        self._direct: direct.DirectWriter | None = direct.DirectWriter()  # None once refused here

    def path(self, segment: int) -> Path:
        return self.root / f"{segment:08d}.seg"

    def numbers(self) -> list[int]:
        """The segments on disk, in order."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for name in names if (m := _NAME.match(name)))

    def _ensure_root(self) -> None:
        if not self.root.is_dir():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # mail: only the service user reads it
            _fsync_directory(self.root.parent)

    def append(self, raws: Sequence[bytes], digests: Sequence[str | None] | None = None) -> list[BodyRef]:
        """Append the bodies durably (written, then one fdatasync); their references, in order.
        `digests`: each body's SHA-256 (hex) where the caller has it already (the index row's),
        so a body is hashed once on its way in."""
        if not raws:
            return []
        self._ensure_root()
        with self._lock, open(self.root / "append.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            existing = self.numbers()
            segment = existing[-1] if existing else 1
            fd = os.open(self.path(segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            created = not existing
            try:
                start = os.fstat(fd).st_size
                if start >= self.roll_bytes:
                    os.close(fd)
                    segment += 1
                    fd = os.open(self.path(segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
                    created, start = True, 0
                start = self._write(fd, start, raws)
                os.fdatasync(fd)
            finally:
                os.close(fd)
            if created or segment not in self._named:  # also one a killed writer created: once each
                _fsync_directory(self.root)
                self._named.add(segment)
        refs: list[BodyRef] = []
        offset = start
        for raw, digest in zip(raws, digests or [None] * len(raws), strict=True):
            refs.append(BodyRef(segment, offset, len(raw), digest or hashlib.sha256(raw).hexdigest()))
            offset += len(raw)
        return refs

    def _write(self, fd: int, start: int, raws: Sequence[bytes]) -> int:
        """Write the bodies to the segment open on `fd`, whose size is `start`; where they begin.
        Direct (service.persistence.bodies.direct) unless this filesystem refused it once."""
        if self._direct is not None and sum(map(len, raws)) >= direct.MIN_BYTES:
            try:
                direct.enable(fd)
                begin = direct.aligned(start)
                self._direct.write(fd, begin, raws)
                return begin
            except direct.DirectUnsupported:
                self._direct = None
                direct.disable(fd)
                start = os.fstat(fd).st_size  # after any part of the batch a refused write left
        _write_all(fd, raws)
        return start

    def read(self, message_id: int, ref: BodyRef) -> bytes:
        """The referenced bytes, checked against the reference's length and SHA-256."""
        return b"".join(self.chunks(message_id, ref))

    def chunks(self, message_id: int, ref: BodyRef) -> Iterator[bytes]:
        """The referenced bytes a megabyte at a time; raises BodyMissing/BodyDamaged (after the
        last chunk, when only the digest differs) instead of ending normally."""
        try:
            fd = os.open(self.path(ref.segment), os.O_RDONLY)
        except FileNotFoundError:
            raise BodyMissing(message_id, f"segment {ref.segment} does not exist") from None
        try:
            if os.fstat(fd).st_size < ref.offset + ref.length:
                raise BodyMissing(message_id, f"segment {ref.segment} ends before offset {ref.offset + ref.length}")
            digest = hashlib.sha256()
            position, end = ref.offset, ref.offset + ref.length
            while position < end:
                piece = os.pread(fd, min(CHUNK_BYTES, end - position), position)
                if not piece:
                    raise BodyMissing(message_id, f"segment {ref.segment} ends at {position}")
                digest.update(piece)
                position += len(piece)
                yield piece
            if digest.hexdigest() != ref.sha256:
                raise BodyDamaged(message_id, f"segment {ref.segment} at {ref.offset}: SHA-256 differs")
        finally:
            os.close(fd)

    def check(self, message_id: int, ref: BodyRef) -> None:
        """Read the referenced bytes through, raising BodyMissing/BodyDamaged if they are not the message's."""
        for _ in self.chunks(message_id, ref):
            pass

    def size(self, segment: int) -> int:
        try:
            return self.path(segment).stat().st_size
        except FileNotFoundError:
            return 0


def _write_all(fd: int, raws: Sequence[bytes]) -> None:
    """Write every buffer, in order: writev calls of at most _IOV_MAX buffers, resumed after a short write."""
    pending = [memoryview(raw) for raw in raws if raw]
    while pending:
        written = os.writev(fd, pending[:_IOV_MAX])
        while written and pending:
            if written >= len(pending[0]):
                written -= len(pending[0])
                pending.pop(0)
            else:
                pending[0] = pending[0][written:]
                written = 0
