"""Segment appends with O_DIRECT (service.persistence.bodies.direct): a bulk batch starts on a
block boundary after whatever an earlier writer left, ends padded with zeros, and reads back
byte for byte, bodies larger than the writer's buffer and empty ones included; small batches,
filesystems that refuse O_DIRECT and a refused first write go through the page cache,
and a failing disk raises without a reference to bytes that are not there."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from service.persistence.bodies import direct
from service.persistence.bodies.segments import BodyRef, Segments

BIG = [
    b"",
    b"Subject: first\r\n\r\n" + bytes(range(256)) * 3000,
    b"x" * (direct.BUFFER_BYTES + 12345),  # passes through the buffer in pieces
    b"Subject: last\r\n\r\n\x00\xff\r\n.\r\n",
]


def _direct_supported(path: Path) -> bool:
    probe = path / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


@pytest.fixture
def segments(tmp_path: Path) -> Segments:
    if not _direct_supported(tmp_path):
        pytest.skip(f"{tmp_path}'s filesystem refuses O_DIRECT")
    return Segments(tmp_path / "bodies", roll_bytes=64 * 1024 * 1024)


def _read_all(segments: Segments, refs: list[BodyRef], raws: list[bytes]) -> None:
    for number, (ref, raw) in enumerate(zip(refs, raws, strict=True)):
        assert segments.read(number, ref) == raw


def _fail_after_first_write(monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    """os.pwrite lets its first call through and raises `error` from then on."""
    real = os.pwrite
    calls = 0

    def failing(fd: int, data: Any, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise error
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", failing)


def test_a_bulk_batch_after_a_small_one_starts_on_a_block_and_ends_padded(segments: Segments) -> None:
    small = segments.append([b"Subject: small\r\n\r\nhi\r\n"])  # through the page cache, unaligned end
    assert os.path.getsize(segments.path(1)) == small[0].length
    big = segments.append(BIG)
    assert big[0].offset == direct.BLOCK  # the gap after the small batch is skipped, not overwritten
    assert [r.offset for r in big] == [direct.BLOCK + sum(map(len, BIG[:i])) for i in range(len(BIG))]
    data = segments.path(1).read_bytes()
    end = direct.BLOCK + sum(map(len, BIG))
    assert len(data) == direct.aligned(end)
    assert data[end:] == bytes(len(data) - end)
    _read_all(segments, [*small, *big], [b"Subject: small\r\n\r\nhi\r\n", *BIG])
    after = segments.append([b"tail"])  # a small batch again: appended after the padding
    assert after[0].offset == len(data)
    assert segments.read(9, after[0]) == b"tail"


def test_a_direct_batch_after_a_torn_write_leaves_the_torn_bytes_alone(segments: Segments) -> None:
    first = segments.append(BIG)
    with open(segments.path(1), "ab") as torn:  # a writer killed half-way through its write
        torn.write(b"half a mess")
    torn_end = os.path.getsize(segments.path(1))
    second = segments.append(BIG[1:3])
    assert second[0].offset == direct.aligned(torn_end)
    _read_all(segments, [*first, *second], [*BIG, *BIG[1:3]])


def test_a_filesystem_refusing_o_direct_gets_the_page_cache(
    segments: Segments, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tmpfs before Linux 6.6 and some network filesystems do: F_SETFL with O_DIRECT is EINVAL."""
    real = fcntl.fcntl

    def refuse(fd: int, command: int, arg: int = 0) -> int:
        if command == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return int(real(fd, command, arg))

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    refs = segments.append(BIG)
    assert [r.offset for r in refs] == [sum(map(len, BIG[:i])) for i in range(len(BIG))]
    assert os.path.getsize(segments.path(1)) == sum(map(len, BIG))  # no padding
    again = segments.append(BIG[1:2])
    assert again[0].offset == sum(map(len, BIG))
    _read_all(segments, [*refs, *again], [*BIG, BIG[1]])


def test_a_refused_first_write_falls_back_for_good(segments: Segments, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "pwrite", refuse)
    refs = segments.append(BIG)
    assert [r.offset for r in refs] == [sum(map(len, BIG[:i])) for i in range(len(BIG))]
    assert os.path.getsize(segments.path(1)) == sum(map(len, BIG))
    monkeypatch.undo()
    more = segments.append(BIG[1:2])  # stays buffered: no gap, no padding
    assert more[0].offset == sum(map(len, BIG))
    _read_all(segments, [*refs, *more], [*BIG, BIG[1]])


def test_a_write_refused_mid_batch_writes_the_batch_again_through_the_page_cache(
    segments: Segments, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device wanting more alignment than BLOCK: the first 4 MiB lands, the padded tail is EINVAL."""
    _fail_after_first_write(monkeypatch, OSError(errno.EINVAL, "Invalid argument"))
    refs = segments.append(BIG)
    landed = direct.BUFFER_BYTES  # the first write's bytes stay, referenced by nothing
    assert [r.offset for r in refs] == [landed + sum(map(len, BIG[:i])) for i in range(len(BIG))]
    assert os.path.getsize(segments.path(1)) == landed + sum(map(len, BIG))
    _read_all(segments, refs, BIG)


def test_a_full_disk_raises_and_the_next_batch_still_lands(segments: Segments, monkeypatch: pytest.MonkeyPatch) -> None:
    first = segments.append(BIG)
    _fail_after_first_write(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space left"):
        segments.append(BIG)  # half written: the caller gets no references, so nothing points there
    monkeypatch.undo()
    second = segments.append(BIG)
    assert second[0].offset % direct.BLOCK == 0
    assert second[0].offset >= first[-1].offset + first[-1].length
    _read_all(segments, [*first, *second], [*BIG, *BIG])
