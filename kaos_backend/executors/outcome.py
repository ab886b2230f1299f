"""How a workload ended: the exit record its runner writes, and the words a user reads.

The record is one JSON object in the workload's exit file (written atomically, so a reader sees all or nothing):

    {"code": 137,             # the exit status: the process's own, or 128 + N when signal N ended it
     "signal": 9,             # the signal that ended the main process, or null
     "oom_kills": 1,          # times the kernel's OOM killer struck inside the workload's cgroup
     "memory": "50Mi",        # the memory limit as requested, or null
     "requested": false,      # the platform stopped it (kaos train kill, serve kill, workspace kill)
     "left_running": ["4242 sleep 120"],   # processes still running when the main one ended (then stopped)
     "last_line": "..."}      # the workload's last line of output, for the reason of a failure

Older runners wrote the bare exit status; `read_record` accepts both. Standard library only.
"""
import json
import os
import signal
from typing import Optional

VANISHED_REASON = ("vanished: its runner disappeared without an exit code (the machine or the backend restarted, "
                   "or the runner was killed)")
LAST_LINE_LIMIT = 200


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def record_for(status: int, *, oom_kills: int = 0, memory: Optional[str] = None, requested: bool = False,
               left_running=(), last_line: Optional[str] = None) -> dict:
    """The exit record of a main process whose `Popen.returncode` is `status` (negative: ended by a signal)."""
    signum = -status if status < 0 else None
    return {"code": 128 + signum if signum else status, "signal": signum, "oom_kills": oom_kills,
            "memory": memory, "requested": requested, "left_running": list(left_running),
            "last_line": (last_line or "")[:LAST_LINE_LIMIT] or None}


def write_record(path: str, record: dict) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(record, handle)
    os.replace(temporary, path)


def read_record(path: str) -> Optional[dict]:
    """The exit record at `path`, or None while there is none (or it cannot be read)."""
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, int):  # a bare exit status
        return record_for(value)
    return value if isinstance(value, dict) and isinstance(value.get("code"), int) else None


def describe(record: dict) -> str:
    """How the workload ended, in words: "exit code 1 (last output: ...)", "killed by signal 9 (SIGKILL)",
    "out of memory (limit 50Mi)", "killed on request"."""
    code, signum = record["code"], record.get("signal")
    if record.get("requested"):
        return "killed on request"
    if record.get("oom_kills") and (signum == signal.SIGKILL or code != 0):
        limit = record.get("memory")
        return f"out of memory (limit {limit})" if limit else "out of memory"
    if signum:
        return f"killed by signal {signum} ({signal_name(signum)})"
    text = f"exit code {code}"
    if code != 0 and record.get("last_line"):
        text += f" (last output: {record['last_line']})"
    return text
