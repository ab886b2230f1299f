"""Job logs: files of `[YYYY-MM-DD HH:MM:SS] text` records, as the local executor keeps them (the executor's
`logs()` and `open_log()` are how anything else reads them: executors/base.py).

`records(reader, ...)` turns any log's bytes (a `LogReader`: `read(size)` never blocks) into records, whole or
followed live; `LogFileReader` is the reader of a log file; `JobLog` appends records to one."""
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Optional

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
FOLLOW_READ_BYTES = 64 * 1024  # read at a time: a reader holds this much, not the whole log


def stamp(text: str, when: Optional[datetime] = None) -> str:
    """One log record (no newline): the backend's local time, seconds precision, as the original."""
    return f"[{(when or datetime.now()).strftime(TIMESTAMP_FORMAT)}] {text}"


class LogFileReader:
    """The bytes of the log file `path` from its start, FOLLOW_READ_BYTES or fewer at a time: `read(size)` gives
    b"" while the file does not exist or holds nothing new, and never blocks (a regular file). OSError when the
    file exists but cannot be read."""

    def __init__(self, path):
        self.path = Path(path)
        self.file = None

    def read(self, size: int = FOLLOW_READ_BYTES) -> bytes:
        if self.file is None:
            try:
                self.file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open between reads
            except FileNotFoundError:
                return b""  # not written yet
        return self.file.read(size) or b""

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            finally:
                self.file = None


def records(reader, follow: bool = False, finished: Callable[[], bool] = lambda: True, interval: float = 0.2,
            idle_timeout: Optional[float] = None) -> Iterator[str]:
    """The records `reader` (a LogReader) holds, each without its newline, bytes that are not UTF-8 replaced by
    U+FFFD. Without `follow`: the complete ones there are now (a last record still being written is left out).
    With `follow`: then new ones as they are written, until `finished()` is true and the log is drained (a last
    record without its newline is yielded then), or nothing new came for `idle_timeout` seconds when given. The
    state is read before the log, so nothing written before the end is missed. The reader is closed at the end."""
    pending = b""
    last_data = time.monotonic()
    try:
        while True:
            done = finished() if follow else True
            chunk = reader.read(FOLLOW_READ_BYTES)
            if chunk:
                last_data = time.monotonic()
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    yield raw.decode("utf-8", errors="replace")
                if not follow:
                    continue
            if done and not chunk:
                if pending and follow:
                    yield pending.decode("utf-8", errors="replace")
                return
            if idle_timeout is not None and time.monotonic() - last_data > idle_timeout:
                return
            if not chunk:
                time.sleep(interval)
    finally:
        reader.close()


class JobLog:
    """The log file of one job. Writers append whole records; readers never see half a line."""

    def __init__(self, path):
        self.path = Path(path)

    def append(self, *texts: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for text in texts:
                for line in str(text).splitlines() or [""]:
                    handle.write(stamp(line) + "\n")

    def lines(self):
        """Every complete record, as a list."""
        return list(records(LogFileReader(self.path)))

    def follow(self, finished: Callable[[], bool], interval: float = 0.2,
               idle_timeout: Optional[float] = None) -> Iterator[str]:
        """Every record, then new ones until `finished()` and drained (see `records`)."""
        return records(LogFileReader(self.path), True, finished, interval, idle_timeout)
