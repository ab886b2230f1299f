"""Endpoints: once the serve image is built, run `./serve` with the model's files beside it, watch it become
ready, restart it with backoff when it exits, give up after repeated failed starts, and remove it (processes and
files) when killed.

An endpoint is PIPELINE_RUNNING only once it is ready: its `GET /ping` answers 200, or, for a bundle without
`/ping` (404), it accepts connections and has stayed up `STABLE_SECONDS` (the probe runs often at first, then
less and less; the reason says what it waits for). The probe goes to the unix socket the endpoint was offered
(`KAOS_SOCKET`) once that file exists, else to its TCP host and port: the address its executor's `start`
returned, stored on its row (`Endpoint.host`, `port`, `socket`). An exit before it ever
became ready, or not being ready `endpoint_start_timeout` seconds after its start (it is stopped then), is a
failed start: after `MAX_FAILURES` of them in a row it is PIPELINE_FAILURE with the last exit's reason, and is
not restarted again (a new `kaos serve deploy` is the way out). An endpoint that was ready and then exits is
restarted (PIPELINE_RESTARTING), with exponential backoff.
"""
import http.client
import logging
import os
import shutil
import socket
import time
from datetime import timedelta
from typing import Dict, Optional

from kaos_model import JobState, PipelineState
from sqlalchemy import select

from kaos_backend.control.common import (VANISHED, Controller, Preamble, advance_each, end_reason, load, log_of,
                                         now, reading, reattached, update)
from kaos_backend.control.hints import script_hints
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import Address, Executor, WorkloadSpec, endpoint_log_name
from kaos_backend.models import Bundle, Endpoint, Job
from kaos_backend.services.inference import endpoint_dir
from kaos_backend.untrusted import copy_tree, is_real_dir, is_regular

log = logging.getLogger("kaos_backend.control.endpoints")

MAX_FAILURES = 5          # exits in a row without ever becoming ready → PIPELINE_FAILURE
MAX_BACKOFF_SECONDS = 30
STABLE_SECONDS = 5.0      # a bundle without /ping is ready once it accepts connections this long after its start
PROBE_TIMEOUT = 0.5
PROBE_INTERVALS = (0.25, 5.0)  # the readiness probe's first interval, growing by half each time up to the second
RUNNING = PipelineState.PIPELINE_RUNNING.value
FAILURE = PipelineState.PIPELINE_FAILURE.value


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client's connection to a server on the unix socket `path` (Host: localhost)."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def ping_status(host: str, port: int, timeout: float = PROBE_TIMEOUT, unix: Optional[str] = None) -> Optional[int]:
    """The HTTP status of `GET /ping` on the endpoint (on the unix socket `unix` when given, else at host:port),
    or None when it does not answer."""
    connection = UnixHTTPConnection(unix, timeout) if unix else http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/ping", headers={"User-Agent": "kaos-readiness-probe"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def readiness(status: Optional[int], started: float) -> Optional[str]:
    """None when an endpoint whose `GET /ping` answered `status` (None: no answer) is ready, else what it waits
    for, in words."""
    if status == 200 or (status == 404 and time.time() - started >= STABLE_SECONDS):
        return None
    if status is None:
        return "it does not accept connections yet"
    if status == 404:
        return f"no /ping: it must accept connections for {STABLE_SECONDS:g}s"
    return f"GET /ping answered {status}"


class Probes:
    """When each endpoint's next readiness probe is due: soon after a start, then less and less often."""

    def __init__(self):
        self._next: Dict[str, tuple] = {}  # name -> (monotonic time of the next probe, interval)

    def due(self, name: str) -> bool:
        entry = self._next.get(name)
        if entry is not None and time.monotonic() < entry[0]:
            return False
        interval = min(PROBE_INTERVALS[1], entry[1] * 1.5) if entry else PROBE_INTERVALS[0]
        self._next[name] = (time.monotonic() + interval, interval)
        return True

    def forget(self, name: str) -> None:
        self._next.pop(name, None)


def _aware(moment):
    from datetime import timezone
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


