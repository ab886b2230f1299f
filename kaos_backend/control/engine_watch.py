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
"""
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from sqlalchemy import or_, update

from kaos_backend.executors.registry import executor_class
from kaos_backend.models import Endpoint, Job, Notebook
from kaos_backend.part_status import write_status

log = logging.getLogger("kaos_backend.control.engine_watch")

CHECK_SECONDS = 1.0
HELD_KINDS = ("build-train", "build-serve", "build-notebook", "train")
DOES_NOT_ANSWER = "does not answer since"
ENDED_NOTEBOOK_STATES = ("PIPELINE_FAILURE", "PIPELINE_STANDBY")  # nothing runs: nothing to hold


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

    @property
    def answering(self) -> bool:
        return self.down_since is None

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

    def tick(self) -> None:
        """Ask the engine (at most once every CHECK_SECONDS); on a change, say so in the backend log and the
        status file; hold the workloads' reasons while it does not answer, clear them once it does."""
        if self.kind.engine_name is None or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + CHECK_SECONDS
        problem = self.kind.engine_problem(self.config)
        if problem is not None and self.down_since is None:
            self.down_since = time.time()
            log.error("%s does not answer (%s): no workload is started, watched or stopped until it does",
                      self.kind.engine_name, problem)
            self._write_status(problem)
        elif problem is None and self.down_since is not None:
            log.info("%s answers again (after %.0f s)", self.kind.engine_name, time.time() - self.down_since)
            self.down_since = None
            answers_again = getattr(self.kind, "engine_answers_again", None)  # connections to make again
            if answers_again is not None:
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

    def _write_status(self, problem: Optional[str]) -> None:
        self._written = True
        if self.status_file is None:
            return
        status = {"state": "up", "name": self.kind.engine_name, "since": time.time()}
        if problem is not None:
            status.update(state="down", since=self.down_since, reason=self.reason(), error=problem)
        try:
            write_status(self.status_file, status)
        except OSError as error:
            log.error("Cannot write the engine's status %s: %s", self.status_file, error)

    def _hold(self, reason: str) -> None:
        """The reason on every held workload that does not have it yet."""
        with self.services.db.session_scope() as session:
            session.execute(update(Job).where(
                Job.kind.in_(HELD_KINDS), Job.finished_at.is_(None),
                or_(Job.reason.is_(None), Job.reason != reason)).values(reason=reason))
            session.execute(update(Endpoint).where(
                Endpoint.state != "PIPELINE_FAILURE", or_(Endpoint.reason.is_(None), Endpoint.reason != reason))
                .values(reason=reason))
            session.execute(update(Notebook).where(
                Notebook.state.notin_(ENDED_NOTEBOOK_STATES), or_(Notebook.reason.is_(None), Notebook.reason != reason))
                .values(reason=reason))
        self._held = True

    def _release(self) -> None:
        """The engine's reason off every workload that still has it."""
        pattern = f"{self.kind.engine_name} {DOES_NOT_ANSWER} %"
        with self.services.db.session_scope() as session:
            session.execute(update(Job).where(Job.finished_at.is_(None), Job.reason.like(pattern))
                            .values(reason=None))
            session.execute(update(Endpoint).where(Endpoint.reason.like(pattern)).values(reason=None))
            session.execute(update(Notebook).where(Notebook.reason.like(pattern)).values(reason=None))
        self._held = False
