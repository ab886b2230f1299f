"""Endpoints: once the serve image is built, run `./serve` with the model's files beside it, watch it come up,
restart it with backoff when it exits, and remove it (processes and files) when killed."""
import logging
import os
import shutil
import socket
from datetime import timedelta
from pathlib import Path

from kaos_model import JobState, PipelineState
from sqlalchemy import select

from kaos_backend.control.common import Preamble, now, reattached
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.models import Bundle, Endpoint, Job
from kaos_backend.services.inference import endpoint_dir, endpoint_log

log = logging.getLogger("kaos_backend.control.endpoints")

MAX_FAILURES = 5          # exits in a row without ever accepting connections → PIPELINE_FAILURE
MAX_BACKOFF_SECONDS = 30


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def accepts_connections(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _aware(moment):
    from datetime import timezone
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


class EndpointController:
    def __init__(self, services):
        self.services = services
        self.config = services.config
        self.layout = services.layout

    def tick(self) -> None:
        with self.services.db.session_scope() as session:
            names = list(session.scalars(select(Endpoint.name)))
        for name in names:
            try:
                with self.services.db.session_scope() as session:
                    endpoint = session.get(Endpoint, name)
                    if endpoint is not None:
                        self.advance(session, endpoint)
            except Exception:
                log.exception("Endpoint %s could not advance", name)

    def advance(self, session, endpoint: Endpoint) -> None:
        executor = reattached(self.config, endpoint.executor_state)
        if endpoint.desired == "kill":
            if executor is not None:
                executor.stop()
            session.delete(endpoint)
            shutil.rmtree(endpoint_dir(self.config.data_dir, endpoint.name), ignore_errors=True)
            return
        if executor is None:
            self._start_when_built(session, endpoint)
            return
        code = executor.poll()
        if code is None:
            if endpoint.state != PipelineState.PIPELINE_RUNNING.value and \
                    accepts_connections(*executor.address()):
                endpoint.state = PipelineState.PIPELINE_RUNNING.value
                endpoint.failures = 0
                endpoint.reason = None
            return
        self._exited(endpoint, code)

    def _exited(self, endpoint: Endpoint, code: int) -> None:
        was_running = endpoint.state == PipelineState.PIPELINE_RUNNING.value
        endpoint.failures = 1 if was_running else endpoint.failures + 1
        endpoint.restarts += 1
        endpoint.executor_state = None
        delay = min(MAX_BACKOFF_SECONDS, 2 ** (endpoint.failures - 1))
        endpoint.retry_at = now() + timedelta(seconds=delay)
        failing = endpoint.failures >= MAX_FAILURES
        endpoint.state = (PipelineState.PIPELINE_FAILURE if failing else PipelineState.PIPELINE_RESTARTING).value
        endpoint.reason = f"the serve process exited with code {code}"
        endpoint_log(self.config.data_dir, endpoint.name).append(
            f"kaos: the serve process exited with code {code}; restarting in {delay}s"
            + (f" ({endpoint.failures} exits in a row: see the lines above)" if failing else ""))

    def _start_when_built(self, session, endpoint: Endpoint) -> None:
        build = session.get(Job, endpoint.build_job_id) if endpoint.build_job_id else None
        if build is None or build.state in (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value):
            endpoint.state = PipelineState.PIPELINE_FAILURE.value
            endpoint.reason = "the serve image could not be built: see kaos serve build-logs"
            return
        if build.state != JobState.JOB_SUCCESS.value:
            return  # still building
        if endpoint.retry_at is not None and _aware(endpoint.retry_at) > now():
            return  # backing off
        self._start(session, endpoint, build.image)

    def _start(self, session, endpoint: Endpoint, image: str) -> None:
        bundle = session.get(Bundle, endpoint.source_bundle_id)
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
        log_path = endpoint_log(self.config.data_dir, endpoint.name).path
        port = free_port()
        resources = endpoint.resources or {}
        spec = WorkloadSpec(job_id=endpoint.name, kind="serve", command=["./serve"], workdir=str(work),
                            log_path=str(log_path), image=image, port=port,
                            preamble=preamble.lines(),
                            env={"KAOS_ENDPOINT": endpoint.name, "KAOS_MODEL_ID": endpoint.model_id or ""},
                            cpu=resources.get("cpu"), memory=resources.get("memory"), gpu=resources.get("gpu") or 0)
        executor = make_executor(self.config)
        executor.start(spec)
        endpoint.executor_state = executor.get_state()
        endpoint.port = port
        endpoint.image = image
        if endpoint.state != PipelineState.PIPELINE_FAILURE.value:
            endpoint.state = (PipelineState.PIPELINE_RESTARTING if endpoint.restarts
                              else PipelineState.PIPELINE_STARTING).value
