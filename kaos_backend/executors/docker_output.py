"""What a Docker workload's watcher writes to its log: the engine's output lines (a container's, stamped with the
time the engine received each; a build's, without the terminal colours the engine wraps a step's errors in) as
`[YYYY-MM-DD HH:MM:SS] line` records, within the log's budget (past it, lines are counted, not written, as the
local runner does), and a cursor: the engine's time of the last line written, from which a new watcher resumes.
Standard library only."""
import os
import re
from datetime import datetime, timezone
from typing import Optional, Tuple

from kaos_backend.logs import stamp

MAX_LOG_BYTES = 64 * 1024 * 1024
MAX_LINE = 64 * 1024  # a longer line is written in pieces
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
CURSOR_WIDTH = 20  # the cursor file: nanoseconds since the epoch, zero-padded, rewritten in place
_ENGINE_TIME = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ")


def strip_ansi(text: str) -> str:
    """`text` without terminal escape sequences (the engine wraps a failing step's stderr in `\\x1b[91m`...)."""
    return ANSI.sub("", text)


def engine_line(frame: bytes) -> Tuple[Optional[int], bytes]:
    """A frame of `container.logs(timestamps=True)`, `b"2026-11-30T17:52:10.197411679Z text\\n"`: (nanoseconds
    since the epoch of its timestamp, the text after it). (None, frame) when it has no timestamp."""
    match = _ENGINE_TIME.match(frame)
    if not match:
        return None, frame
    seconds = datetime.strptime(match.group(1).decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    fraction = (match.group(2) or b"").decode().ljust(9, "0")
    return int(seconds.timestamp()) * 1_000_000_000 + int(fraction), frame[match.end():]


def local_time(nanoseconds: Optional[int]) -> Optional[datetime]:
    """The backend's local time of an engine timestamp (the log's records are in local time, as the original's)."""
    return datetime.fromtimestamp(nanoseconds / 1e9) if nanoseconds is not None else None


class Cursor:
    """The engine time (ns) of the last line a watcher wrote, kept in a small file rewritten in place."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.value = self._read()

    def _read(self) -> Optional[int]:
        text = os.pread(self.fd, CURSOR_WIDTH, 0).strip()
        return int(text) if text.isdigit() else None

    def advance(self, nanoseconds: int) -> None:
        if self.value is None or nanoseconds > self.value:
            self.value = nanoseconds
            os.pwrite(self.fd, str(nanoseconds).zfill(CURSOR_WIDTH).encode(), 0)

    def seen(self, nanoseconds: Optional[int]) -> bool:
        """True for a line at or before the last one written (a resumed follow starts a little earlier)."""
        return nanoseconds is not None and self.value is not None and nanoseconds <= self.value

    def since(self) -> Optional[float]:
        """Where a resumed follow starts (the engine's `since`, seconds): a second before the cursor."""
        return max(self.value / 1e9 - 1.0, 1.0) if self.value is not None else None


class LogWriter:
    """Appends records to the log file `path` (whole records, one write each, so that the watchers of one job's
    partitions can share it), keeping the workload's last line of output for the reason of a failure."""

    def __init__(self, path: str, max_bytes: Optional[int] = None):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.budget = int(max_bytes or MAX_LOG_BYTES)
        self.max_bytes = self.budget
        self.dropped = [0, 0]  # output lines and bytes not written (over the budget)
        self.last_line: Optional[str] = None

    def record(self, text: str, when: Optional[datetime] = None) -> None:
        """A record of kaos's own (never counted against the budget)."""
        os.write(self.fd, _record(text, when))

    def output(self, raw: bytes, when: Optional[datetime] = None, colours: bool = True) -> None:
        """One line of the workload's output (without its newline); `colours=False` strips terminal escapes."""
        while len(raw) > MAX_LINE:
            self._output_piece(raw[:MAX_LINE], when, colours)
            raw = raw[MAX_LINE:]
        self._output_piece(raw, when, colours)

    def _output_piece(self, raw: bytes, when: Optional[datetime], colours: bool) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        if not colours:
            text = strip_ansi(text)
        if text.strip():
            self.last_line = text.strip()
        record = _record(text, when)
        if len(record) > self.budget:
            self.dropped[0] += 1
            self.dropped[1] += len(raw)
            return
        self.budget -= len(record)
        os.write(self.fd, record)

    def dropped_note(self) -> Optional[str]:
        if not self.dropped[0]:
            return None
        return (f"kaos: {self.dropped[0]} lines ({self.dropped[1]} bytes) of output were not logged: the log of a "
                f"workload holds at most {self.max_bytes} bytes")


def _record(text: str, when: Optional[datetime]) -> bytes:
    return (stamp(text.replace("\r", " ").replace("\n", " "), when) + "\n").encode("utf-8", errors="replace")
