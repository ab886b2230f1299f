"""The supervisor of `kaos-backend serve`: runs the backend's parts (kaos_backend.parts) as child processes,
restarts a part that dies, and stops them all on SIGTERM/SIGINT/SIGHUP.

- A part that dies is restarted after a backoff: 0.5 s, doubling for each death in a row, at most 30 s; the
  count starts over once the part has stayed up for STABLE_SECONDS. Every death is logged with how it ended.
- A part that dies before it is up (or is not up after its spec's `start_seconds`) START_ATTEMPTS times in a
  row cannot start: the supervisor logs "The <part> cannot start: <its last error line>", stops the others and
  `run()` returns 1. Each part's stderr passes through the supervisor (to its own stderr), so that the error
  line (an ImportError, say) is known.
- A part that is up but hung (its Launch's `hung()` says why: the scheduler's heartbeat stopped) is killed
  (SIGKILL) and so restarted as above; the log says why ("The scheduler is hung: no heartbeat for 125 s: killing
  it"), and its `last_exit` too ("killed by signal 9 (SIGKILL): hung, no heartbeat for 125 s").
- The state of every part is kept in the status file (kaos_backend.part_status), read by the health route.

Written here rather than taken from supervisord or circus: both are daemons of their own (ini files, an RPC
server; circus also needs ZeroMQ and tornado), neither hands an inherited listening socket to a plain child
nor knows when a part is *up* (only that its process has lived N seconds), and the health route needs the
parts' state in a form it can read without them. What is needed is about 200 lines on top of subprocess.
"""
import logging
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

from kaos_backend.part_status import write_status
from kaos_backend.parts import Launch, PartSpec
from kaos_backend.supervised_part import Part, describe_exit