class EndpointController(Controller):
    def __init__(self, services):
        super().__init__(services)
        self.probes = Probes()

    def tick(self) -> None:
        with reading(self.services) as session:
            names = list(session.scalars(select(Endpoint.name).where(
                (Endpoint.desired == "kill") | (Endpoint.state != FAILURE))))
        advance_each(names, self.advance, self.retries, self.give_up, log, "Endpoint")

    def advance(self, name: str) -> None:
        endpoint = load(self.services, Endpoint, name)
        if endpoint is None:
            return
        executor = reattached(self.config, endpoint.executor_state)
        if endpoint.desired == "kill":
            self._remove(endpoint, executor)
        elif executor is None:
            if endpoint.state != FAILURE:
                self._start_when_built(endpoint)
        else:
            code = executor.poll()
            if code is not None:
                self.probes.forget(name)
                self._exited(endpoint, code, executor)
            elif endpoint.state != RUNNING:
                self._probe(endpoint, executor)

    def _probe(self, endpoint: Endpoint, executor: Executor) -> None:
        """Is the starting endpoint ready yet? RUNNING when it is; the reason says what it waits for; a failed
        start when it is not ready `endpoint_start_timeout` seconds after its start (KAOS_ENDPOINT_START_TIMEOUT)."""
        if not self.probes.due(endpoint.name):
            return
        started = endpoint.executor_state.get("started", 0)
        unix = endpoint.socket if endpoint.socket and os.path.exists(endpoint.socket) else None  # else over TCP
        waiting = readiness(ping_status(endpoint.host, endpoint.port, unix=unix), started)
        same = lambda row: row.executor_state == endpoint.executor_state  # noqa: E731
        if waiting is None:
            self.probes.forget(endpoint.name)
            update(self.services, Endpoint, endpoint.name, {"state": RUNNING, "failures": 0, "reason": None},
                   only_if=same)
        elif time.time() - started > self.config.endpoint_start_timeout:
            self.probes.forget(endpoint.name)
            executor.stop(now=True)
            self._exited(endpoint, executor.poll() or VANISHED, executor,
                         f"not ready {self.config.endpoint_start_timeout:g}s after its start ({waiting}): stopped")
        elif endpoint.reason != f"waiting to be ready: {waiting}":
            update(self.services, Endpoint, endpoint.name, {"reason": f"waiting to be ready: {waiting}"},
                   only_if=same)

    def _remove(self, endpoint: Endpoint, executor: Optional[Executor]) -> None:
        if executor is not None:
            executor.stop()
        with self.services.db.session_scope() as session:
            row = session.get(Endpoint, endpoint.name)
            if row is not None:
                session.delete(row)
        shutil.rmtree(endpoint_dir(self.config.data_dir, endpoint.name), ignore_errors=True)

    def _exited(self, endpoint: Endpoint, code: int, executor: Executor, why: Optional[str] = None) -> None:
        failures = 1 if endpoint.state == RUNNING else endpoint.failures + 1
        reason = f"the serve process ended: {why or end_reason(executor, code)}"
        ended = [f"kaos: the endpoint {why}"] if why else \
            [f"kaos: the endpoint ended: {end_reason(executor, code)}"] if code == VANISHED else []
        executor.clear_state()  # the next start is a new workload
        changes = {"failures": failures, "restarts": endpoint.restarts + 1,
                   "executor_state": executor.get_state() or None, "reason": reason}
        if failures >= MAX_FAILURES:
            changes["state"] = FAILURE
            note = (f"kaos: the endpoint failed to start {failures} times in a row: giving up (PIPELINE_FAILURE). "
                    "Fix what the lines above show and deploy again")
        else:
            delay = min(MAX_BACKOFF_SECONDS, 2 ** (failures - 1))
            changes.update(state=PipelineState.PIPELINE_RESTARTING.value, retry_at=now() + timedelta(seconds=delay))
            note = f"kaos: restarting the endpoint in {delay}s"
        if update(self.services, Endpoint, endpoint.name, changes,
                  only_if=lambda row: row.executor_state == endpoint.executor_state):
            log_of(self.config, endpoint_log_name(endpoint.name)).append_log(*ended, note)

    def _start_when_built(self, endpoint: Endpoint) -> None:
        build = load(self.services, Job, endpoint.build_job_id) if endpoint.build_job_id else None
        if build is None or build.state in (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value):
            update(self.services, Endpoint, endpoint.name,
                   {"state": FAILURE, "reason": "the serve image could not be built: see kaos serve build-logs"})
            return
        if build.state != JobState.JOB_SUCCESS.value:
            return  # still building
        if endpoint.retry_at is not None and _aware(endpoint.retry_at) > now():
            return  # backing off
        changes = self._start(endpoint, build.image)
        fresh = lambda row: row.desired == "run" and row.executor_state is None  # noqa: E731
        if not update(self.services, Endpoint, endpoint.name, changes, only_if=fresh):
            reattached(self.config, changes["executor_state"]).stop(now=True)  # killed or started meanwhile

    def _start(self, endpoint: Endpoint, image: str) -> Dict:
        """Stage the endpoint's files and start `./serve` (no transaction open); the endpoint's changes."""
        bundle = load(self.services, Bundle, endpoint.source_bundle_id)
        root = self.layout.extracted(self.services.store.path(bundle.blob_digest), bundle.blob_digest,
                                     self.config.max_bundle_bytes) / bundle.root_name
        work = endpoint_dir(self.config.data_dir, endpoint.name) / "work"
        preamble = Preamble(endpoint.name)
        left_out = []
        with preamble.downloading():
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(root / "model", work)  # the bundle as extracted: no links in it
            if endpoint.model_dir and is_real_dir(endpoint.model_dir):
                left_out = copy_tree(endpoint.model_dir, work)  # model.pkl next to serve (§7.2); a training wrote it
        serve = work / "serve"
        if is_regular(serve):
            os.chmod(serve, serve.stat().st_mode | 0o755)
        notes = [f"kaos: left out of the model's files: {'; '.join(left_out[:20])}"] if left_out else []
        resources = endpoint.resources or {}
        spec = WorkloadSpec(job_id=endpoint.name, kind="serve", command=["./serve"], workdir=str(work),
                            log=endpoint_log_name(endpoint.name), image=image,
                            preamble=preamble.lines(), hints=notes + script_hints(serve),
                            env={"KAOS_ENDPOINT": endpoint.name, "KAOS_MODEL_ID": endpoint.model_id or ""},
                            cpu=resources.get("cpu"), memory=resources.get("memory"), gpu=resources.get("gpu") or 0)
        executor = make_executor(self.config)
        address = executor.start(spec) or Address()
        state = PipelineState.PIPELINE_RESTARTING if endpoint.restarts else PipelineState.PIPELINE_STARTING
        return {"executor_state": {**executor.get_state(), "started": time.time()}, "host": address.host,
                "port": address.port, "socket": address.socket, "image": image, "state": state.value}

    def give_up(self, name: str, reason: str) -> None:
        endpoint = load(self.services, Endpoint, name)
        if endpoint is None:
            return
        executor = reattached(self.config, endpoint.executor_state)
        if executor is not None:
            executor.stop(now=True)
        log_of(self.config, endpoint_log_name(name)).append_log(reason)
        update(self.services, Endpoint, name, {"state": FAILURE, "reason": reason[:1000], "executor_state": None})
