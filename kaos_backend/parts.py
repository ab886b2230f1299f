"""What the supervisor runs: the launch spec of each part of the backend (command, environment, inherited file
descriptors) and how it tells that the part is up.

- front: `python -m kaos_backend.front` on the inherited public socket (and the internal one, when
  KAOS_INTERNAL_PORT is set); up when it writes a byte on its
  readiness pipe (it is serving). The listening socket stays open in the supervisor, so connections made while
  the front restarts wait in the backlog instead of being refused.
- api: `python -m kaos_backend.api_server` (gunicorn) on a unix socket; up when a worker answers HTTP there.
- scheduler: `python -m kaos_backend.scheduler`; up once it has written its heartbeat (after a whole tick, or a
  try for the scheduler lock while another replica's scheduler leads); named after the public address. Hung (the
  supervisor kills it, to start it again) when its heartbeat is older than KAOS_SCHEDULER_HUNG_TIMEOUT (120 s)
  and its tick is not waiting on its engine within that request's bound (kaos_backend.part_status): a process
  that lives but no longer ticks (a deadlock, a stopped process, a call that never returns) would otherwise hold
  every workload still, the health saying "down" and nobody acting on it.

Secrets (the token, the database URL) go by environment (`KAOS_TOKEN`, `KAOS_DATABASE_URL`; /proc/<pid>/environ
is readable by the owner only), never in argv, which every user can read with `ps`.
"""
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from kaos_backend.config import Config
from kaos_backend.part_status import (ENGINE_FILE, FRONT_HEARTBEAT_FILE, HEARTBEAT_FILE, heartbeat_age, read_status,
                                      waits_on_engine)
from kaos_backend.runtime_dir import API_SOCKET

START_SECONDS = 60.0  # the front and the API are up within this, or their start failed


@dataclass
class Launch:
    """One start of a part: what to pass to Popen, and `is_up()` to ask (cheaply, without blocking long)
    whether it is up yet; `ready_fd`, when set, becomes readable when it may be (the supervisor asks at once
    instead of at its next tick). `close()` releases what the supervisor kept for this start. `hung()`, asked of
    a part that is up, says why it is alive but no longer working (the supervisor kills it), None while it works
    (Kubernetes' liveness probe, for a part that has one)."""
    argv: List[str]
    env: Dict[str, str]
    pass_fds: Tuple[int, ...] = ()
    is_up: Callable[[], bool] = lambda: True
    close: Callable[[], None] = lambda: None
    after_spawn: Callable[[], None] = lambda: None
    ready_fd: Optional[int] = None
    hung: Callable[[], Optional[str]] = lambda: None


@dataclass
class PartSpec:
    """A part: `name`, `launch()` building each start's Launch, and `start_seconds` after which a part that is
    still not up counts as failed to start (None: no limit)."""
    name: str
    launch: Callable[[], Launch]
    start_seconds: Optional[float] = START_SECONDS


def backend_parts(config: Config, run_dir: Path, listener: socket.socket, workers: int, threads: int,
                  poll_interval: float = 0.25, internal_listener: Optional[socket.socket] = None) -> List[PartSpec]:
    """The three parts of `kaos-backend serve`, in the order they are started. `internal_listener`: the socket of
    KAOS_INTERNAL_PORT, where the front serves the internal artifact routes only."""
    env = part_environment(config)
    api_socket = run_dir / API_SOCKET
    heartbeat = run_dir / HEARTBEAT_FILE
    front_heartbeat = run_dir / FRONT_HEARTBEAT_FILE
    python = [sys.executable, "-m"]

    def front() -> Launch:
        _remove(front_heartbeat)  # the last front's: the new one's first beat comes within a second of serving
        ready_read, ready_write = os.pipe()
        os.set_blocking(ready_read, False)
        fd = listener.fileno()
        argv = python + ["kaos_backend.front", "--fd", str(fd), "--api", str(api_socket),
                         "--run-dir", str(run_dir), "--ready-fd", str(ready_write)]
        fds = (fd, ready_write)
        if internal_listener is not None:
            argv += ["--internal-fd", str(internal_listener.fileno())]
            fds += (internal_listener.fileno(),)
        return Launch(argv, env, pass_fds=fds, is_up=lambda: _pipe_has_data(ready_read),
                      close=lambda: _close(ready_read), after_spawn=lambda: _close(ready_write), ready_fd=ready_read,
                      hung=lambda: stale_heartbeat(front_heartbeat, config.front_hung_timeout))

    def api() -> Launch:
        argv = python + ["kaos_backend.api_server", "--socket", str(api_socket), "--run-dir", str(run_dir),
                         "--workers", str(workers), "--threads", str(threads)]
        return Launch(argv, env, is_up=lambda: http_answers(api_socket))

    def scheduler() -> Launch:
        _remove(heartbeat)
        argv = python + ["kaos_backend.scheduler", "--data-dir", str(config.data_dir), "--heartbeat", str(heartbeat),
                         "--poll-interval", str(poll_interval), "--replica", public_address(listener)]
        return Launch(argv, env, is_up=heartbeat.exists,
                      hung=lambda: scheduler_hung(run_dir, config.scheduler_hung_timeout))

    return [PartSpec("api", api), PartSpec("scheduler", scheduler, start_seconds=None), PartSpec("front", front)]


def scheduler_hung(run_dir: Path, timeout: float, now: Optional[float] = None) -> Optional[str]:
    """"no heartbeat for 125 s" when the scheduler's heartbeat in `run_dir` is older than `timeout` seconds and its
    tick is not waiting on its engine (part_status.waits_on_engine), else None (and always None for a `timeout` of
    0). `now`: time.time()."""
    now = time.time() if now is None else now
    hung = stale_heartbeat(run_dir / HEARTBEAT_FILE, timeout, now)
    if hung is None or waits_on_engine(read_status(run_dir / ENGINE_FILE), now):
        return None
    return hung


def stale_heartbeat(path: Path, timeout: float, now: Optional[float] = None) -> Optional[str]:
    """"no heartbeat for 31 s" when the heartbeat file `path` is older than `timeout` seconds, else None (also
    without a file, the part not having beaten yet, and always for a `timeout` of 0). `now`: time.time()."""
    if not timeout:
        return None
    age = heartbeat_age(path, now)
    if age is None or age <= timeout:
        return None
    return f"no heartbeat for {age:.0f} s"


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def public_address(listener: socket.socket) -> str:
    """`host:port` (`[::1]:port`) of the backend's public socket."""
    host, port = listener.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def part_environment(config: Config) -> Dict[str, str]:
    """The parts' environment: this process's, with the settings the supervisor resolved (the token may come
    from the data directory's token file)."""
    env = dict(os.environ, KAOS_DATA_DIR=str(config.data_dir), KAOS_DATABASE_URL=config.database_url)
    if config.token:
        env["KAOS_TOKEN"] = config.token
    return env


def http_answers(path: Path, timeout: float = 0.5) -> bool:
    """Does an HTTP server answer on the unix socket `path`? (Any status will do: a 401 proves a worker runs
    the app; a connection alone does not, as gunicorn's master accepts into its backlog before workers boot.)"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(str(path))
            probe.sendall(b"GET /api/health HTTP/1.1\r\nHost: kaos-backend\r\nConnection: close\r\n\r\n")
            return probe.recv(16).startswith(b"HTTP/")
        except OSError:
            return False


def _pipe_has_data(fd: int) -> bool:
    try:
        return bool(os.read(fd, 16))
    except (BlockingIOError, OSError):
        return False


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
