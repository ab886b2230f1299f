"""A followed log across cuts: the stream of a `kaos … logs -f` that breaks off (the backend or its front
restarted: the supervisor brings a part back within seconds) is opened again and goes on where it was."""
import time
from typing import Callable, Iterator

from kaos_cli import render
from kaos_cli.errors import ConnectionDropped, ConnectionProblem, RequestError, StreamInterrupted

RECONNECT_SECONDS = 60.0  # how long a follow cut off (a backend or its front restarting) tries to open it again
RECONNECT_INTERVAL = 0.5


def resumed(lines: Iterator[str], reopen: Callable[[], Iterator[str]]) -> Iterator[str]:
    """The records of a followed log, across cuts: a stream that breaks off (the backend or its front restarted:
    the supervisor brings a part back within seconds) is opened again with `reopen`, tried for up to
    RECONNECT_SECONDS, and the records given already are skipped (a log only grows). Raises the cut's
    StreamInterrupted when it cannot be opened again."""
    given = 0
    try:
        while True:
            skip = given
            try:
                for record in lines:
                    if skip:
                        skip -= 1
                        continue
                    given += 1
                    yield record
                return
            except StreamInterrupted as cut:
                close(lines)
                render.info(f"{cut.message}: opening it again", err=True)
                lines = reopened(reopen, cut)
    finally:
        close(lines)


def reopened(reopen: Callable[[], Iterator[str]], cut: StreamInterrupted) -> Iterator[str]:
    """`reopen()`, tried every RECONNECT_INTERVAL s while the backend cannot be reached or answers 5xx, for up to
    RECONNECT_SECONDS; then `cut` is raised. Any other answer (the log, job or token refused) is raised at once."""
    deadline = time.monotonic() + RECONNECT_SECONDS
    while True:
        time.sleep(RECONNECT_INTERVAL)
        try:
            return reopen()
        except (ConnectionProblem, ConnectionDropped, StreamInterrupted):
            pass
        except RequestError as error:
            if error.status is None or error.status < 500:  # answered: the log, the job or the token is the matter
                raise
        if time.monotonic() > deadline:
            raise cut


def close(lines) -> None:
    """Close a log stream (an iterator with `close`, such as a generator over a response)."""
    closer = getattr(lines, "close", None)
    if closer:
        closer()
