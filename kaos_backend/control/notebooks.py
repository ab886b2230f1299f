"""Notebooks: once the notebook image is built, run `jupyter lab` with the notebook's token, its data and model
attached read-only, watch it become ready (its `<base_url>api` answers 200: Jupyter is up behind its base URL),
restart it with backoff when it fails, and remove it (its processes or container, its log, its token) when
killed, keeping its work directory.

A notebook that stops by itself with exit code 0 was culled when idle (KAOS_NOTEBOOK_IDLE_TIMEOUT, Jupyter's own
culling: notebook_command.py) or shut down from JupyterLab's menu: it is PIPELINE_STANDBY, not restarted, its work
directory kept; the next `kaos notebook deploy` of its user replaces it. Any other end before it was ready counts
as a failed start: after MAX_FAILURES in a row it is PIPELINE_FAILURE; one that was ready and then fails is
restarted (PIPELINE_RESTARTING).
"""
import collections
import http.client
import logging
import re
import time
from datetime import timedelta
from typing import Dict, List, Optional

from kaos_model import JobState, PipelineState
from sqlalchemy import select

from kaos_backend.control.common import (VANISHED, Controller, advance_each, bundle_artifact, data_artifact,
                                         end_reason, load, log_of, now, processing, reading, reattached,
                                         remove_unrecorded, update)
from kaos_backend.control.images import (building_reason, built_reason, cancel_unwaited_build, check_image,
                                         waiting_changes)
from kaos_backend.control.endpoints import MAX_BACKOFF_SECONDS, MAX_FAILURES, PROBE_TIMEOUT, Probes
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import Address, Artifact, ArtifactMissing, Executor, WorkloadSpec, notebook_log_name
from kaos_backend.executors.notebook_command import TOKEN_VARIABLE, readiness_path
from kaos_backend.models import Bundle, Job, Notebook, Partition, Workspace, as_utc
from kaos_backend.services.notebooks import BUILD_KIND, read_token

log = logging.getLogger("kaos_backend.control.notebooks")

RUNNING = PipelineState.PIPELINE_RUNNING.value
FAILURE = PipelineState.PIPELINE_FAILURE.value
STANDBY = PipelineState.PIPELINE_STANDBY.value
KEPT = "its work directory is kept: kaos notebook deploy starts it again"
STOPPED_ITSELF = "the notebook server stopped by itself (idle for {idle}, or shut down from JupyterLab); " + KEPT
CULLED = ("culled for idleness: the notebook server stopped by itself after no kernel, terminal or request for "
          "{idle}; " + KEPT)
SHUT_DOWN = "the notebook server stopped by itself: it was shut down from JupyterLab; " + KEPT
# What jupyter_server logs when it stops itself (ServerApp.shutdown_no_activity) or is asked to (/api/shutdown)
IDLE_SHUTDOWN = re.compile(r"No kernels for \d+ seconds; shutting down")
ASKED_SHUTDOWN = "Shutting down on /api/shutdown request"
TAIL_RECORDS = 50     # the last records of its log that tell why a notebook server stopped by itself


