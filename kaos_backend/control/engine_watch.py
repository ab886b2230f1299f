"""Whether the engine the workloads run on answers (the Docker engine, the Kubernetes API server), as the scheduler
sees it, and what it does while it does not.

The scheduler asks the executor's kind (`Executor.engine_problem`) about once a second. While the engine does not
answer, the controllers whose every step needs it (builds, trainings, endpoints, notebooks) are held: nothing is
started, polled or stopped (a kill waits), since each step would only raise (a traceback per job per tick) and a
watcher that died meanwhile would be counted as failing. Every unfinished build and train job, every endpoint that
has not failed and every notebook that runs, gets the reason "the Docker engine does not answer since <UTC time>",
cleared once it answers again; the backend log gets one line when it stops answering and one when it answers again;
and the status file `engine.json` in the runtime directory (kaos_backend.part_status) makes GET /api/health report
the engine as a part that is down. Ingestions run on the backend's machine and go on.

An engine that answers the scheduler's look but not one of the tick's requests (an API server whose etcd is
wedged: GET /version answers, a create does not) holds the tick until the request's timeout
(executors/engine_requests.py). Meanwhile a thread of the watch writes the engine's state `waiting` (what was
asked, since when, how long the client waits at most) once the request has been in flight for NOTICE_SECONDS: the
health names the engine, and the scheduler, whose heartbeat stops meanwhile, stays up (kaos_backend.part_status).
The same thread gives every held workload that has no reason of its own the engine's: "the Docker engine has not
answered POST /v1.41/containers/create since <UTC time>" (what the health says), shown by the lists, taken off
once the request ended. It writes from its own thread while the tick waits on the engine: no tick holds a write
transaction across an engine request (control/common.py's rule), so that write never waits on the tick.
A request that timed out (or whose connection the engine closed without an answer) holds the workloads as while
the engine does not answer, for HOLD_SECONDS at first, twice as long at each timeout that follows within
RESET_SECONDS, MAX_HOLD_SECONDS at most; then they are tried again.
"""
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from sqlalchemy import or_, true, update

from kaos_backend.executors import engine_requests
from kaos_backend.executors.registry import executor_class
from kaos_backend.models import Endpoint, Job, Notebook
from kaos_backend.part_status import write_status

log = logging.getLogger("kaos_backend.control.engine_watch")

CHECK_SECONDS = 1.0
HELD_KINDS = ("build-train", "build-serve", "build-notebook", "train")
DOES_NOT_ANSWER = "does not answer since"
HAS_NOT_ANSWERED = "has not answered"  # "<engine> has not answered <request> since <time>": a request waiting
ENDED_NOTEBOOK_STATES = ("PIPELINE_FAILURE", "PIPELINE_STANDBY")  # nothing runs: nothing to hold
NOTICE_SECONDS = 2.0     # a tick's request in flight this long is said in the engine's status
WATCH_SECONDS = 0.5      # how often the watch's thread looks at the tick's requests
HOLD_SECONDS = 5.0       # the workloads held after a request timed out, at first
MAX_HOLD_SECONDS = 60.0
RESET_SECONDS = 300.0    # a timeout this long after the last one holds for HOLD_SECONDS again


