"""One workload of the docker executor as the executor keeps it: its state (what `get_state` returns: the container's
id, the watcher's pid, the paths of its files) and the files beside its log, `<log's directory>/<workload>.*`:

    .exit        the exit record (outcome.py), written by the watcher once the workload ended
    .stop        made by `stop` before it stops the workload: the end was requested
    .cursor      the engine time of the last line the watcher wrote (docker_output.Cursor)
    .watch.json  the watcher's spec (docker_watcher.py); .watch.lock its lock; .watch.err its own errors
    .respawns    how many watchers were started again for the container

its container on the engine, and its watcher process: started in a session of its own with the lock taken here and
handed on, so "it runs" is "its lock is held" from the first moment, whoever asks (another executor, after a
backend restart)."""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from kaos_backend.executors import docker_client, outcome
from kaos_backend.executors.local_process import RUNNER_ENV_NAMES, is_running, start_ticks
from kaos_backend.file_locks import lock_held, try_lock

SUFFIXES = {"exit_path": ".exit", "stop_path": ".stop", "cursor_path": ".cursor", "watch_path": ".watch.json",
            "lock_path": ".watch.lock", "errors_path": ".watch.err", "respawns_path": ".respawns"}
WATCHER_MODULE = "kaos_backend.executors.docker_watcher"


class WatchedWorkload:
    """A workload's state (JSON-able, `state`) and what is done with its files and its watcher."""

    def __init__(self, state: dict):
        self.state = state
        self.process: Optional[subprocess.Popen] = None  # the watcher, while this process is its parent

    @classmethod
    def begin(cls, kind: str, workload: str, log: str, home: Path, memory: Optional[str],
              fresh: bool = True) -> "WatchedWorkload":
        """A new workload named `workload` whose log (named `log`) is in the directory `home`; the files an
        earlier workload of that name left are cleared when `fresh` (not when its container is adopted: its
        watcher may be at work)."""
        state = {"kind": kind, "workload": workload, "log": log, "container": None, "memory": memory}
        state.update({key: str(home / f"{workload}{suffix}") for key, suffix in SUFFIXES.items()})
        for key in ("exit_path", "stop_path", "cursor_path", "respawns_path") if fresh else ():
            Path(state[key]).unlink(missing_ok=True)
        return cls(state)

    @staticmethod
    def ended_before(home: Path, workload: str) -> bool:
        """An earlier workload named `workload` ended, its end recorded (its files not cleared by a start since)."""
        return (home / f"{workload}{SUFFIXES['exit_path']}").exists()

    @property
    def kind(self) -> str:
        return self.state["kind"]

    @property
    def container(self) -> Optional[str]:
        return self.state.get("container")

    # -- the end --------------------------------------------------------------------------------------------
    def record(self) -> Optional[dict]:
        return outcome.read_record(self.state["exit_path"])

    def write_record(self, record: dict) -> None:
        outcome.write_record(self.state["exit_path"], record)

    def request_stop(self) -> None:
        Path(self.state["stop_path"]).touch()

    # -- the container --------------------------------------------------------------------------------------
    def container_exists(self) -> bool:
        """The workload's container is on the engine (and not being removed)."""
        try:
            found = docker_client.engine().api.inspect_container(self.container)
        except docker_client.errors().NotFound:
            return False
        return (found.get("State") or {}).get("Status") != "removing"

    def remove_container(self) -> None:
        """Remove the container (killing it if it runs); gone already is not an error."""
        if not self.container:
            return
        errors = docker_client.errors()
        try:
            docker_client.engine().api.remove_container(self.container, force=True, v=True)
        except errors.NotFound:
            pass
        except errors.APIError as error:  # "removal already in progress": the watcher removes it
            if "in progress" not in str(error):
                raise

    # -- the watcher ----------------------------------------------------------------------------------------
    def watch(self, spec: dict) -> None:
        """Write the watcher's spec (docker_watcher.py) and start it."""
        Path(self.state["watch_path"]).write_text(json.dumps(spec))
        self.spawn()

    def spawn(self) -> bool:
        """Start the watcher of the spec written by `watch` (False when one runs already)."""
        fd = try_lock(self.state["lock_path"])
        if fd is None:
            return False
        try:
            env = {key: os.environ[key] for key in RUNNER_ENV_NAMES if key in os.environ}
            env.update(docker_client.engine_environment())
            watch_path = Path(self.state["watch_path"])
            with open(self.state["errors_path"], "ab") as errors:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", WATCHER_MODULE, str(watch_path), "--lock-fd", str(fd)], pass_fds=(fd,),
                    cwd=str(watch_path.parent), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=errors, start_new_session=True)
            self.state.update(watcher_pid=self.process.pid, watcher_ticks=start_ticks(self.process.pid))
            return True
        finally:
            os.close(fd)  # the watcher holds the lock now

    def alive(self) -> bool:
        """The watcher runs (its lock is held)."""
        if self.process is not None:
            self.process.poll()  # reap it once it ended
        return lock_held(self.state["lock_path"])

    def signal(self, number: int) -> None:
        """Send the watcher signal `number`, if it runs (the pid checked against its start time)."""
        pid = self.state.get("watcher_pid")
        if pid and is_running(pid, self.state.get("watcher_ticks")) and self.alive():
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass

    def respawns(self, add: bool = False) -> int:
        """How many watchers were started again for the container (before this one more, with `add`)."""
        path = Path(self.state["respawns_path"])
        done = int(path.read_text() or 0) if path.exists() else 0
        if add:
            path.write_text(str(done + 1))
        return done
