"""The control loop: one process that makes what executors report agree with the desired state in SQL.

`tick()` runs every controller (builds, ingestions, trainings, endpoints, notebooks) once. Every backend replica runs a
scheduler, and only the one holding the scheduler lock ticks (kaos_backend.leadership: a PostgreSQL advisory
lock, or with SQLite the data directory's lock file); the others stand by and try again every second. A
scheduler that becomes the leader simply picks up every unfinished job from SQL, reattaching to running
workloads through their saved executor state. Only the leader listens for wake-ups (kaos_backend.wakeup), so a
wake-up sent on this machine reaches it whichever replica's API sent it. It ends by itself on SIGTERM/SIGINT or
when the process that started it is gone. With `--heartbeat PATH` it writes its role to that file after every
tick (and every try while standing by): how the supervisor and the health route know that the loop goes round,
and who leads (kaos_backend.part_status).
"""
import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, List, Optional

from kaos_backend import wakeup
from kaos_backend.config import Config, ConfigError
from kaos_backend.executors import engine_requests
from kaos_backend.leadership import RETRY_SECONDS, Leadership, scheduler_identity
from kaos_backend.part_status import ENGINE_FILE, write_heartbeat
from kaos_backend.scheduler_lock import scheduler_lock

STARTED_BY = os.getppid()  # read first thing: the parent may be gone by the time the scheduler is ready
log = logging.getLogger("kaos_backend.scheduler")
MIN_TICK_GAP = 0.01  # seconds


class Scheduler:
    """`Scheduler(config, leadership, heartbeat)`: without `leadership` it always leads (one process alone)."""

    def __init__(self, config: Config, leadership: Optional[Leadership] = None, heartbeat: Optional[Path] = None):
        self.config = config
        self.tasks: List[Callable[[], None]] = []
        self.leadership = leadership
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._listener: Optional[wakeup.Listener] = None
        self._last_beat: Optional[dict] = None

    def tick(self) -> None:
        """One pass over every task; a failing task is logged and does not stop the others. The tasks' engine
        requests are tracked while in flight (executors/engine_requests.py); a task whose request went unanswered
        (its controller's round ended, the ones after it skipped: the engine watch holds the workloads) goes last
        from the next tick on, so that one workload the engine hangs on does not starve the other controllers'.
        The first task (the engine watch's look, which takes the unanswered request) keeps its place."""
        waited = []
        with engine_requests.ticking():
            for index, task in enumerate(list(self.tasks)):
                before = engine_requests.timed_out()
                try:
                    task()
                except Exception as error:
                    if isinstance(error, engine_requests.EngineError) or engine_requests.is_timeout(error) \
                            or engine_requests.is_dropped(error):
                        log.error("Scheduler task %s failed: %s", getattr(task, "__name__", task), error)
                    else:
                        log.exception("Scheduler task %s failed", getattr(task, "__name__", task))
                if index and engine_requests.timed_out() not in (None, before):
                    waited.append(task)
        if waited:
            self.tasks = [task for task in self.tasks if task not in waited] + waited

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            wakeup.wake(wakeup.socket_name(self.config.data_dir))

    def run_forever(self, poll_interval: float = 1.0, parent_pid: Optional[int] = None) -> None:
        """While leading, tick every `poll_interval` seconds (at once when woken); else try to lead every
        RETRY_SECONDS; until stopped, signalled, or orphaned."""
        parent_pid = os.getppid() if parent_pid is None else parent_pid
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop())
        log.info("Scheduler started (pid %s, parent %s, executor %s)", os.getpid(), parent_pid,
                 self.config.executor)
        try:
            while not self._stop.is_set():
                if os.getppid() != parent_pid:
                    log.info("Scheduler's parent %s is gone: stopping", parent_pid)
                    break
                if self.leadership is None or self.leadership.leading():
                    listener = self._listen()
                    self.tick()
                    self._beat()
                    if listener.wait(poll_interval):
                        self._stop.wait(MIN_TICK_GAP)  # a burst of wake-ups is one tick
                else:
                    self._stop_listening()  # the leader's, wherever it runs
                    self._beat()
                    self._stop.wait(RETRY_SECONDS)
        finally:
            self._stop_listening()
            if self.leadership is not None:
                self.leadership.release()
        log.info("Scheduler stopped")

    def _listen(self) -> wakeup.Listener:
        """The wake-up listener, bound once this scheduler leads (again, while a scheduler that led before
        still holds the name)."""
        if self._listener is None or self._listener.sock is None:
            self._stop_listening()
            self._listener = wakeup.Listener(wakeup.socket_name(self.config.data_dir))
        return self._listener

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _beat(self) -> None:
        """The heartbeat: the role rewritten when it changed, else the file touched."""
        if self.heartbeat is None:
            return
        role = self.leadership.status() if self.leadership is not None else {"role": "leader"}
        try:
            write_heartbeat(self.heartbeat, role, changed=role != self._last_beat)
            self._last_beat = role
        except OSError as error:
            log.error("Cannot write the heartbeat %s: %s", self.heartbeat, error)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaos_backend.scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the backend's data directory (default: KAOS_DATA_DIR)")
    parser.add_argument("--poll-interval", type=float, default=0.25, help="seconds between ticks")
    parser.add_argument("--heartbeat", help="a file to write the scheduler's role to after every tick or try")
    parser.add_argument("--replica", help="the backend replica's public address, to name this scheduler by")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    try:
        config = Config.from_env(**({"data_dir": args.data_dir} if args.data_dir else {}))
    except ConfigError as error:
        print(f"Error - {error}", file=sys.stderr)
        return 1
    lock = scheduler_lock(config.database_url, config.data_dir, scheduler_identity(args.replica))
    scheduler = Scheduler(config, Leadership(lock), Path(args.heartbeat) if args.heartbeat else None)
    scheduler.tasks.extend(controllers(config, Path(args.heartbeat).parent if args.heartbeat else None))
    scheduler.run_forever(args.poll_interval, parent_pid=STARTED_BY)
    return 0


def controllers(config: Config, run_dir: Optional[Path] = None) -> List[Callable[[], None]]:
    """The tick functions of every controller, over one set of services of this process: first the look at the
    executor's engine (control/engine_watch.py; its status written in `run_dir` when given), then the controllers,
    those that need the engine held while it does not answer."""
    from kaos_backend.control.engine_watch import EngineWatch
    from kaos_backend.control.builds import BuildController
    from kaos_backend.control.endpoints import EndpointController
    from kaos_backend.control.ingestions import IngestionController
    from kaos_backend.control.notebooks import NotebookController
    from kaos_backend.control.trainings import TrainController
    from kaos_backend.db import Database
    from kaos_backend.services import Services

    services = Services(config, database=Database(config.database_url, create_tables=False))
    engine = EngineWatch(config, services, run_dir / ENGINE_FILE if run_dir is not None else None)
    return [engine.tick, engine.gated(BuildController(services).tick), IngestionController(services).tick,
            engine.gated(TrainController(services).tick), engine.gated(EndpointController(services).tick),
            engine.gated(NotebookController(services).tick)]


if __name__ == "__main__":
    sys.exit(main())
