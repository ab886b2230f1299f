"""Zip bundles: validate every member before anything is extracted, then extract only under a destination.

Pure functions over files; no Flask, no SQL. Manifests and hyperparameters: `manifests.py`, `hyperparams.py`.

Every check is bounded and linear in the number of members, so no upload can make a worker spend more than it
sent: before `zipfile` indexes anything, the central directory is read entry by entry (`central_directory.py`)
and refused at the first entry over a bound (kaos_model.bundles: at most MAX_BUNDLE_MEMBERS members, paths of at
most MAX_BUNDLE_DEPTH components and MAX_BUNDLE_PATH_BYTES bytes; a central directory of at most
MAX_DIRECTORY_BYTES). A member name holding a NUL byte (which `zipfile` would cut short) and two members of the
same path (of which extraction would keep the last) are refused too. The same checks run again before
extraction, for bundles stored before they existed.
"""
import errno
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

from kaos_model.bundles import MAX_BUNDLE_DEPTH, MAX_BUNDLE_MEMBERS, MAX_BUNDLE_NAME_BYTES, MAX_BUNDLE_PATH_BYTES

from kaos_backend import central_directory
from kaos_backend.bundle_tree import BundleTree, Member, data_root, shown, source_root, too_many_members
from kaos_backend.errors import InvalidBundle, PayloadTooLarge

DATA_KINDS = ("features", "data-notebook")
SOURCE_KINDS = ("source-train", "source-serve", "source-notebook")
REQUIRED_MODEL_FILES = {
    "source-train": ("__init__.py", "requirements.txt", "train"),
    "source-serve": ("__init__.py", "serve", "web-requirements.txt"),
    "source-notebook": (),
}
SUPPORTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError)
CHUNK = 1024 * 1024
MAX_NAME_BYTES = MAX_BUNDLE_NAME_BYTES
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024  # the zip's table of contents: 100,000 members with ~600-byte paths
NUL_PROBLEM = "a NUL byte in its name"  # zipfile would cut the name there and extract `a\0b` as `a`


class BundleLayout(NamedTuple):
    root_name: str      # the single top-level directory
    file_count: int
    total_size: int     # uncompressed bytes of the kept members


def _malformed() -> InvalidBundle:
    return InvalidBundle("Bundle is malformed")


def _refused(name: str, problem: str) -> InvalidBundle:
    return InvalidBundle(f"Bundle member {shown(name)} is not allowed: {problem}")


def _shape_problem(name: str) -> Optional[str]:
    """Why this member name is too deep or too long (kaos_model.bundles), or None; costs one pass over it."""
    path = name.rstrip("/")
    depth = sum(1 for part in path.split("/") if part not in ("", "."))
    if depth > MAX_BUNDLE_DEPTH:
        return f"nested {depth} levels deep, the limit is {MAX_BUNDLE_DEPTH}"
    size = len(path.encode("utf-8", "surrogateescape"))
    if size > MAX_BUNDLE_PATH_BYTES:
        return f"its path is {size} bytes long, the limit is {MAX_BUNDLE_PATH_BYTES}"
    return None


def _check_directory(zip_path: Path) -> None:
    """The central directory's size, member count and every member's shape, one entry at a time, before
    `zipfile` reads it whole; InvalidBundle at the first entry over a bound."""
    try:
        with open(zip_path, "rb") as archive:
            directory = central_directory.locate(archive)
            if directory.size > MAX_DIRECTORY_BYTES:
                raise InvalidBundle(f"Bundle has a central directory (table of contents) of {directory.size} "
                                    f"bytes: the limit is {MAX_DIRECTORY_BYTES // (1024 * 1024)} MB")
            for count, (raw, flags) in enumerate(central_directory.entry_names(archive, directory), start=1):
                if count > MAX_BUNDLE_MEMBERS:
                    raise too_many_members()
                name = central_directory.decoded_name(raw, flags)
                problem = NUL_PROBLEM if b"\0" in raw else _shape_problem(name)
                if problem:
                    raise _refused(name, problem)
    except central_directory.NotAZip:
        raise _malformed() from None


def _member_problem(info: zipfile.ZipInfo) -> Optional[str]:
    """Why this member may not be extracted, or None."""
    name = info.filename
    if "\0" in info.orig_filename:  # zipfile cut the name there; `_check_directory` refuses it first
        return NUL_PROBLEM
    shape = _shape_problem(name)
    if shape:
        return shape
    if "\\" in name:
        return "backslash in its path"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE_RE.match(name):
        return "drive letter in its path"
    if ".." in name.split("/"):
        return "'..' component in its path"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in name.split("/")):
        return f"a path component is longer than {MAX_NAME_BYTES} bytes"
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        return "symbolic link"
    if file_type in (stat.S_IFCHR, stat.S_IFBLK):
        return "device file"
    if file_type in (stat.S_IFIFO, stat.S_IFSOCK):
        return "special file (fifo or socket)"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_type not in SUPPORTED_COMPRESSION:
        return f"unsupported compression method {info.compress_type}"
    return None