log = logging.getLogger("kaos_backend.supervisor")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_SECONDS = 10.0
START_ATTEMPTS = 3
STOP_SECONDS = 12.0  # the API's graceful timeout and a little: before `kaos destroy` gives up (15 s)
TICK_SECONDS = 0.1
HUNG_CHECK_SECONDS = 1.0  # how often a part that is up is asked whether it is hung
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Supervisor:
    """`Supervisor(specs, status_path).run()` → 0 after a stop signal, 1 when a part cannot start."""

    def __init__(self, specs: List[PartSpec], status_path: Path):
        self.parts: Dict[str, Part] = {spec.name: Part(spec) for spec in specs}
        self.status_path = Path(status_path)
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.failure: Optional[str] = None
        self._status = None

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self.selector.register(wake_read, selectors.EVENT_READ, None)
        previous = {signum: signal.signal(signum, self._on_stop_signal) for signum in STOP_SIGNALS}
        previous_chld = signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select
        previous_fd = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        try:
            self._write_status()
            while not self.stopping and self.failure is None:
                self._wait(wake_read)
                if self.stopping:  # parts that got the same signal (kaos destroy signals the group) are no deaths
                    break
                now = time.monotonic()
                for part in self.parts.values():
                    self._check(part, now)
                self._write_status()
            if self.failure:
                log.error("%s: stopping the backend", self.failure)
            self._stop_all()
        finally:
            signal.set_wakeup_fd(previous_fd)
            signal.signal(signal.SIGCHLD, previous_chld)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.selector.close()
            os.close(wake_read)
            os.close(wake_write)
        return 1 if self.failure else 0

    def _on_stop_signal(self, signum, _frame) -> None:
        self.stopping = True

    def _wait(self, wake_read: int) -> None:
        for key, _ in self.selector.select(TICK_SECONDS):
            if key.data is None:
                try:
                    while os.read(wake_read, 512):
                        pass
                except BlockingIOError:
                    pass
            elif isinstance(key.data, tuple):  # a part's readiness pipe
                self._check(key.data[1], time.monotonic())
            else:
                self._relay(key.data, key.fileobj)

    def _check(self, part: Part, now: float) -> None:
        if part.process is None:
            if part.restart_at is not None and now >= part.restart_at:
                self._start(part, now)
            return
        code = part.process.poll()
        if code is not None:
            self._died(part, code, now)
            return
        if part.state == "starting":
            if part.launch.is_up():
                self._forget_ready_fd(part.launch)
                part.state, part.up_at, part.since, part.failed_starts = "up", now, time.time(), 0
                log.info("The %s is up (pid %s)", part.name, part.process.pid)
                self._write_status()
            elif part.spec.start_seconds is not None and now - part.started_at > part.spec.start_seconds:
                log.error("The %s is not up after %.0f s: killing it", part.name, part.spec.start_seconds)
                part.stderr.append(f"not up after {part.spec.start_seconds:.0f} s")
                part.process.kill()
        elif part.state == "up":
            if part.deaths_in_a_row and now - part.up_at > STABLE_SECONDS:
                part.deaths_in_a_row = 0
            if part.hung is None and now - part.hung_checked_at >= HUNG_CHECK_SECONDS:
                part.hung_checked_at = now
                part.hung = part.launch.hung()
                if part.hung is not None:
                    log.error("The %s is hung: %s: killing it", part.name, part.hung)
                    part.process.kill()

    # -- one part's life -------------------------------------------------------------------------------------
    def _start(self, part: Part, now: float) -> None:
        launch = part.spec.launch()
        try:
            process = subprocess.Popen(launch.argv, env=launch.env, pass_fds=launch.pass_fds,
                                       stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as error:
            launch.close()
            part.stderr.append(f"Error - cannot start {part.name}: {error}")
            self._died(part, None, now, spawned=False)
            return
        finally:
            launch.after_spawn()
        if part.started_at:
            part.restarts += 1
        part.process, part.launch = process, launch
        part.state, part.started_at, part.up_at, part.restart_at = "starting", now, None, None
        part.since = time.time()
        part.stderr.clear()
        os.set_blocking(process.stderr.fileno(), False)
        self.selector.register(process.stderr, selectors.EVENT_READ, part)
        if launch.ready_fd is not None:
            self.selector.register(launch.ready_fd, selectors.EVENT_READ, ("ready", part))
        log.info("Started the %s (pid %s)", part.name, process.pid)

    def _died(self, part: Part, code: Optional[int], now: float, spawned: bool = True) -> None:
        if spawned:
            self._drain(part)
            self._forget_ready_fd(part.launch)
            part.launch.close()
        was_up = part.state == "up"
        how = describe_exit(code) if spawned else "could not be started"
        if part.hung is not None:
            how, part.hung = f"{how}: hung, {part.hung}", None
        part.process, part.launch, part.state, part.last_exit = None, None, "down", how
        part.deaths_in_a_row += 1
        if was_up:
            part.failed_starts = 0
            log.error("The %s ended: %s", part.name, how)
        else:
            part.failed_starts += 1
            error = part.last_error()
            log.error("The %s ended before it was up: %s%s", part.name, how, f": {error}" if error else "")
            if part.failed_starts >= START_ATTEMPTS:
                part.restart_at = None
                self.failure = (f"The {part.name} cannot start: {error or how} "
                                f"({part.failed_starts} attempts in a row)")
                return
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (part.deaths_in_a_row - 1))
        part.restart_at = now + delay
        log.info("Restarting the %s in %.1f s", part.name, delay)

    def _relay(self, part: Part, stream) -> None:
        """Pass a part's stderr on to ours, keeping its last lines."""
        try:
            data = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._unregister(stream)
            return
        part.take_stderr(data)

    def _drain(self, part: Part) -> None:
        stream = part.process.stderr
        if stream is None or stream.closed:
            return
        while True:
            try:
                data = os.read(stream.fileno(), 65536)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            part.take_stderr(data)
        part.end_stderr()
        self._unregister(stream)

    def _forget_ready_fd(self, launch: Launch) -> None:
        if launch.ready_fd is not None:
            try:
                self.selector.unregister(launch.ready_fd)
            except (KeyError, ValueError):
                pass

    def _unregister(self, stream) -> None:
        try:
            self.selector.unregister(stream)
        except (KeyError, ValueError):
            pass
        stream.close()

    # -- status and stop -------------------------------------------------------------------------------------
    def _write_status(self) -> None:
        now = time.monotonic()
        parts = {name: part.status(now) for name, part in self.parts.items()}
        shape = {name: (p["state"], p["pid"], p["restarts"], p["last_exit"], p["restart_at"] is None)
                 for name, p in parts.items()}
        if shape == self._status:
            return
        self._status = shape
        try:
            write_status(self.status_path, {"supervisor": os.getpid(), "parts": parts})
        except OSError as error:
            log.error("Cannot write the parts' status to %s: %s", self.status_path, error)

    def _stop_all(self) -> None:
        """SIGTERM every part, wait up to STOP_SECONDS for all of them, then SIGKILL what is left."""
        running = [part for part in self.parts.values() if part.process is not None]
        for part in running:
            self._forget_ready_fd(part.launch)
            part.state = "stopping"
            try:
                part.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._write_status()
        deadline = time.monotonic() + STOP_SECONDS
        while running and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.05):
                if isinstance(key.data, Part):
                    self._relay(key.data, key.fileobj)
            running = [part for part in running if part.process.poll() is None]
        for part in running:
            log.error("The %s did not stop within %.0f s: killing it", part.name, STOP_SECONDS)
            part.process.kill()
            part.process.wait()
        for part in self.parts.values():
            if part.process is not None:
                self._drain(part)
                self._forget_ready_fd(part.launch)
                part.launch.close()
                log.info("The %s stopped (%s)", part.name, describe_exit(part.process.returncode))
                part.process, part.launch, part.state = None, None, "down"
        self._write_status()
