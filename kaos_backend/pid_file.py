"""`<data-dir>/backend.pid`: the `kaos-backend serve` process using a data directory, written by that process as it
starts and removed as it stops. JSON: {"pid", "start_ticks" (/proc/<pid>/stat field 22, so a recycled pid is not
mistaken for it), "host", "port"}. `kaos destroy -c LOCAL` and `kaos build deploy -f` read it to find a backend of
the project that `.kaos/config` does not record (a deploy interrupted before it wrote its record, or a config lost).
Standard library only: the CLI (kaos_cli/local_platform.py) reads it with `read`.
"""
import json
import os
from pathlib import Path
from typing import Optional, Tuple

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


def read(data_dir) -> Tuple[Optional[int], Optional[int]]:
    """(pid, start_ticks) of the pid file in `data_dir`; (None, None) when there is none or it cannot be read."""
    try:
        record = json.loads((Path(data_dir) / PID_FILE).read_text())
        return int(record["pid"]), (int(record["start_ticks"]) if record.get("start_ticks") is not None else None)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None, None


def remove(data_dir) -> None:
    """Remove the pid file when it still names this process (a newer backend's is left alone)."""
    path = Path(data_dir) / PID_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
