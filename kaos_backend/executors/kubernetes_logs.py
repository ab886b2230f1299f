"""Copying a pod's container logs into the platform's log (pod logs go with the pod: a Job's an hour after it
ended, an endpoint's when it is deleted): the pod log API with timestamps, followed while the container runs,
each line a record stamped with the time the node logged it (the backend's local time, as every record).

A `Cursor` is where a container's copy got to: the node's time (ns) of the last line written and how many lines
of that very time were written (lines read together share a time), so that a copy resumed after a disconnect,
a read timeout or a backend restart asks for a little more than it needs (`sinceSeconds` is in whole seconds)
and skips what it wrote already."""
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

from kaos_backend.executors.docker_output import LogWriter, engine_line, local_time

FOLLOW_READ_SECONDS = 60   # a follow that reads nothing this long is ended (and resumed, if the container runs)
SINCE_MARGIN = 5           # seconds asked for before the cursor (the backend's and the node's clocks may differ)
READ_BYTES = 64 * 1024


@dataclass
class Cursor:
    nanoseconds: int = 0
    count: int = 0          # lines written whose time is `nanoseconds`

    def to_list(self) -> list:
        return [self.nanoseconds, self.count]

    @classmethod
    def from_list(cls, value) -> "Cursor":
        return cls(int(value[0]), int(value[1])) if value else cls()


class LineFilter:
    """Drops the lines a cursor says were written, advances it for the others."""

    def __init__(self, cursor: Cursor):
        self.cursor = cursor
        self.skipped_at_cursor = 0

    def fresh(self, nanoseconds: Optional[int]) -> bool:
        cursor = self.cursor
        if nanoseconds is None:
            return True
        if nanoseconds < cursor.nanoseconds:
            return False
        if nanoseconds == cursor.nanoseconds and self.skipped_at_cursor < cursor.count:
            self.skipped_at_cursor += 1
            return False
        if nanoseconds == cursor.nanoseconds:
            cursor.count += 1
            self.skipped_at_cursor += 1
        else:
            cursor.nanoseconds, cursor.count, self.skipped_at_cursor = nanoseconds, 1, 1
        return True


def since_seconds(cursor: Cursor) -> Optional[int]:
    """The `sinceSeconds` that covers everything after `cursor` (None: from the start)."""
    if not cursor.nanoseconds:
        return None
    return max(1, math.ceil(time.time() - cursor.nanoseconds / 1e9) + SINCE_MARGIN)


def copy_container_log(core, namespace: str, pod: str, container: str, writer: LogWriter, cursor: Cursor,
                       follow: bool, previous: bool = False, saved: Callable[[], None] = lambda: None,
                       on_line: Callable[[str], None] = lambda text: None,
                       opened: Callable[[Optional[object]], None] = lambda response: None) -> int:
    """Copy the log of `container` of `pod` after `cursor` into `writer`, following it while it runs when
    `follow`; `saved()` after each read that brought lines (the cursor moved: a copy resumed later repeats
    nothing that reached the log before a wait for more), `on_line(text)` for each line written, `opened(response)`
    with the urllib3 response being read (another thread may interrupt a follow with `interrupt`), then
    `opened(None)`.
    Returns the lines written. Raises the client's ApiException (400 while the container has not started, 404
    once the pod is gone) and urllib3's errors (a read timeout of a silent container)."""
    response = core.read_namespaced_pod_log(
        pod, namespace, container=container, follow=follow, timestamps=True, previous=previous,
        since_seconds=since_seconds(cursor), _preload_content=False,
        _request_timeout=(10, FOLLOW_READ_SECONDS if follow else 120))
    opened(response)
    lines = LineFilter(cursor)
    written, pending = 0, b""
    try:
        for data in response.stream(READ_BYTES, decode_content=True):
            *complete, pending = (pending + data).split(b"\n")
            for raw in complete:
                written += _copy_line(raw, lines, writer, on_line)
            if complete:
                saved()  # what came in one read: the cursor is saved before the next wait for more
        if pending:
            written += _copy_line(pending, lines, writer, on_line)
            saved()
    finally:
        opened(None)
        response.release_conn()
    return written


def interrupt(response) -> None:
    """End a read of `response` (copy_container_log's) that another thread is blocked in: it raises, or sees the
    stream's end. urllib3 2.3's `shutdown` wakes a blocked read; `close` is what older ones have."""
    try:
        (getattr(response, "shutdown", None) or response.close)()
    except Exception:  # noqa: BLE001 - a stream that ended meanwhile
        pass


def _copy_line(raw: bytes, lines: LineFilter, writer: LogWriter, on_line: Callable[[str], None]) -> int:
    nanoseconds, text = engine_line(raw)
    if not lines.fresh(nanoseconds):
        return 0
    writer.output(text, local_time(nanoseconds))
    on_line(text.decode("utf-8", errors="replace").strip())
    return 1
