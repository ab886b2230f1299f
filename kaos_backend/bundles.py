"""Zip bundles: validate every member before anything is extracted, then extract only under a destination.

Pure functions over files; no Flask, no SQL. Manifests and hyperparameters: `manifests.py`, `hyperparams.py`.
"""
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

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
MAX_NAME_BYTES = 255


class Member(NamedTuple):
    info: zipfile.ZipInfo
    parts: Tuple[str, ...]  # path components, without "" and "."
    is_dir: bool


class BundleLayout(NamedTuple):
    root_name: str      # the single top-level directory
    file_count: int
    total_size: int     # uncompressed bytes of the kept members


def _malformed() -> InvalidBundle:
    return InvalidBundle("Bundle is malformed")


def _member_problem(info: zipfile.ZipInfo) -> Optional[str]:
    """Why this member may not be extracted, or None."""
    name = info.filename
    if "\\" in name:
        return "backslash in its path"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE_RE.match(name):
        return "drive letter in its path"
    if ".." in name.split("/"):
        return "'..' component in its path"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in name.split("/")):
        return "a path component is longer than 255 bytes"
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
    for info in archive.infolist():
        problem = _member_problem(info)
        if problem:
            raise InvalidBundle(f"Bundle member {info.filename} is not allowed: {problem}")
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
    try:
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
    tree = _Tree(members)
    if kind in DATA_KINDS:
        root = _data_root(tree)
    else:
        root = _source_root(tree, REQUIRED_MODEL_FILES[kind])
    return BundleLayout(root, len(files), sum(member.info.file_size for member in files))


class _Tree:
    """Which names are files and which are directories, from the member list (directories may be implicit)."""

    def __init__(self, members: List[Member]):
        self.files = set()
        self.dirs = set()
        for member in members:
            for depth in range(1, len(member.parts)):
                self.dirs.add(member.parts[:depth])
            (self.dirs if member.is_dir else self.files).add(member.parts)
        clash = self.files & self.dirs
        if clash:
            raise InvalidBundle(f"Bundle member {'/'.join(sorted(clash)[0])} is both a file and a directory")

    def children(self, parent: Tuple[str, ...]) -> Tuple[List[str], List[str]]:
        """(directory names, file names) directly under `parent`, sorted."""
        depth = len(parent) + 1
        dirs = sorted(d[-1] for d in self.dirs if len(d) == depth and d[:-1] == parent)
        files = sorted(f[-1] for f in self.files if len(f) == depth and f[:-1] == parent)
        return dirs, files

    def has_files_under(self, parent: Tuple[str, ...]) -> bool:
        return any(f[:len(parent)] == parent for f in self.files)


def _data_root(tree: _Tree) -> str:
    dirs, files = tree.children(())
    entries = dirs + files
    if len(entries) > 1:
        raise InvalidBundle(f"Data bundle must hold exactly one top-level directory, found {len(entries)} "
                            f"entries: {', '.join(entries)}")
    if files:
        raise InvalidBundle(f"Data bundle must hold one top-level directory, found the file {files[0]}")
    root = dirs[0]
    if not tree.has_files_under((root,)):
        raise InvalidBundle(f"Data directory {root} must be non-empty")
    return root


def _source_root(tree: _Tree, required_files) -> str:
    dirs, files = tree.children(())
    if len(dirs) > 1:
        raise InvalidBundle("Too many directories in source-code bundle")
    if not dirs:
        raise InvalidBundle("Missing root directory in source-code bundle")
    if files:
        raise InvalidBundle(f"Unexpected file {files[0]} at the root of source-code bundle: "
                            "everything belongs in its root directory")
    root = dirs[0]
    root_dirs, root_files = tree.children((root,))
    if "Dockerfile" not in root_files:
        raise InvalidBundle("Missing Dockerfile in source-code bundle")
    if "model" not in root_dirs:
        raise InvalidBundle("Missing model directory in source-code bundle")
    _, model_files = tree.children((root, "model"))
    for required in required_files:
        if required not in model_files:
            raise InvalidBundle(f"Missing file {required} in model directory of source-code bundle")
    return root


def safe_extract(zip_path: Path, dest: Path, max_uncompressed: Optional[int] = None) -> List[Path]:
    """Extract the bundle's members (hidden root entries left out) under `dest` and nowhere else.

    Members are checked again before the first byte is written; files keep their exec bits, nothing else
    of the archive's modes (no setuid, no symlinks). Returns the files written.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    real_dest = os.path.realpath(dest)
    written, budget = [], max_uncompressed
    with open_zip(zip_path) as archive:
        members = read_members(archive, max_uncompressed)
        _Tree(members)
        for member in members:
            target = os.path.join(real_dest, *member.parts)
            if os.path.commonpath([real_dest, os.path.realpath(target)]) != real_dest:
                raise InvalidBundle(f"Bundle member {member.info.filename} is not allowed: outside the bundle")
            if member.is_dir:
                os.makedirs(target, mode=0o755, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            exec_bits = (member.info.external_attr >> 16) & 0o111
            budget = _extract_file(archive, member.info, target, 0o644 | exec_bits, budget)
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