def _is_hidden_root(parts: Tuple[str, ...]) -> bool:
    return parts[0].startswith(".") or parts[0] == "__MACOSX"


def read_members(archive: zipfile.ZipFile, max_uncompressed: Optional[int] = None) -> List[Member]:
    """Every member checked (safety first, then size), hidden root entries (`.DS_Store`, `__MACOSX/`) left out."""
    members, total = [], 0
    if len(archive.infolist()) > MAX_BUNDLE_MEMBERS:
        raise too_many_members()
    for info in archive.infolist():
        problem = _member_problem(info)
        if problem:
            raise _refused(info.orig_filename, problem)
        parts = tuple(part for part in info.filename.split("/") if part not in ("", "."))
        if not parts or _is_hidden_root(parts):
            continue
        is_dir = info.is_dir() or stat.S_ISDIR(info.external_attr >> 16)
        if not is_dir:
            total += info.file_size
        members.append(Member(info, parts, is_dir))
    if max_uncompressed is not None and total > max_uncompressed:
        raise PayloadTooLarge(f"Bundle is too large: {total} bytes uncompressed, "
                              f"the limit is {max_uncompressed // (1024 * 1024)} MB")
    return members


def open_zip(zip_path: Path) -> zipfile.ZipFile:
    """The zip at `zip_path`, its central directory checked first (`_check_directory`); InvalidBundle if it is
    malformed or over a bound."""
    try:
        _check_directory(zip_path)
        return zipfile.ZipFile(zip_path)
    except (FileNotFoundError, PermissionError):
        raise
    except _CORRUPT + (zipfile.LargeZipFile, OSError):
        raise _malformed() from None


def inspect_bundle(zip_path: Path, kind: str, max_uncompressed: Optional[int] = None) -> BundleLayout:
    """Validate a data or source bundle without extracting it; InvalidBundle / PayloadTooLarge say why not."""
    if kind not in DATA_KINDS + SOURCE_KINDS:
        raise ValueError(f"not a zip bundle kind: {kind}")
    with open_zip(zip_path) as archive:
        members = read_members(archive, max_uncompressed)
        try:
            if archive.testzip() is not None:  # reads every member once: corrupt data is refused now, not later
                raise _malformed()
        except _CORRUPT:
            raise _malformed() from None
    files = [member for member in members if not member.is_dir]
    if not files:
        raise InvalidBundle("Bundle must be non-empty")
    tree = BundleTree(members)
    root = data_root(tree) if kind in DATA_KINDS else source_root(tree, REQUIRED_MODEL_FILES[kind])
    return BundleLayout(root, len(files), sum(member.info.file_size for member in files))


def safe_extract(zip_path: Path, dest: Path, max_uncompressed: Optional[int] = None) -> List[Path]:
    """Extract the bundle's members (hidden root entries left out) under `dest` and nowhere else.

    Members are checked again before the first byte is written (a bundle stored before a check existed meets
    it here), so InvalidBundle / PayloadTooLarge leave `dest` empty; InvalidBundle also when a member's full
    path is longer than this file system takes. Files keep their exec bits, nothing else of the archive's modes
    (no setuid, no symlinks). Returns the files written.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    real_dest = os.path.realpath(dest)
    written, budget = [], max_uncompressed
    with open_zip(zip_path) as archive:
        members = read_members(archive, max_uncompressed)
        BundleTree(members)  # a file that is also a directory, too many members: refused before any write
        for member in members:
            target = os.path.join(real_dest, *member.parts)
            if os.path.commonpath([real_dest, os.path.realpath(target)]) != real_dest:
                raise _refused(member.info.filename, "outside the bundle")
            try:
                if member.is_dir:
                    os.makedirs(target, mode=0o755, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                exec_bits = (member.info.external_attr >> 16) & 0o111
                budget = _extract_file(archive, member.info, target, 0o644 | exec_bits, budget)
            except OSError as error:
                if error.errno != errno.ENAMETOOLONG:
                    raise
                raise InvalidBundle(f"Bundle member {shown(member.info.filename)} cannot be extracted: its path "
                                    f"under {dest} is too long for the file system") from None
            written.append(Path(target))
    return written


def _extract_file(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: str, mode: int,
                  budget: Optional[int]) -> Optional[int]:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as sink:
        try:
            with archive.open(info) as source:
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    if budget is not None:
                        budget -= len(chunk)
                        if budget < 0:
                            raise PayloadTooLarge("Bundle is too large uncompressed")
                    sink.write(chunk)
        except _CORRUPT:
            raise _malformed() from None
    os.chmod(target, mode)
    return budget
