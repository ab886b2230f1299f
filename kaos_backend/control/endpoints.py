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

Where its executor knows more (`Executor.standing`: on Kubernetes), a starting endpoint's reason is what it waits
for ("waiting to be ready: its pod cannot be scheduled: ..."), not the probe's; and a running endpoint that its
infrastructure replaced (a Deployment's pod evicted, another made) stays PIPELINE_RUNNING with one restart more for
each, its reason saying how the last one ended.
"""
import http.client
import logging
import os
import re
import shutil
import socket
import time
from datetime import timedelta
from typing import Dict, Optional

from kaos_model import JobState, PipelineState
from sqlalchemy import select

from kaos_backend.control.common import (VANISHED, Controller, advance_each, bundle_artifact, end_reason, load,
                                         log_of, now, processing, reading, reattached, remove_unrecorded,
                                         update)
from kaos_backend.control.images import (building_reason, built_reason, cancel_unwaited_build, check_image,
                                         waiting_changes)
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import Address, Artifact, Executor, WorkloadSpec, endpoint_log_name
from kaos_backend.models import Bundle, Endpoint, Job, Partition, as_utc
from kaos_backend.services.inference import BUILD_KIND, endpoint_dir

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


NO_ANSWER = 0  # ping_status: the connection was accepted, and no answer came within the probe's timeout


def ping_status(host: str, port: int, timeout: float = PROBE_TIMEOUT, unix: Optional[str] = None) -> Optional[int]:
    """The HTTP status of `GET /ping` on the endpoint (on the unix socket `unix` when given, else at host:port);
    None when it does not accept the connection (or closes it unanswered: a published port whose server does not
    listen yet), NO_ANSWER when it accepted it and did not answer within `timeout` seconds."""
    connection = UnixHTTPConnection(unix, timeout) if unix else http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.connect()
    except OSError:
        connection.close()
        return None
    try:
        connection.request("GET", "/ping", headers={"User-Agent": "kaos-readiness-probe"})
        return connection.getresponse().status
    except TimeoutError:
        return NO_ANSWER
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def readiness(status: Optional[int], started: float) -> Optional[str]:
    """None when an endpoint whose `GET /ping` answered `status` (None: no connection; NO_ANSWER: no answer) is
    ready, else what it waits for, in words."""
    if status == 200 or (status == 404 and time.time() - started >= STABLE_SECONDS):
        return None
    if status is None:
        return "it does not accept connections yet"
    if status == NO_ANSWER:
        return f"it accepts connections but GET /ping does not answer within {PROBE_TIMEOUT:g}s"
    if status == 404:
        return f"no /ping: it must accept connections for {STABLE_SECONDS:g}s"
    return f"GET /ping answered {status}"


REPLACED_RE = re.compile(r"^replaced by its infrastructure (\d+) times? since its start")


def replaced_reason(count: int, last: Optional[str]) -> str:
    """The reason of a running endpoint whose infrastructure replaced it `count` times since its start, the last
    one having ended as `last` says ("evicted: ...")."""
    return f"replaced by its infrastructure {count} time{'s' if count > 1 else ''} since its start; the last one " \
        f"ended: {last or 'deleted'}"


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
            else:
                self._replaced(endpoint, executor)

    def _probe(self, endpoint: Endpoint, executor: Executor) -> None:
        """Is the starting endpoint ready yet? RUNNING when it is; the reason says what it waits for; a failed
        start when it is not ready `endpoint_start_timeout` seconds after its start (KAOS_ENDPOINT_START_TIMEOUT)."""
        standing = executor.standing()  # every tick: what the infrastructure says is no probe to space out
        if not (standing is not None and standing.waiting) and not self.probes.due(endpoint.name):
            return
        started = as_utc(endpoint.started_at).timestamp() if endpoint.started_at else 0.0
        if standing is not None and standing.waiting:  # its infrastructure knows why (no node fits it): no probe
            waiting = standing.waiting
        else:
            unix = endpoint.socket if endpoint.socket and os.path.exists(endpoint.socket) else None  # else TCP
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

    def _replaced(self, endpoint: Endpoint, executor: Executor) -> None:
        """A running endpoint whose infrastructure replaced it (a Deployment's pod evicted, and another made): one
        restart more for each, and the reason says how the last one ended. The count of this start is kept in the
        reason itself (`replaced_reason`), so that a backend restart counts none twice."""
        standing = executor.standing()
        if standing is None or not standing.replaced:
            return
        match = REPLACED_RE.match(endpoint.reason or "")
        counted = int(match.group(1)) if match else 0
        if standing.replaced <= counted:
            return
        update(self.services, Endpoint, endpoint.name,
               {"restarts": endpoint.restarts + standing.replaced - counted,
                "reason": replaced_reason(standing.replaced, standing.last_replaced)[:1000]},
               only_if=lambda row: row.executor_state == endpoint.executor_state and row.reason == endpoint.reason)

    def _remove(self, endpoint: Endpoint, executor: Optional[Executor]) -> None:
        if executor is not None:
            executor.stop()
        else:  # a start whose answer never came may have left it
            remove_unrecorded(self.config, endpoint_log_name(endpoint.name), [endpoint.name])
        with self.services.db.session_scope() as session:
            row = session.get(Endpoint, endpoint.name)
            if row is not None:
                session.delete(row)
                session.flush()  # its build is cancelled when no other workload waits for it
                cancel_unwaited_build(session, row.build_job_id)
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
                   {"state": FAILURE, "reason": "the serve image could not be built: see kaos serve build-logs"
                                                + (f" -j {build.id}" if build else "")})
            return
        if build.state != JobState.JOB_SUCCESS.value:  # still building: the reason says so
            waiting = building_reason(build.id, build.state, "serve")
            if endpoint.reason != waiting:
                update(self.services, Endpoint, endpoint.name, {"reason": waiting},
                       only_if=lambda row: row.executor_state is None and row.build_job_id == build.id)
            return
        if endpoint.retry_at is not None and as_utc(endpoint.retry_at) > now():
            return  # backing off
        fresh = lambda row: row.desired == "run" and row.executor_state is None  # noqa: E731
        image = check_image(self.services, make_executor(self.config), build.image, endpoint.source_bundle_id,
                            BUILD_KIND, log_of(self.config, endpoint_log_name(endpoint.name)), "endpoint")
        if not image.ready:  # left the engine: wait for the build that makes it again (failed: this fails)
            update(self.services, Endpoint, endpoint.name, waiting_changes(image, FAILURE), only_if=fresh)
            return
        changes = self._start(endpoint, image.image)
        if not update(self.services, Endpoint, endpoint.name, changes, only_if=fresh):
            reattached(self.config, changes["executor_state"]).stop(now=True)  # killed or started meanwhile

    def _start(self, endpoint: Endpoint, image: str) -> Dict:
        """Start `./serve`, its executor staging its files (no transaction open); the endpoint's changes."""
        bundle = load(self.services, Bundle, endpoint.source_bundle_id)
        resources = endpoint.resources or {}
        spec = WorkloadSpec(job_id=endpoint.name, kind="serve", log=endpoint_log_name(endpoint.name),
                            preamble=processing(endpoint.name), source=bundle_artifact(bundle),
                            model=self._model(endpoint), image=image,
                            env={"KAOS_ENDPOINT": endpoint.name, "KAOS_MODEL_ID": endpoint.model_id or ""},
                            cpu=resources.get("cpu"), memory=resources.get("memory"), gpu=resources.get("gpu") or 0)
        executor = make_executor(self.config)
        address = executor.start(spec) or Address()
        state = PipelineState.PIPELINE_RESTARTING if endpoint.restarts else PipelineState.PIPELINE_STARTING
        return {"executor_state": executor.get_state(), "started_at": now(), "host": address.host,
                "port": address.port, "socket": address.socket, "image": image, "state": state.value,
                "reason": built_reason(endpoint.reason)}

    def _model(self, endpoint: Endpoint) -> Optional[Artifact]:
        """The output of the training that made the endpoint's model, if it has one."""
        if not endpoint.model_id:
            return None
        with reading(self.services) as session:
            job_id = session.scalar(select(Partition.job_id).where(Partition.model_id == endpoint.model_id))
        return Artifact.output_of(job_id, endpoint.model_id.rsplit(":", 1)[1]) if job_id else None

    def give_up(self, name: str, reason: str) -> None:
        endpoint = load(self.services, Endpoint, name)
        if endpoint is None:
            return
        executor = reattached(self.config, endpoint.executor_state)
        if executor is not None:
            executor.stop(now=True)
        log_of(self.config, endpoint_log_name(name)).append_log(reason)
        update(self.services, Endpoint, name, {"state": FAILURE, "reason": reason[:1000], "executor_state": None})
