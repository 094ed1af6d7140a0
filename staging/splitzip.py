"""Reads multi-part ("split") zip archives, such as FSD50K's ``.z01 … .zip``, without joining them.

Info-ZIP's ``zip -s`` writes one archive cut into parts; the central directory (in the last part,
``.zip``) records for each member the part ("disk") its local header starts on and the offset within
that part. Concatenating the parts therefore gives a stream where every member's bytes are contiguous
at ``start of its disk + offset``: this module translates those offsets and inflates members straight
from the parts, so a 30 GB archive never needs a second joined copy on disk (``zip -FF`` or
``zip -s 0`` would write one).
"""

from __future__ import annotations

import os
import struct
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import StagingError

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_STORED, _DEFLATED = 0, 8
_CHUNK = 1 << 20


def part_paths(last_part: Path, count: int) -> list[Path]:
    """Info-ZIP's part names: ``name.z01`` … ``name.z(N-1)``, then ``name.zip`` last."""
    return [last_part.with_suffix(f".z{i:02d}") for i in range(1, count)] + [last_part]


def disk_count(last_part: Path) -> int:
    """How many parts the archive has, read from the end record in its last part (``.zip``)."""
    tail = _tail(last_part)
    end = _find_end(tail, last_part)
    locator = end - 20
    if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR:
        return int(struct.unpack_from("<I", tail, locator + 16)[0])
    return int(struct.unpack_from("<H", tail, end + 4)[0]) + 1


def _tail(path: Path) -> bytes:
    """The end of a file, long enough to hold the end record with the longest comment."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - (65_535 + 22 + 20)))
        return handle.read()


def _find_end(tail: bytes, where: Path) -> int:
    end = tail.rfind(_EOCD)
    if end < 0 or len(tail) - end < 22:
        raise StagingError(f"{where.name} is not a zip archive (no end-of-central-directory record)")
    return end


@dataclass(frozen=True)
class Member:
    """One file in the archive, located in the concatenated stream."""

    name: str
    offset: int  # of the local header, in the concatenation of all parts
    method: int
    crc: int
    compressed_size: int
    size: int


class _Stream:
    """The parts as one read-only byte range; every read opens its own handles, so threads may share it."""

    def __init__(self, parts: Sequence[Path]) -> None:
        self.parts = list(parts)
        self.starts: list[int] = []
        total = 0
        for part in self.parts:
            self.starts.append(total)
            total += part.stat().st_size
        self.size = total

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        index = bisect_right(self.starts, offset) - 1
        while length > 0 and index < len(self.parts):
            with self.parts[index].open("rb") as handle:
                handle.seek(offset - self.starts[index])
                chunk = handle.read(length)
            out += chunk
            offset += len(chunk)
            length -= len(chunk)
            index += 1
        return bytes(out)


class MultiPartZip:
    """Lists and reads the members of a zip archive split into parts (a single part works too)."""

    def __init__(self, parts: Sequence[Path]) -> None:
        self._stream = _Stream(parts)
        self.members = {m.name: m for m in self._read_directory()}

    def names(self) -> list[str]:
        return list(self.members)

    def _read_directory(self) -> list[Member]:
        last = self._stream.parts[-1]
        tail = _tail(last)
        end = _find_end(tail, last)
        cd_disk, _, entries, cd_size, cd_offset = struct.unpack_from("<HHHLL", tail, end + 6)
        locator = end - 20
        if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR:
            z64_disk, z64_offset = struct.unpack_from("<IQ", tail, locator + 4)
            record = self._stream.read(self._stream.starts[z64_disk] + z64_offset, 56)
            if record[:4] != _ZIP64_EOCD:
                raise StagingError(f"{last.name}: the zip64 end record is missing or corrupt")
            cd_disk, _, entries, cd_size, cd_offset = struct.unpack_from("<IQQQQ", record, 20)
        if cd_disk >= len(self._stream.parts):
            raise StagingError(
                f"{last.name} says its directory is on part {cd_disk + 1} but only "
                f"{len(self._stream.parts)} part(s) were given; download every .z?? part"
            )
        directory = self._stream.read(self._stream.starts[cd_disk] + cd_offset, cd_size)
        members: list[Member] = []
        pos = 0
        for _ in range(entries):
            if directory[pos : pos + 4] != _CENTRAL:
                raise StagingError(
                    f"{last.name}: the central directory is corrupt at entry {len(members) + 1}"
                )
            (method, _time, _date, crc, csize, size, name_len, extra_len, comment_len, disk) = (
                struct.unpack_from("<HHHLLLHHHH", directory, pos + 10)
            )
            header_offset = struct.unpack_from("<L", directory, pos + 42)[0]
            name_bytes = directory[pos + 46 : pos + 46 + name_len]
            extra = directory[pos + 46 + name_len : pos + 46 + name_len + extra_len]
            flags = struct.unpack_from("<H", directory, pos + 8)[0]
            name = name_bytes.decode("utf-8" if flags & 0x800 else "cp437")
            size, csize, header_offset, disk = _zip64_fields(extra, size, csize, header_offset, disk)
            if disk >= len(self._stream.parts):
                raise StagingError(f"{name} starts on part {disk + 1}, which was not given")
            members.append(
                Member(
                    name=name,
                    offset=self._stream.starts[disk] + header_offset,
                    method=method,
                    crc=crc,
                    compressed_size=csize,
                    size=size,
                )
            )
            pos += 46 + name_len + extra_len + comment_len
        return members

    def read(self, name: str) -> bytes:
        """The member's bytes, inflated and CRC-checked."""
        member = self.members[name]
        header = self._stream.read(member.offset, 30)
        if header[:4] != _LOCAL:
            raise StagingError(f"{name}: no local header where the directory points; is a part missing?")
        name_len, extra_len = struct.unpack_from("<HH", header, 26)
        data_start = member.offset + 30 + name_len + extra_len
        if member.method == _STORED:
            data = self._stream.read(data_start, member.compressed_size)
        elif member.method == _DEFLATED:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            out = bytearray()
            done = 0
            while done < member.compressed_size:
                chunk = self._stream.read(data_start + done, min(_CHUNK, member.compressed_size - done))
                if not chunk:
                    break
                out += inflater.decompress(chunk)
                done += len(chunk)
            out += inflater.flush()
            data = bytes(out)
        else:
            raise StagingError(
                f"{name}: compression method {member.method} is not supported (stored or deflate)"
            )
        if len(data) != member.size or zlib.crc32(data) != member.crc:
            raise StagingError(f"{name}: CRC or size mismatch; the archive parts are corrupt or incomplete")
        return data


def _zip64_fields(extra: bytes, size: int, csize: int, offset: int, disk: int) -> tuple[int, int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            body = extra[pos + 4 : pos + 4 + length]
            cursor = 0
            # Only the fields saturated in the fixed header are present, in this order.
            if size == 0xFFFFFFFF:
                size = struct.unpack_from("<Q", body, cursor)[0]
                cursor += 8
            if csize == 0xFFFFFFFF:
                csize = struct.unpack_from("<Q", body, cursor)[0]
                cursor += 8
            if offset == 0xFFFFFFFF:
                offset = struct.unpack_from("<Q", body, cursor)[0]
                cursor += 8
            if disk == 0xFFFF:
                disk = struct.unpack_from("<I", body, cursor)[0]
        pos += 4 + length
    return size, csize, offset, disk
