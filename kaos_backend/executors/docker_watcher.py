"""The watcher of one Docker workload: `python -m kaos_backend.executors.docker_watcher SPEC.json --lock-fd N`,
started by the docker executor in a session of its own, so that it outlives the backend (the local executor's
runner.py is its counterpart; here the container is the workload and the watcher only watches it).

container  follows the container's output from the engine into the workload's log (docker_output.py), and
           resumes after a broken stream (an engine restart, a long silence) from the last line it wrote; a line
           that goes on past MAX_LINE bytes is logged in pieces as it comes. Once
           the container stopped: the log's last record says how it ended (its exit code, the signal that ended
           its main process, the engine's OOMKilled, or a stop on request: the stop file the executor writes
           first), the container is removed, and the exit record (outcome.py) is written; the scheduler is woken.
           A container gone without an end (removed by someone else: `docker rm -f` kills it on its way out)
           ends the watcher with no record: the executor then reports the workload vanished.
build      runs the build through the engine (the watcher holds it: its connection closing cancels the build),
           writing each line of the engine's output as it comes. The engine's error line (a failing step's "The
           command '/bin/sh -c ...' returned a non-zero code: 1") is written as it came and kept as the record's
           `error`, which the executor gives as the reason. SIGTERM cancels the build, as a stop on request.

The watcher holds the lock of the lock file the executor gave it (`--lock-fd`, locked before it started) for its
whole life: "the watcher runs" is read from that lock, which no recycled pid can fake.

While the engine does not answer (dockerd restarting: its socket is gone even before its containers stop), the
watcher waits for it, ENGINE_PATIENCE seconds at most, whatever it was doing: making its client (a watcher started
again meanwhile), following, removing the container once it ended (the end is recorded even when that removal
never succeeds); the log says when the engine stops answering and when it answers again.

SPEC (JSON): {"mode": "container" | "build", "log", "exit_file", "stop_file", "cursor_file", "what": "training",
"memory": "50Mi" | null, "max_log_bytes", "notify": the scheduler's wake-up socket or null, "container": its id
(container mode), "build": docker_spec.build_arguments (build mode), "push": true to push the image built to
its registry (the kubernetes executor's builds, with KAOS_REGISTRY)}
"""
import argparse
import json
import os
import signal
import sys
import time
import traceback
from typing import Dict, Optional

from kaos_backend import wakeup
from kaos_backend.executors import docker_client, docker_spec, outcome
from kaos_backend.executors.docker_output import MAX_LINE, Cursor, LogWriter, engine_line, local_time, strip_ansi

ENGINE_PATIENCE = 300.0  # seconds the engine may not answer before the watcher gives up (the executor starts another)
RETRY_SECONDS = 1.0
WAIT_SECONDS = 30        # for the engine to report a container stopped once its output ended
CANCELLED_STATUS = -signal.SIGTERM


class Cancelled(Exception):
    """SIGTERM: the build is stopped on request."""


