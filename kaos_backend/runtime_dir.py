"""The backend's runtime directory: `/tmp/kaos-backend-XXXX/` (short, as a unix socket path has ~100 bytes),
holding the API's unix socket, the parts' status file and the scheduler's heartbeat. It names its owner (the
`kaos-backend serve` process: pid and start time, so a recycled pid is not mistaken for it), and a backend that
starts removes the directories whose owner is gone (a crash leaves its directory behind)."""
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import List, Optional

PREFIX = "kaos-backend-"
OWNER_FILE = "owner"
API_SOCKET = "api.sock"
UNOWNED_GRACE_SECONDS = 60.0  # a directory without an owner file is someone's that is being created, or old


def process_start_ticks(pid: int) -> Optional[int]:
    """When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22); None when there is no such
    process or it is a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def create(base: Optional[str] = None) -> Path:
    """A new runtime directory (mode 0700) owned by this process."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    ticks = process_start_ticks(os.getpid())
    (path / OWNER_FILE).write_text(f"{os.getpid()} {ticks if ticks is not None else ''}\n")
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def owner_alive(path: Path) -> Optional[bool]:
    """Is the process that created `path` still running? None when the directory names no owner."""
    try:
        fields = (Path(path) / OWNER_FILE).read_text().split()
        pid = int(fields[0])
    except (OSError, ValueError, IndexError):
        return None
    ticks = process_start_ticks(pid)
    if ticks is None:
        return False
    return len(fields) < 2 or not fields[1].isdigit() or int(fields[1]) == ticks


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def remove_stale(base: Optional[str] = None) -> List[Path]:
    """Remove the runtime directories of backends that are gone; returns them. A directory without an owner
    file (an older backend's) goes when it is older than a minute and nothing listens on its API socket."""
    root = Path(base or tempfile.gettempdir())
    removed = []
    try:
        candidates = [entry for entry in root.iterdir() if entry.name.startswith(PREFIX) and entry.is_dir()]
    except OSError:
        return removed
    for entry in candidates:
        alive = owner_alive(entry)
        if alive is None:
            try:
                old = time.time() - entry.stat().st_mtime > UNOWNED_GRACE_SECONDS
            except OSError:
                continue
            alive = not old or _socket_answers(entry / API_SOCKET)
        if not alive:
            remove(entry)
            removed.append(entry)
    return removed
