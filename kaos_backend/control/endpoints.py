"""Endpoints: once the serve image is built, run `./serve` with the model's files beside it, watch it become
ready, restart it with backoff when it exits, give up after repeated failed starts, and remove it (processes and
files) when killed.

An endpoint is PIPELINE_RUNNING only once it is ready: its `GET /ping` answers 200, or, for a bundle without
`/ping` (404), it accepts connections and has stayed up `STABLE_SECONDS`. An exit before it ever became ready is
a failed start: after `MAX_FAILURES` of them in a row it is PIPELINE_FAILURE with the last exit's reason, and is
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
from pathlib import Path
from typing import Dict, Optional

from kaos_model import JobState, PipelineState
from sqlalchemy import select

from kaos_backend.control.common import (VANISHED, Controller, Preamble, advance_each, end_reason, load, now,
                                         reading, reattached, update)
from kaos_backend.control.hints import script_hints
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import Executor, WorkloadSpec
from kaos_backend.models import Bundle, Endpoint, Job
from kaos_backend.services.inference import endpoint_dir, endpoint_log

log = logging.getLogger("kaos_backend.control.endpoints")

MAX_FAILURES = 5          # exits in a row without ever becoming ready → PIPELINE_FAILURE
MAX_BACKOFF_SECONDS = 30
STABLE_SECONDS = 5.0      # a bundle without /ping is ready once it accepts connections this long after its start
PROBE_TIMEOUT = 0.5
RUNNING = PipelineState.PIPELINE_RUNNING.value
FAILURE = PipelineState.PIPELINE_FAILURE.value


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def ping_status(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> Optional[int]:
    """The HTTP status of `GET /ping` on the endpoint, or None when it does not answer."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/ping", headers={"User-Agent": "kaos-readiness-probe"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def is_ready(executor: Executor, started: float) -> bool:
    status = ping_status(*executor.address())
    if status == 200:
        return True
    return status == 404 and time.time() - started >= STABLE_SECONDS


def _aware(moment):
    from datetime import timezone
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


class EndpointController(Controller):
    def tick(self) -> None:
        with reading(self.services) as session:
            names = list(session.scalars(select(Endpoint.name).where(
                (Endpoint.desired == "kill") | (Endpoint.state != FAILURE) | Endpoint.executor_state.is_not(None))))
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
                self._exited(endpoint, code, executor)
            elif endpoint.state != RUNNING and is_ready(executor, endpoint.executor_state.get("started", 0)):
                update(self.services, Endpoint, name, {"state": RUNNING, "failures": 0, "reason": None},
                       only_if=lambda row: row.executor_state == endpoint.executor_state)

    def _remove(self, endpoint: Endpoint, executor: Optional[Executor]) -> None:
        if executor is not None:
            executor.stop()
        with self.services.db.session_scope() as session:
            row = session.get(Endpoint, endpoint.name)
            if row is not None:
                session.delete(row)
        shutil.rmtree(endpoint_dir(self.config.data_dir, endpoint.name), ignore_errors=True)

    def _exited(self, endpoint: Endpoint, code: int, executor: Executor) -> None:
        failures = 1 if endpoint.state == RUNNING else endpoint.failures + 1
        reason = f"the serve process ended: {end_reason(executor, code)}"
        changes = {"failures": failures, "restarts": endpoint.restarts + 1, "executor_state": None, "reason": reason}
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
            ended = [f"kaos: the endpoint ended: {end_reason(executor, code)}"] if code == VANISHED else []
            endpoint_log(self.config.data_dir, endpoint.name).append(*ended, note)

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
        with preamble.downloading():
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(root / "model", work)
            if endpoint.model_dir and Path(endpoint.model_dir).is_dir():
                shutil.copytree(endpoint.model_dir, work, dirs_exist_ok=True)  # model.pkl next to serve (§7.2)
        serve = work / "serve"
        if serve.exists():
            os.chmod(serve, serve.stat().st_mode | 0o755)
        port = free_port()
        resources = endpoint.resources or {}
        spec = WorkloadSpec(job_id=endpoint.name, kind="serve", command=["./serve"], workdir=str(work),
                            log_path=str(endpoint_log(self.config.data_dir, endpoint.name).path), image=image,
                            port=port, preamble=preamble.lines(), hints=script_hints(serve),
                            env={"KAOS_ENDPOINT": endpoint.name, "KAOS_MODEL_ID": endpoint.model_id or ""},
                            cpu=resources.get("cpu"), memory=resources.get("memory"), gpu=resources.get("gpu") or 0)
        executor = make_executor(self.config)
        executor.start(spec)
        state = PipelineState.PIPELINE_RESTARTING if endpoint.restarts else PipelineState.PIPELINE_STARTING
        return {"executor_state": {**executor.get_state(), "started": time.time()}, "port": port, "image": image,
                "state": state.value}

    def give_up(self, name: str, reason: str) -> None:
        endpoint = load(self.services, Endpoint, name)
        if endpoint is None:
            return
        executor = reattached(self.config, endpoint.executor_state)
        if executor is not None:
            executor.stop(now=True)
        endpoint_log(self.config.data_dir, name).append(reason)
        update(self.services, Endpoint, name, {"state": FAILURE, "reason": reason[:1000], "executor_state": None})
