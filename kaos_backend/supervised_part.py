"""One part of the backend as the supervisor (kaos_backend.supervisor) keeps it: its process, its state, the
counts behind the backoff, how it last ended, and the tail of its stderr (for the line that says why)."""
import os
import signal
import subprocess
import time
from collections import deque
from typing import Optional

from kaos_backend.parts import Launch, PartSpec


def describe_exit(code: int) -> str:
    """`exited with code 3` / `killed by signal 9 (SIGKILL)` for a Popen return code."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"


class Part:
    """One supervised part and its life so far."""

    def __init__(self, spec: PartSpec):
        self.spec = spec
        self.name = spec.name
        self.process: Optional[subprocess.Popen] = None
        self.launch: Optional[Launch] = None
        self.state = "down"
        self.started_at = 0.0            # time.monotonic() of the last start
        self.up_at: Optional[float] = None
        self.since: Optional[float] = None  # time.time() of the last start, then of being up
        self.restarts = 0            # starts after the first one
        self.deaths_in_a_row = 0     # for the backoff
        self.failed_starts = 0       # deaths before up, in a row
        self.restart_at: Optional[float] = time.monotonic()
        self.last_exit: Optional[str] = None
        self.hung: Optional[str] = None  # why it was killed as hung, until its death is taken
        self.hung_checked_at = 0.0       # time.monotonic() of the last look
        self.stderr = deque(maxlen=20)
        self.partial = b""

    def status(self, now: float) -> dict:
        return {"state": self.state, "pid": self.process.pid if self.process and self.state != "down" else None,
                "restarts": self.restarts, "last_exit": self.last_exit,
                "restart_at": round(time.time() + self.restart_at - now, 3) if self.restart_at is not None else None,
                "gave_up": self.state == "down" and self.restart_at is None,
                "since": self.since if self.process else None}

    def last_error(self) -> Optional[str]:
        """The line of its stderr that says what went wrong: a traceback's last line, an `Error - ...` line, or
        the last line."""
        lines = [line for line in self.stderr if line.strip()]
        for line in reversed(lines):
            if line.startswith("Error - ") or (not line.startswith((" ", "\t", "Traceback")) and ": " in line
                                               and line.split(":", 1)[0].replace(".", "").isidentifier()):
                return line.strip()
        return lines[-1].strip() if lines else None

    def take_stderr(self, data: bytes) -> None:
        """Bytes of the part's stderr: passed on to ours (the backend's log), the last lines kept."""
        try:
            os.write(2, data)
        except OSError:
            pass
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-4096:]
        self.stderr.extend(line.decode("utf-8", "replace") for line in lines)

    def end_stderr(self) -> None:
        if self.partial:
            self.stderr.append(self.partial.decode("utf-8", "replace"))
            self.partial = b""