class Watcher:
    def __init__(self, spec: Dict):
        self.spec = spec
        self.what = spec.get("what") or "workload"
        self.log = LogWriter(spec["log"], spec.get("max_log_bytes"))
        self.errors = docker_client.errors()
        self.away = False  # the engine did not answer the last time it was asked (the log said so once)
        # Started again while the engine restarts (its socket gone), the watcher waits for it here as it does for a
        # broken log stream: failing at once would spend the executor's respawns in a second.
        self.client = self.patiently(lambda: docker_client.engine(docker_client.STREAM_TIMEOUT))

    def run(self) -> int:
        return self.watch_build() if self.spec["mode"] == "build" else self.watch_container()

    def requested(self) -> bool:
        return os.path.exists(self.spec["stop_file"])

    def patiently(self, call):
        """`call()`, tried again every RETRY_SECONDS while the engine does not answer, for ENGINE_PATIENCE seconds at
        most (then its error is raised); the log says once that the engine does not answer."""
        since = None
        while True:
            try:
                answer = call()
            except Exception as error:  # noqa: BLE001 - the engine restarting, a connection refused or reset
                if not _engine_trouble(error):
                    raise
                since = since or time.monotonic()
                self.engine_away(error)
                if time.monotonic() - since > ENGINE_PATIENCE:
                    raise
                time.sleep(RETRY_SECONDS)
                continue
            self.engine_back()
            return answer

    def engine_away(self, error: BaseException) -> None:
        """The log says once, for each time the engine stops answering, that the watcher waits for it."""
        if not self.away:
            self.away = True
            self.log.record(f"kaos: the Docker engine does not answer ({_first_line(error)}): waiting for it, "
                            f"{ENGINE_PATIENCE:g}s at most")

    def engine_back(self) -> None:
        if self.away:
            self.away = False
            self.log.record("kaos: the Docker engine answers again")

    def finish(self, record: Dict) -> None:
        note = self.log.dropped_note()
        if note:
            self.log.record(note)
        self.log.record(f"kaos: the {self.what} ended: {describe(record)}")
        outcome.write_record(self.spec["exit_file"], record)
        wakeup.wake(self.spec.get("notify"))

    # -- a container ----------------------------------------------------------------------------------------
    def watch_container(self) -> int:
        state = self.follow(Cursor(self.spec["cursor_file"]))
        if state is None:
            return 0  # gone without an end: no record (the executor reports it vanished)
        record = outcome.record_for(docker_spec.exit_status(int(state.get("ExitCode") or 0)),
                                    oom_kills=1 if state.get("OOMKilled") else 0, memory=self.spec.get("memory"),
                                    requested=self.requested(), last_line=self.log.last_line)
        try:  # the engine may go away right after the end (a dockerd stopping stops its containers first)
            self.patiently(self.remove_container)
        except Exception as error:  # noqa: BLE001 - the end is known: it is recorded whatever the removal did
            if not _engine_trouble(error):
                raise
            self.log.record(f"kaos: the container could not be removed ({_first_line(error)}); "
                            "kaos destroy removes it")
        self.finish(record)
        return 0

    def follow(self, cursor: Cursor) -> Optional[Dict]:
        """Write the container's output until it stopped; its State then, or None when it is gone."""
        unreachable_since = None
        while True:
            try:
                container = self.client.containers.get(self.spec["container"])
                self.engine_back()
                self._copy_output(container, cursor)
                state = self._stopped_state(container)
                if state is not None:
                    return state
                unreachable_since = None  # the stream ended with the container running: follow it again
            except self.errors.NotFound:
                return None
            except Exception as error:  # noqa: BLE001 - the engine restarting, a connection reset, a read timeout
                if not _engine_trouble(error):
                    raise
                unreachable_since = unreachable_since or time.monotonic()
                self.engine_away(error)
                if time.monotonic() - unreachable_since > ENGINE_PATIENCE:
                    raise
                time.sleep(RETRY_SECONDS)

    def _copy_output(self, container, cursor: Cursor) -> None:
        since = cursor.since()
        options = {"since": since} if since else {}
        pending, pending_time = b"", None
        # Skipped: what an earlier follow wrote, as the cursor said when this one began (the engine's pieces of one
        # long line share a timestamp: those after a piece this follow wrote are not written yet).
        written = cursor.value
        for frame in container.logs(stream=True, follow=True, timestamps=True, **options):
            nanoseconds, text = engine_line(frame)
            if nanoseconds is not None and written is not None and nanoseconds <= written:
                continue
            pending += text
            pending_time = pending_time or nanoseconds
            ended = pending.endswith(b"\n")
            if ended or len(pending) >= MAX_LINE:  # a line that goes on is logged in pieces as it comes
                self.log.output(pending[:-1] if ended else pending, local_time(pending_time))
                if nanoseconds is not None:
                    cursor.advance(nanoseconds)
                pending, pending_time = b"", None
        if pending:
            self.log.output(pending, local_time(pending_time))

    def _stopped_state(self, container) -> Optional[Dict]:
        """The container's State once it is stopped (its output ended: it should be), else None."""
        try:
            container.wait(timeout=WAIT_SECONDS)
        except Exception as error:  # noqa: BLE001 - still running after all (read timeout)
            if not _engine_trouble(error):
                raise
        container.reload()
        state = container.attrs.get("State") or {}
        if state.get("Status") == "removing" and not self.requested():
            raise self.errors.NotFound("removed by someone else")  # killed on its way out: gone, not ended
        return None if state.get("Running") or state.get("Restarting") else state

    def remove_container(self) -> None:
        try:
            self.client.api.remove_container(self.spec["container"], force=True, v=True)
        except self.errors.NotFound:
            pass
        except self.errors.APIError as error:  # e.g. "removal already in progress": a stop removing it too
            if "in progress" not in str(error):
                raise

    # -- a build --------------------------------------------------------------------------------------------
    def watch_build(self) -> int:
        signal.signal(signal.SIGTERM, _cancel)
        error, requested, pending = None, False, ""
        try:
            for chunk in self.client.api.build(**self.spec["build"]):
                if "stream" in chunk:
                    *lines, pending = (pending + chunk["stream"]).split("\n")
                    for line in lines:
                        self._build_line(line)
                    if len(pending) >= MAX_LINE:  # a line that goes on is logged in pieces as it comes
                        self._build_line(pending)
                        pending = ""
                elif "error" in chunk:
                    error = strip_ansi(str(chunk["error"])).strip() or "the build failed"
                elif chunk.get("status"):
                    self._build_line(" ".join(str(chunk[key]) for key in ("id", "status", "progress")
                                              if chunk.get(key)))
        except Cancelled:
            requested = True
        except Exception as failure:  # noqa: BLE001 - the engine refused or broke the build
            if not _engine_trouble(failure):
                raise
            error = f"the Docker engine could not build the image: {_first_line(failure)}"
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._build_line(pending)
        if error:
            self.log.output(error.encode())
        elif not requested and not self._image_exists():
            error = f"the build ended without the image {self.spec['build']['tag']}"
            self.log.output(error.encode())
        elif not requested and self.spec.get("push"):
            error = self.push(self.spec["build"]["tag"])
        status = CANCELLED_STATUS if requested else 1 if error else 0
        record = outcome.record_for(status, requested=requested, last_line=self.log.last_line)
        if error and not requested:
            record["error"] = error
        self.finish(record)
        return 0

    def push(self, reference: str) -> Optional[str]:
        """Push the image `reference` (`<registry>/<name>:<tag>`) with the engine's credentials for its registry,
        its progress into the log; the error line, or None once pushed."""
        repository, _, tag = reference.rpartition(":")
        if "/" in tag or not repository:
            repository, tag = reference, "latest"
        self.log.record(f"kaos: pushing the image {reference}")
        error = None
        try:
            for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    error = strip_ansi(str(chunk["error"])).strip() or "the push failed"
                elif chunk.get("status") and not chunk.get("progress"):
                    self._build_line(" ".join(str(chunk[key]) for key in ("id", "status") if chunk.get(key)))
        except Exception as failure:  # noqa: BLE001 - the engine refused or broke the push
            if not _engine_trouble(failure):
                raise
            error = _first_line(failure)
        if error:
            error = f"the image could not be pushed to its registry: {error}"
            self.log.output(error.encode())
        return error

    def _build_line(self, line: str) -> None:
        if line.strip():
            self.log.output(line.encode("utf-8", errors="replace"), colours=False)

    def _image_exists(self) -> bool:
        try:
            self.client.images.get(self.spec["build"]["tag"])
        except self.errors.ImageNotFound:
            return False
        return True


