"""Job logs: files of `[YYYY-MM-DD HH:MM:SS] text` records, read whole or followed live."""
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, List, Optional

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
FOLLOW_READ_BYTES = 64 * 1024  # read at a time while following: a follower holds this much, not the whole log


def stamp(text: str, when: Optional[datetime] = None) -> str:
    """One log record (no newline): the backend's local time, seconds precision, as the original."""
    return f"[{(when or datetime.now()).strftime(TIMESTAMP_FORMAT)}] {text}"


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

    def lines(self) -> List[str]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in handle if line.endswith("\n")]

    def follow(self, finished: Callable[[], bool], interval: float = 0.2,
               idle_timeout: Optional[float] = None) -> Iterator[str]:
        """Yield every record, then new ones as they are written, until `finished()` is true and the file is
        drained (or nothing new came for `idle_timeout` seconds, when given). The file is read FOLLOW_READ_BYTES
        at a time (a log may be KAOS_MAX_LOG_MB long); a record longer than that is yielded once whole."""
        offset = 0
        pending = b""
        last_data = time.monotonic()
        while True:
            done = finished()  # read the state before the file, so nothing written before it is missed
            chunk = b""
            if self.path.exists():
                with open(self.path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(FOLLOW_READ_BYTES)
                offset += len(chunk)
            if chunk:
                last_data = time.monotonic()
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    yield raw.decode("utf-8", errors="replace")
            if done and not chunk:
                if pending:
                    yield pending.decode("utf-8", errors="replace")
                return
            if idle_timeout is not None and time.monotonic() - last_data > idle_timeout:
                return
            if not chunk:
                time.sleep(interval)
