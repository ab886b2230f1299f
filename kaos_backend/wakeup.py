"""Waking the scheduler: a datagram on an abstract unix socket named after the backend's data directory makes it
tick at once instead of at its next poll (a workload ended, the API recorded new work). Best effort: the
scheduler still polls, so a lost wake-up only costs latency. Linux abstract sockets need no file and vanish
with the process."""
import select
import socket
from typing import Optional

from kaos_backend.config import platform_id


def socket_name(data_dir) -> str:
    return f"kaos-scheduler-{platform_id(data_dir)}"


def wake(name: Optional[str]) -> None:
    """Wake the scheduler listening on `name` (nothing happens when none listens)."""
    if not name:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"wake", "\0" + name)
    except OSError:
        pass


class Listener:
    """The scheduler's end: `wait(timeout)` returns when woken or after `timeout` seconds."""

    def __init__(self, name: str):
        self.sock = None
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind("\0" + name)
            sock.setblocking(False)
            self.sock = sock
        except OSError:  # not Linux, or another process holds the name: plain polling
            pass

    def wait(self, timeout: float) -> bool:
        """True when a wake-up came (all pending ones are consumed), False on timeout."""
        if self.sock is None:
            select.select([], [], [], timeout)
            return False
        readable, _, _ = select.select([self.sock], [], [], timeout)
        woken = False
        while readable:
            try:
                self.sock.recv(64)
                woken = True
            except (BlockingIOError, InterruptedError):
                break
        return woken

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