def api_status(host: str, port: int, path: str, timeout: float = PROBE_TIMEOUT) -> Optional[int]:
    """The HTTP status of `GET <path>` at host:port, or None when nothing answers."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "kaos-readiness-probe"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _idle_words(seconds: float) -> str:
    if not seconds:
        return "a while"
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def _stopped_itself(notebook_log: Executor, idle_timeout: float) -> str:
    """Why a notebook server ended by itself with exit code 0, as the last records of its log tell."""
    tail = "\n".join(collections.deque(notebook_log.logs(), maxlen=TAIL_RECORDS))
    idle = _idle_words(idle_timeout)
    if IDLE_SHUTDOWN.search(tail):
        return CULLED.format(idle=idle)
    return SHUT_DOWN if ASKED_SHUTDOWN in tail else STOPPED_ITSELF.format(idle=idle)


COMMAND_NOT_FOUND = 127  # the exit code of a command that is not there (POSIX shells, execve's runners, OCI runtimes)
NO_JUPYTER = ("the notebook's image has no jupyter (its server's command was not found: exit code 127): its "
              "model/requirements.txt must install jupyterlab")


class NotebookController(Controller):
    def __init__(self, services):
        super().__init__(services)
        self.probes = Probes()

    def tick(self) -> None:
        with reading(self.services) as session:
            names = list(session.scalars(select(Notebook.name).where(
                (Notebook.desired == "kill") | Notebook.state.notin_([FAILURE, STANDBY]))))
        advance_each(names, self.advance, self.retries, self.give_up, log, "Notebook")

    def advance(self, name: str) -> None:
        notebook = load(self.services, Notebook, name)
        if notebook is None:
            return
        executor = reattached(self.config, notebook.executor_state)
        if notebook.desired == "kill":
            self._remove(notebook, executor)
        elif executor is None:
            if notebook.state not in (FAILURE, STANDBY):
                self._start_when_built(notebook)
        else:
            code = executor.poll()
            if code is not None:
                self.probes.forget(name)
                self._exited(notebook, code, executor)
            elif notebook.state != RUNNING:
                self._probe(notebook, executor)

    def _same(self, notebook: Notebook):
        return lambda row: row.executor_state == notebook.executor_state and row.desired == "run"

    def _probe(self, notebook: Notebook, executor: Executor) -> None:
        if not self.probes.due(notebook.name):
            return
        started = as_utc(notebook.started_at).timestamp() if notebook.started_at else 0.0
        status = api_status(notebook.host, notebook.port, readiness_path(f"/{notebook.name}/"))
        if status == 200:
            self.probes.forget(notebook.name)
            update(self.services, Notebook, notebook.name, {"state": RUNNING, "failures": 0, "reason": None},
                   only_if=self._same(notebook))
            return
        waiting = ("it does not accept connections yet" if status is None else
                   f"GET /{notebook.name}/api answered {status} (does its jupyter take --ServerApp.base_url?)")
        if time.time() - started > self.config.endpoint_start_timeout:
            self.probes.forget(notebook.name)
            executor.stop(now=True)
            self._exited(notebook, executor.poll() or VANISHED, executor,
                         f"not ready {self.config.endpoint_start_timeout:g}s after its start ({waiting}): stopped")
        elif notebook.reason != f"waiting to be ready: {waiting}":
            update(self.services, Notebook, notebook.name, {"reason": f"waiting to be ready: {waiting}"},
                   only_if=self._same(notebook))

    def _remove(self, notebook: Notebook, executor: Optional[Executor]) -> None:
        if executor is not None:
            executor.stop()
        else:  # a start whose answer never came may have left it
            remove_unrecorded(self.config, notebook_log_name(notebook.name), [notebook.name])
        with self.services.db.session_scope() as session:
            row = session.get(Notebook, notebook.name)
            if row is not None:
                session.delete(row)
                session.flush()  # its build is cancelled when no other workload waits for it
                cancel_unwaited_build(session, row.build_job_id)
        self.layout.remove_notebook(notebook.name)  # its log and token; not its work directory

    def _exited(self, notebook: Notebook, code: int, executor: Executor, why: Optional[str] = None) -> None:
        executor.clear_state()  # the next start is a new workload
        notebook_log = log_of(self.config, notebook_log_name(notebook.name))
        if code == 0 and why is None:
            reason = _stopped_itself(notebook_log, self.config.notebook_idle_timeout)
            if update(self.services, Notebook, notebook.name, {"state": STANDBY, "reason": reason,
                                                               "executor_state": None, "port": None},
                      only_if=self._same(notebook)):
                notebook_log.append_log(f"kaos: {reason} (PIPELINE_STANDBY)")
            return
        failures = 1 if notebook.state == RUNNING else notebook.failures + 1
        reason = f"the notebook server ended: {why or end_reason(executor, code)}"
        ended = [f"kaos: the notebook {why}"] if why else \
            [f"kaos: the notebook ended: {end_reason(executor, code)}"] if code == VANISHED else []
        if code == COMMAND_NOT_FOUND and why is None and notebook.state != RUNNING:
            failures, reason = MAX_FAILURES, NO_JUPYTER  # no restart brings jupyter into the image
            ended = [f"kaos: {NO_JUPYTER}"]
        changes = {"failures": failures, "restarts": notebook.restarts + 1, "executor_state": None, "port": None,
                   "reason": reason}
        if failures >= MAX_FAILURES:
            changes["state"] = FAILURE
            note = (f"kaos: the notebook failed to start {failures} times in a row: giving up (PIPELINE_FAILURE). "
                    "Fix what the lines above show and deploy again")
        else:
            delay = min(MAX_BACKOFF_SECONDS, 2 ** (failures - 1))
            changes.update(state=PipelineState.PIPELINE_RESTARTING.value, retry_at=now() + timedelta(seconds=delay))
            note = f"kaos: restarting the notebook in {delay}s"
        if update(self.services, Notebook, notebook.name, changes, only_if=self._same(notebook)):
            notebook_log.append_log(*ended, note)

    def _fail(self, notebook: Notebook, reason: str) -> None:
        if update(self.services, Notebook, notebook.name, {"state": FAILURE, "reason": reason},
                  only_if=lambda row: row.executor_state is None and row.desired == "run"):
            log_of(self.config, notebook_log_name(notebook.name)).append_log(f"kaos: {reason}")

    def _start_when_built(self, notebook: Notebook) -> None:
        build = load(self.services, Job, notebook.build_job_id) if notebook.build_job_id else None
        if build is None or build.state in (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value):
            return self._fail(notebook, "the notebook image could not be built: see kaos notebook build-logs"
                                        + (f" -j {build.id}" if build else ""))
        if build.state != JobState.JOB_SUCCESS.value:  # still building: the reason says so
            waiting = building_reason(build.id, build.state, "notebook")
            if notebook.reason != waiting:
                update(self.services, Notebook, notebook.name, {"reason": waiting},
                       only_if=lambda row: row.executor_state is None and row.build_job_id == build.id)
            return None
        if notebook.retry_at is not None and as_utc(notebook.retry_at) > now():
            return None  # backing off
        fresh = lambda row: row.desired == "run" and row.executor_state is None  # noqa: E731
        image = check_image(self.services, make_executor(self.config), build.image, notebook.source_bundle_id,
                            BUILD_KIND, log_of(self.config, notebook_log_name(notebook.name)), "notebook")
        if not image.ready:  # left the engine: wait for the build that makes it again (failed: this fails)
            update(self.services, Notebook, notebook.name, waiting_changes(image, FAILURE), only_if=fresh)
            return None
        token = read_token(self.layout, notebook.name, notebook.token_sha256)
        if token is None:
            return self._fail(notebook, "the notebook's token is missing from the backend's data directory: kill "
                                        "it and deploy it again")
        try:
            changes = self._start(notebook, image.image, token)
        except ArtifactMissing as missing:
            return self._fail(notebook, f"what it reads is missing: {missing} (an ingestion still running, or a "
                                        "deleted bundle): deploy it again")
        if not update(self.services, Notebook, notebook.name, changes, only_if=fresh):
            reattached(self.config, changes["executor_state"]).stop(now=True)  # killed or started meanwhile
        return None

    def _start(self, notebook: Notebook, image: str, token: str) -> Dict:
        """Start `jupyter lab`, its executor staging its files (no transaction open); the notebook's changes."""
        bundle = load(self.services, Bundle, notebook.source_bundle_id)
        workspace = load(self.services, Workspace, notebook.workspace_id)
        resources = notebook.resources or {}
        spec = WorkloadSpec(job_id=notebook.name, kind="notebook", log=notebook_log_name(notebook.name),
                            preamble=processing(notebook.name), source=bundle_artifact(bundle) if bundle else None,
                            attached=self._data(notebook), model=self._model(notebook), image=image,
                            env={"KAOS_NOTEBOOK": notebook.name, "KAOS_WORKSPACE": workspace.name if workspace else ""},
                            secrets={TOKEN_VARIABLE: token}, base_url=f"/{notebook.name}/",
                            idle_timeout=self.config.notebook_idle_timeout, cpu=resources.get("cpu"),
                            memory=resources.get("memory"), gpu=resources.get("gpu") or 0)
        executor = make_executor(self.config)
        address = executor.start(spec) or Address()
        state = PipelineState.PIPELINE_RESTARTING if notebook.restarts else PipelineState.PIPELINE_STARTING
        return {"executor_state": executor.get_state(), "started_at": now(), "host": address.host,
                "port": address.port, "image": image, "state": state.value, "reason": built_reason(notebook.reason)}

    def _data(self, notebook: Notebook) -> List[Artifact]:
        ids = list(notebook.data_bundle_ids or [])
        with reading(self.services) as session:
            bundles = {bundle.id: bundle for bundle in session.scalars(select(Bundle).where(Bundle.id.in_(ids)))}
        return [data_artifact(bundles[i]) for i in ids if i in bundles]

    def _model(self, notebook: Notebook) -> Optional[Artifact]:
        if not notebook.model_id:
            return None
        with reading(self.services) as session:
            job_id = session.scalar(select(Partition.job_id).where(Partition.model_id == notebook.model_id))
        return Artifact.output_of(job_id, notebook.model_id.rsplit(":", 1)[1]) if job_id else None

    def give_up(self, name: str, reason: str) -> None:
        notebook = load(self.services, Notebook, name)
        if notebook is None:
            return
        executor = reattached(self.config, notebook.executor_state)
        if executor is not None:
            executor.stop(now=True)
        log_of(self.config, notebook_log_name(name)).append_log(reason)
        update(self.services, Notebook, name, {"state": FAILURE, "reason": reason[:1000], "executor_state": None})