class EngineWatch:
    """`tick()` first in every scheduler tick; `gated(task)` a controller's tick that runs only while the engine
    answers. `status_file`: where the health route reads the engine's state (None: nowhere)."""

    def __init__(self, config, services, status_file: Optional[Path] = None):
        self.config = config
        self.services = services
        self.status_file = status_file
        self.kind = executor_class(config.executor)
        self.down_since: Optional[float] = None  # epoch seconds
        self._next_check = 0.0
        self._held = True   # the first look clears what a scheduler before this one wrote
        self._written = False
        self._status_lock = threading.Lock()
        self._status: Optional[dict] = None            # as the tick last said it
        self._shown: Optional[engine_requests.Request] = None  # the request in flight the status file says
        self._watcher: Optional[threading.Thread] = None
        self._closed = threading.Event()
        self._hold_until = 0.0      # monotonic: the workloads held after a request timed out, until then
        self._hold_seconds = 0.0
        self._last_timeout = None   # monotonic
        self._timeout_problem: Optional[str] = None
        self._problem: Optional[str] = None

    def reason(self) -> Optional[str]:
        """"the Docker engine does not answer since 2026-12-01 01:02:03 UTC" while it does not; else None."""
        if self.down_since is None:
            return None
        moment = datetime.fromtimestamp(self.down_since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.kind.engine_name} {DOES_NOT_ANSWER} {moment}"

    def gated(self, task: Callable[[], None]) -> Callable[[], None]:
        def run_while_answering() -> None:
            if self.answering:
                task()
        run_while_answering.__name__ = getattr(task, "__qualname__", "task")
        return run_while_answering

    @property
    def answering(self) -> bool:
        """The engine answers, and none of this tick's requests timed out."""
        return self.down_since is None and engine_requests.timed_out() is None

    def tick(self) -> None:
        """Ask the engine (at most once every CHECK_SECONDS); on a change, say so in the backend log and the
        status file; hold the workloads' reasons while it does not answer (or after one of the tick's requests
        timed out), clear them once it does."""
        timed_out = engine_requests.take_timed_out()
        if self.kind.engine_name is None:
            return
        if timed_out is not None:
            self._hold_after(timed_out)
        elif time.monotonic() < self._next_check:
            return
        self._start_watching()
        self._next_check = time.monotonic() + CHECK_SECONDS
        held = time.monotonic() < self._hold_until
        problem = self._timeout_problem if held else self.kind.engine_problem(self.config)
        if problem is not None and self.down_since is None:
            self.down_since = time.time()
            log.error("%s does not answer (%s): no workload is started, watched or stopped until it does",
                      self.kind.engine_name, problem)
            self._write_status(problem)
        elif problem is not None and problem != self._problem:
            self._write_status(problem)   # down still, for another cause
        elif problem is None and self.down_since is not None:
            log.info("%s answers again (after %.0f s)", self.kind.engine_name, time.time() - self.down_since)
            self.down_since = None
            answers_again = getattr(self.kind, "engine_answers_again", None)  # connections to make again
            if answers_again is not None:  # after a hold for a dropped connection too: owed work (claims)
                try:
                    answers_again(self.config)
                except Exception:  # noqa: BLE001 - a bug there must not stop the release of the workloads
                    log.exception("%s answers again: reconnecting failed", self.kind.engine_name)
            self._write_status(None)
        elif not self._written:
            self._write_status(problem)
        if self.down_since is not None:
            self._hold(self.reason())
        elif self._held:
            self._release()

    def _hold_after(self, timed_out: engine_requests.TimedOut) -> None:
        """The workloads held after a request of the tick timed out: HOLD_SECONDS, doubled at each timeout within
        RESET_SECONDS of the last, MAX_HOLD_SECONDS at most."""
        moment = time.monotonic()
        recent = self._last_timeout is not None and moment - self._last_timeout < RESET_SECONDS
        self._hold_seconds = min(self._hold_seconds * 2, MAX_HOLD_SECONDS) if recent and self._hold_seconds \
            else HOLD_SECONDS
        self._last_timeout, self._hold_until = moment, moment + self._hold_seconds
        self._timeout_problem = (f"it {timed_out.said()} ({timed_out.error}); asked again in "
                                 f"{self._hold_seconds:.0f} s")
        log.error("%s %s (%s): the workloads are held for %.0f s", self.kind.engine_name, timed_out.said(),
                  timed_out.error, self._hold_seconds)

    def _write_status(self, problem: Optional[str]) -> None:
        self._written = True
        self._problem = problem
        status = {"state": "up", "name": self.kind.engine_name, "since": time.time()}
        if problem is not None:
            status.update(state="down", since=self.down_since, reason=self.reason(), error=problem)
        with self._status_lock:
            self._status = status
            self._write_file()

    def _write_file(self) -> None:
        """The status file: the tick's status, or `waiting` while one of its requests has been in flight for
        NOTICE_SECONDS. Under the status lock."""
        if self.status_file is None or self._status is None:
            return
        status, request = self._status, self._shown
        if request is not None:
            status = {"state": "waiting", "name": self.kind.engine_name, "since": request.since,
                      "reason": self._waiting_reason(request),
                      "error": f"the scheduler waits for its answer {request.bound:.0f} s at most",
                      "waiting": {"what": request.what, "since": request.since, "bound": request.bound}}
        try:
            write_status(self.status_file, status)
        except OSError as error:
            log.error("Cannot write the engine's status %s: %s", self.status_file, error)

    def _start_watching(self) -> None:
        """The thread that says in the status file when a request of the tick waits (once, with a status file)."""
        if self._watcher is None and self.status_file is not None:
            self._watcher = threading.Thread(target=self._watch_requests, name="engine-requests", daemon=True)
            self._watcher.start()

    def _waiting_reason(self, request: engine_requests.Request) -> str:
        """"the Docker engine has not answered POST /containers/create since 2026-12-01 01:02:03 UTC"."""
        moment = datetime.fromtimestamp(request.since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.kind.engine_name} {HAS_NOT_ANSWERED} {request.what} since {moment}"

    def _waiting_pattern(self) -> str:
        """What `_waiting_reason`s are like (SQL LIKE)."""
        return f"{self.kind.engine_name} {HAS_NOT_ANSWERED} % since %"

    def close(self) -> None:
        """Stop the thread that watches the tick's requests (the scheduler's process never needs to: it ends)."""
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)

    def _watch_requests(self) -> None:
        said = None  # the request whose waiting reason the workloads have
        while not self._closed.wait(WATCH_SECONDS):
            request = engine_requests.waiting(NOTICE_SECONDS)
            if request != self._shown:
                with self._status_lock:
                    self._shown = request
                    self._write_file()
            if request != said:
                try:
                    self._say_waiting(request)
                    said = request
                except Exception as error:  # noqa: BLE001 - tried again at the next look
                    log.warning("The workloads' reasons could not say that %s waits: %s", self.kind.engine_name,
                                error)

    def _say_waiting(self, request: Optional[engine_requests.Request]) -> None:
        """The reason of a request waiting off the workloads that have it, `request`'s on every held workload that
        has no reason (None: none)."""
        with self.services.db.session_scope() as session:
            self._clear(session, self._waiting_pattern(), finished_too=True)
            if request is not None:
                self._give(session, self._waiting_reason(request), lambda column: column.is_(None))

    def _hold(self, reason: str) -> None:
        """The reason on every held workload that does not have it yet."""
        with self.services.db.session_scope() as session:
            self._give(session, reason, lambda column: or_(column.is_(None), column != reason))
        self._held = True

    @staticmethod
    def _give(session, reason: str, wanted: Callable) -> None:
        """`reason` on every held workload whose reason column is `wanted`."""
        session.execute(update(Job).where(Job.kind.in_(HELD_KINDS), Job.finished_at.is_(None), wanted(Job.reason))
                        .values(reason=reason))
        session.execute(update(Endpoint).where(Endpoint.state != "PIPELINE_FAILURE", wanted(Endpoint.reason))
                        .values(reason=reason))
        session.execute(update(Notebook).where(Notebook.state.notin_(ENDED_NOTEBOOK_STATES), wanted(Notebook.reason))
                        .values(reason=reason))

    def _release(self) -> None:
        """The engine's reasons (it does not answer; a request waits) off every workload that still has them."""
        with self.services.db.session_scope() as session:
            self._clear(session, f"{self.kind.engine_name} {DOES_NOT_ANSWER} %")
            self._clear(session, self._waiting_pattern(), finished_too=True)
        self._held = False

    @staticmethod
    def _clear(session, pattern: str, finished_too: bool = False) -> None:
        """The reasons like `pattern` off the workloads (the jobs that ended too with `finished_too`: one may end
        between its engine's answer and the look that takes the waiting reason off)."""
        ended = true() if finished_too else Job.finished_at.is_(None)
        session.execute(update(Job).where(ended, Job.reason.like(pattern)).values(reason=None))
        session.execute(update(Endpoint).where(Endpoint.reason.like(pattern)).values(reason=None))
        session.execute(update(Notebook).where(Notebook.reason.like(pattern)).values(reason=None))