def describe(record: Dict) -> str:
    """How the workload ended, in words: a build's engine error line as it is, else outcome.describe."""
    return record.get("error") or outcome.describe(record)


def _cancel(_signum, _frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Cancelled()


def _engine_trouble(error: BaseException) -> bool:
    """An error of the engine or of the connection to it (as opposed to a bug of ours)."""
    import requests
    return isinstance(error, (docker_client.errors().DockerException, requests.RequestException, OSError))


def _first_line(error: BaseException) -> str:
    text = strip_ansi(str(error)).strip()
    return (text.splitlines() or [type(error).__name__])[0][:500]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaos_backend.executors.docker_watcher")
    parser.add_argument("spec")
    parser.add_argument("--lock-fd", type=int, required=True, help="the locked lock file, held for life")
    args = parser.parse_args(argv)
    os.fstat(args.lock_fd)  # held open (never closed) until the watcher exits
    with open(args.spec) as handle:
        spec = json.load(handle)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        return Watcher(spec).run()
    except Exception as error:  # noqa: BLE001 - one record in the log; the traceback in the watcher's own file
        traceback.print_exc()
        LogWriter(spec["log"]).record(f"kaos: the watcher of this {spec.get('what') or 'workload'} failed: "
                                      f"{type(error).__name__}: {_first_line(error)}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
