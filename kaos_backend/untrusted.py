"""Files a workload wrote (a model, metrics), read or copied by the backend, which may be root: never through a
symbolic link, never anything but a regular file or a directory (a FIFO would block the reader), never a hard link
(it may be another name of a file the workload could not read). A workload's outputs are read once its processes
are all gone, so nothing changes under the reader."""
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, List, Optional, Tuple

CHUNK = 1024 * 1024


def is_real_dir(path) -> bool:
    """A directory itself, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def is_regular(path) -> bool:
    """A regular file itself, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _why_not(info: os.stat_result) -> Optional[str]:
    """Why a directory entry is not copied or read (None for a plain regular file)."""
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_nlink > 1:
        return "a hard link"
    return None


def read_file(path, limit: int) -> Optional[bytes]:
    """The bytes of the regular file `path` when it has at most `limit` of them; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if _why_not(info) or info.st_size > limit:
            return None
        return handle.read(limit + 1)[:limit]


def copy_tree(source, target) -> List[str]:
    """Copy the directories and regular files under `source` into `target` (created if needed, merged into when it
    exists), modes kept; what is left out (links, special files, hard links) is returned as
    `["sub/name (a symbolic link)", ...]`."""
    source, target = Path(source), Path(target)
    left_out = []
    target.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(source):
        relative = Path(root).relative_to(source)
        for name in sorted(dirs):
            info = os.lstat(Path(root, name))
            if stat.S_ISLNK(info.st_mode):
                left_out.append(f"{relative / name} (a symbolic link)")
                continue
            (target / relative / name).mkdir(mode=stat.S_IMODE(info.st_mode) | 0o700, exist_ok=True)
        dirs[:] = [name for name in dirs if is_real_dir(Path(root, name))]
        for name in sorted(files):
            why = _copy_file(Path(root, name), target / relative / name)
            if why:
                left_out.append(f"{relative / name} ({why})")
    return left_out


def open_regular(path) -> Tuple[Optional[BinaryIO], Optional[str]]:
    """(the file `path` open for reading, None) when it is a plain regular file, else (None, why it is not read:
    "a symbolic link", "not a regular file", "a hard link", or why it cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        return None, "a symbolic link" if os.path.islink(path) else (error.strerror or "unreadable")
    reader = os.fdopen(fd, "rb")
    why = _why_not(os.fstat(reader.fileno()))
    if why:
        reader.close()
        return None, why
    return reader, None


def _copy_file(source: Path, target: Path) -> Optional[str]:
    reader, why = open_regular(source)
    if reader is None:
        return why
    with reader:
        info = os.fstat(reader.fileno())
        if target.is_symlink() or target.exists():
            target.unlink()
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      stat.S_IMODE(info.st_mode) & 0o755 | 0o600)
        with os.fdopen(out, "wb") as writer:
            shutil.copyfileobj(reader, writer, CHUNK)
    return None
