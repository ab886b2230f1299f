"""A zip's central directory (its table of contents) read entry by entry, before `zipfile` indexes it.

`zipfile.ZipFile` reads the whole central directory and makes an object per entry before its caller sees any:
an 86 MB upload of a million empty members costs a worker over 500 MB that way. `locate` finds the central
directory exactly where zipfile will look for it (the end-of-central-directory record, zip64 included: APPNOTE
4.3.14-4.3.16), and `entry_names` yields one entry at a time, so a caller can stop at the first entry over a bound
having read no more than that.
"""
import struct
from typing import BinaryIO, Iterator, NamedTuple, Tuple

_END = struct.Struct("<4s4H2LH")         # signature, disk numbers, entry counts, size, offset, comment length
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk of the zip64 record, its offset, number of disks
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")  # signature, record size, versions, disks, entry counts, size, offset
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_ENTRY = struct.Struct("<4s4B4HL2L5H2L")  # a central directory file header (46 bytes, then name/extra/comment)
_ENTRY_SIGNATURE = b"PK\x01\x02"
_MAX_COMMENT = 1 << 16
UTF8_NAME_FLAG = 0x800                    # general purpose bit 11: the name is UTF-8 (else code page 437)


class NotAZip(ValueError):
    """No end-of-central-directory record, or a central directory that is truncated or garbled."""


class Directory(NamedTuple):
    start: int  # offset of the central directory in the file, in bytes
    size: int   # its length in bytes


def locate(archive: BinaryIO) -> Directory:
    """Where the central directory of the open binary file `archive` is; `NotAZip` when it has none."""
    archive.seek(0, 2)
    file_size = archive.tell()
    if file_size < _END.size:
        raise NotAZip("too short for a zip")
    archive.seek(file_size - _END.size)
    record = archive.read(_END.size)
    location = file_size - _END.size
    if record[:4] != _END_SIGNATURE or record[-2:] != b"\0\0":  # an archive comment follows the record
        search_from = max(file_size - _MAX_COMMENT - _END.size, 0)
        archive.seek(search_from)
        tail = archive.read()
        found = tail.rfind(_END_SIGNATURE)
        if found < 0 or len(tail) - found < _END.size:
            raise NotAZip("no end of central directory record")
        record, location = tail[found:found + _END.size], search_from + found
    size = _END.unpack(record)[5]
    zip64_size = _zip64_directory_size(archive, location)
    if zip64_size is None:
        start = location - size
    else:
        size = zip64_size
        start = location - _ZIP64_LOCATOR.size - _ZIP64_END.size - size
    if start < 0:
        raise NotAZip("bad offset for the central directory")
    return Directory(start, size)


def _zip64_directory_size(archive: BinaryIO, location: int):
    """The central directory's size from the zip64 records before the end record at `location`, or None."""
    if location < _ZIP64_LOCATOR.size:
        return None
    archive.seek(location - _ZIP64_LOCATOR.size)
    locator = archive.read(_ZIP64_LOCATOR.size)
    if len(locator) != _ZIP64_LOCATOR.size:
        return None
    signature, disk, _, disks = _ZIP64_LOCATOR.unpack(locator)
    if signature != _ZIP64_LOCATOR_SIGNATURE:
        return None
    if disk != 0 or disks > 1:
        raise NotAZip("a zip spanning several disks")
    if location < _ZIP64_LOCATOR.size + _ZIP64_END.size:
        return None
    archive.seek(location - _ZIP64_LOCATOR.size - _ZIP64_END.size)
    record = archive.read(_ZIP64_END.size)
    if len(record) != _ZIP64_END.size:
        return None
    fields = _ZIP64_END.unpack(record)
    return fields[8] if fields[0] == _ZIP64_END_SIGNATURE else None


def entry_names(archive: BinaryIO, directory: Directory) -> Iterator[Tuple[bytes, int]]:
    """`(name as stored, general purpose flags)` of each central directory entry, in order; `NotAZip` when an
    entry is truncated or garbled. Reads one entry ahead of the caller, nothing more."""
    archive.seek(directory.start)
    remaining = directory.size
    while remaining > 0:
        header = archive.read(_ENTRY.size)
        if len(header) != _ENTRY.size:
            raise NotAZip("truncated central directory")
        fields = _ENTRY.unpack(header)
        if fields[0] != _ENTRY_SIGNATURE:
            raise NotAZip("bad central directory entry")
        flags, name_length, extra_length, comment_length = fields[5], fields[12], fields[13], fields[14]
        name = archive.read(name_length)
        if len(name) != name_length:
            raise NotAZip("truncated central directory")
        archive.seek(extra_length + comment_length, 1)
        remaining -= _ENTRY.size + name_length + extra_length + comment_length
        yield name, flags


def decoded_name(name: bytes, flags: int) -> str:
    """An entry's whole name, decoded as `zipfile` decodes it (UTF-8 when flagged, else code page 437), with
    undecodable bytes kept as surrogates. Unlike `zipfile`, which cuts a name at its first NUL byte (`a\\0b`
    becomes `a`), the NUL and what follows are kept, so that a caller can refuse such a name."""
    return name.decode("utf-8" if flags & UTF8_NAME_FLAG else "cp437", "surrogateescape")
