"""`<data-dir>/backend.pid`: the `kaos-backend serve` process using a data directory, written by that process as it
starts and removed as it stops. JSON: {"pid", "start_ticks" (/proc/<pid>/stat field 22, so a recycled pid is not
mistaken for it), "host", "port"}. `kaos destroy -c LOCAL` and `kaos build deploy -f` read it to find a backend of
the project that `.kaos/config` does not record (a deploy interrupted before it wrote its record, or a config lost).
"""
import json
import os
from pathlib import Path
from typing import Optional

PID_FILE = "backend.pid"


def write(data_dir, host: str, port: Optional[int]) -> Path:
    """Atomically write the pid file of this process into `data_dir` (mode 0600)."""
    from kaos_backend.runtime_dir import process_start_ticks

    path = Path(data_dir) / PID_FILE
    text = json.dumps({"pid": os.getpid(), "start_ticks": process_start_ticks(os.getpid()), "host": host,
                       "port": port})
    temporary = path.with_name(f".{PID_FILE}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    os.replace(temporary, path)
    return path


def remove(data_dir) -> None:
    """Remove the pid file when it still names this process (a newer backend's is left alone)."""
    path = Path(data_dir) / PID_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
