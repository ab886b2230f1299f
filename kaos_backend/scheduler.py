"""The control loop: one process that makes what executors report agree with the desired state in SQL.

`tick()` runs every controller (builds, ingestions, trainings, endpoints, notebooks) once. Only one scheduler
runs per data directory (a lock file); on start it simply picks up every unfinished job from SQL, reattaching
to running workloads through their saved executor state. It ends by itself on SIGTERM/SIGINT or when the
process that started it is gone. With `--heartbeat PATH` it touches that file after every tick: how the
supervisor and the health route know that the loop goes round (kaos_backend.part_status).
"""
import argparse
import fcntl
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, List, Optional

from kaos_backend import wakeup
from kaos_backend.config import Config, ConfigError

STARTED_BY = os.getppid()  # read first thing: the parent may be gone by the time the scheduler is ready
log = logging.getLogger("kaos_backend.scheduler")
MIN_TICK_GAP = 0.01  # seconds


class Scheduler:
    def __init__(self, config: Config):
        self.config = config
        self.tasks: List[Callable[[], None]] = []
        self._stop = threading.Event()

    def tick(self) -> None:
        """One pass over every task; a failing task is logged and does not stop the others."""
        for task in list(self.tasks):
            try:
                task()
            except Exception:
                log.exception("Scheduler task %s failed", getattr(task, "__name__", task))

    def stop(self) -> None:
        self._stop.set()
        wakeup.wake(wakeup.socket_name(self.config.data_dir))

    def run_forever(self, poll_interval: float = 1.0, parent_pid: Optional[int] = None) -> None:
        """Tick every `poll_interval` seconds until stopped, signalled, or orphaned."""
        parent_pid = os.getppid() if parent_pid is None else parent_pid
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop())
        log.info("Scheduler started (pid %s, parent %s, executor %s)", os.getpid(), parent_pid,
                 self.config.executor)
        listener = wakeup.Listener(wakeup.socket_name(self.config.data_dir))
        try:
            while not self._stop.is_set():
                if os.getppid() != parent_pid:
                    log.info("Scheduler's parent %s is gone: stopping", parent_pid)
                    break
                self.tick()
                if listener.wait(poll_interval):
                    self._stop.wait(MIN_TICK_GAP)  # a burst of wake-ups is one tick
        finally:
            listener.close()
        log.info("Scheduler stopped")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaos_backend.scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the backend's data directory (default: KAOS_DATA_DIR)")
    parser.add_argument("--poll-interval", type=float, default=0.25, help="seconds between ticks")
    parser.add_argument("--heartbeat", help="a file to touch after every tick")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    try:
        config = Config.from_env(**({"data_dir": args.data_dir} if args.data_dir else {}))
    except ConfigError as error:
        print(f"Error - {error}", file=sys.stderr)
        return 1
    lock = open(config.data_dir / "scheduler.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("Another scheduler runs on %s: waiting for it to stop", config.data_dir)
        fcntl.flock(lock, fcntl.LOCK_EX)
    scheduler = Scheduler(config)
    scheduler.tasks.extend(controllers(config))
    if args.heartbeat:
        scheduler.tasks.append(heartbeat(Path(args.heartbeat)))  # last: a tick is done
    scheduler.run_forever(args.poll_interval, parent_pid=STARTED_BY)
    return 0


def heartbeat(path: Path) -> Callable[[], None]:
    """A task that sets the modification time of `path` (created if missing) to now."""
    def touch_heartbeat() -> None:
        path.touch()
    return touch_heartbeat


def controllers(config: Config) -> List[Callable[[], None]]:
    """The tick functions of every controller, over one set of services of this process."""
    from kaos_backend.control.builds import BuildController
    from kaos_backend.control.endpoints import EndpointController
    from kaos_backend.control.ingestions import IngestionController
    from kaos_backend.control.notebooks import NotebookController
    from kaos_backend.control.trainings import TrainController
    from kaos_backend.db import Database
    from kaos_backend.services import Services

    services = Services(config, database=Database(config.database_url, create_tables=False))
    return [BuildController(services).tick, IngestionController(services).tick, TrainController(services).tick,
            EndpointController(services).tick, NotebookController(services).tick]


if __name__ == "__main__":
    sys.exit(main())
