"""Appending a batch of bodies to a segment without the page cache (O_DIRECT), where the
filesystem allows it.

Why: retrieval writes every byte it downloads once, and reads few of them back soon. Through
the page cache the kernel copies each byte into freshly allocated cache pages: the largest
single CPU cost of a bulk IMAP retrieval measured here (`perf record` of `tributary retrieval
run`: `copy_folio_from_iter_atomic`, 18 % of the run's CPU, and 0.8 s of system time for
380 MB where the guest had never touched those pages before). With O_DIRECT the device reads
the bytes from one reused, page-aligned buffer: a memcpy per body, and no cache pages.

O_DIRECT's rules (open(2)): the buffer's address, the file offset and each write's length are
multiples of the device's logical block size; `BLOCK` (4096) covers 512- and 4096-byte
devices. So a batch starts at the segment's size rounded up to `BLOCK` (a gap of at most 4095
bytes after what an earlier writer left, direct or not) and its last block is padded with
zeros: at most 4 KiB a batch that nothing references, which compaction counts as dead. So
only batches of at least `MIN_BYTES` go direct (bulk retrieval's are up to 16 MB), where that
is under 0.4 %, and smaller ones through the page cache as before. The caller still
fdatasyncs: that makes the file's new size durable and flushes the device's cache.

A filesystem without O_DIRECT (tmpfs before Linux 6.6, some network filesystems) refuses it
with EINVAL, when the flag is set or at a write (a device wanting more alignment than BLOCK);
`DirectUnsupported` then tells the caller to write the batch again, after whatever part of it
landed, through the page cache, and so from then on. Reads are unaffected: Linux keeps the
page cache coherent with direct writes.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections.abc import Sequence

BLOCK = 4096
BUFFER_BYTES = 4 * 1024 * 1024  # a multiple of BLOCK; large bodies pass through it in pieces
MIN_BYTES = 1024 * 1024  # smaller batches (push's single messages) go through the page cache:
# their copy costs little, and padding each to a block would waste a noticeable share


class DirectUnsupported(Exception):
    """The filesystem refused O_DIRECT: when it was switched on, or at a write."""


def aligned(offset: int) -> int:
    """`offset` rounded up to the next multiple of BLOCK."""
    return -(-offset // BLOCK) * BLOCK


def enable(fd: int) -> None:
    """Switch an open segment (opened with O_APPEND) to direct, positioned writes.
    Raises DirectUnsupported where the filesystem refuses."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | os.O_DIRECT) & ~os.O_APPEND)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise DirectUnsupported from exc
        raise


def disable(fd: int) -> None:
    """Back to appending through the page cache."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, (flags & ~os.O_DIRECT) | os.O_APPEND)


class DirectWriter:
    """Writes bodies at a BLOCK-aligned offset through one page-aligned buffer (an anonymous
    mmap, allocated on first use and reused, so its pages stay warm). Not thread-safe: the
    segments' append lock serialises its callers."""

    def __init__(self) -> None:
        self._buffer: mmap.mmap | None = None

    def write(self, fd: int, offset: int, raws: Sequence[bytes]) -> None:
        """Write the bodies back to back from `offset` (a multiple of BLOCK), the last block
        padded with zeros. Raises DirectUnsupported when a write is refused."""
        if self._buffer is None:
            self._buffer = mmap.mmap(-1, BUFFER_BYTES)
        view = memoryview(self._buffer)
        filled, written = 0, 0
        try:
            for raw in raws:
                data = memoryview(raw)
                taken = 0
                while taken < len(data):
                    step = min(len(data) - taken, BUFFER_BYTES - filled)
                    view[filled : filled + step] = data[taken : taken + step]
                    filled, taken = filled + step, taken + step
                    if filled == BUFFER_BYTES:
                        written += _write_at(fd, view, offset + written)
                        filled = 0
            if filled:
                padded = aligned(filled)
                view[filled:padded] = bytes(padded - filled)
                _write_at(fd, view[:padded], offset + written)
        finally:
            view.release()


def _write_at(fd: int, data: memoryview, offset: int) -> int:
    """pwrite all of `data` at `offset`, resuming after a short write (a whole number of blocks).
    EINVAL, at any write of the batch (a device wanting more than BLOCK), is DirectUnsupported:
    what the batch wrote so far is referenced by nothing."""
    done = 0
    while done < len(data):
        try:
            done += os.pwrite(fd, data[done:], offset + done)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise DirectUnsupported from exc
            raise
    return done
