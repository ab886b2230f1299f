"""The kubernetes executor (issue 11): trainings as batch/v1 Jobs, endpoints and notebooks (issue 12) as Deployments
with a Service, in the namespace KAOS_NAMESPACE of the cluster the kubeconfig (or the in-cluster config) names,
through the official client. KAOS_EXECUTOR=kubernetes chooses it.

    build      the image builder's (kubernetes_images.py: a Docker engine that builds and pushes to
               KAOS_REGISTRY; local virtualenvs for tests against the fake cluster)
    train      the Job `train-<job id>-<index>` (kubernetes_spec.py): the init container fetches the inputs from
               the backend's internal routes with an artifact token scoped to the workload (a Secret owned by the
               Job), ./train runs, its output is handed back before the container ends, so a training's output
               is in the platform's store by the time its end is reported
    serve      the Deployment `serve-<ws>-<hex6>` and its ClusterIP Service: `start` returns the Service's
               cluster IP and port 8080 (where the backend, in the cluster, reaches it)
    notebook   the Deployment `notebook-<ws>-<user>` and its ClusterIP Service (kubernetes_notebook.py): `jupyter
               lab` under its base URL with its token from its Secret, its inputs fetched read-only, its work
               directory a PersistentVolumeClaim that outlives it; `start` returns the Service's cluster IP and
               port 8888; Jupyter's own idle culling ends it with exit code 0 (the notebook controller's STANDBY)
    ingestion  a process of the backend's machine, as the local executor runs it (a download into the data
               directory)

Status comes from one shared watch per kind and namespace (kubernetes_watch.py), never a request per workload
per tick; each workload has a follower thread in the process that polls it (kubernetes_follower.py) that copies
its pod's log into the platform's log (`<data>/jobs/<job id>/log`, as every executor's, so it survives the pod)
and records how it ended: its exit code, OOMKilled as "out of memory (limit X)", or why Kubernetes could not run
it (unschedulable, an image that cannot be pulled, evicted, a deadline exceeded, CrashLoopBackOff), which is
the job's reason and the log's last line. The state is the namespace, the Job's or Deployment's name and uid,
and the files beside the log: a backend restart finds the workload by them and resumes the log's copy.
"""
import logging
import math
import os
import secrets
import time
from pathlib import Path
from typing import List, Optional

from kaos_backend.executors import kubernetes_follower, kubernetes_names, kubernetes_state, outcome
from kaos_backend.executors.base import Address, ArtifactMissing, Executor, Standing, WorkloadSpec, check_log_name
from kaos_backend.executors.data_dir_log import DataDirLog
from kaos_backend.executors.hints import script_hints
from kaos_backend.executors.kubernetes_client import as_cluster_error
from kaos_backend.executors.kubernetes_status import describe
from kaos_backend.executors.local_staging import Staging
from kaos_backend.executors.notebook_command import CONTAINER_PORT as NOTEBOOK_PORT
from kaos_backend.executors.registry import register
from kaos_backend.executors.workload_env import SERVE_PORT

MAIN = {"train": "train", "serve": "serve", "notebook": "notebook"}  # the pod's main container, by kind
log = logging.getLogger("kaos_backend.executors.kubernetes")
STOP_RECORD_WAIT = 15.0  # seconds beyond the grace period for the follower to record a stopped workload's end
STOP_GRACE = 10          # seconds a workload gets after SIGTERM when stop() is not given a timeout


class KubernetesExecutor(DataDirLog, Executor):
    kind = "kubernetes"
    engine_name = "the Kubernetes API server"

    def __init__(self, config):
        self.config = config
        self.data_dir = Path(config.data_dir)
        self._settings = None
        self._state: Optional[dict] = None
        self._delegate: Optional[Executor] = None   # a build's (the image builder's), an ingestion's (local)

    @property
    def settings(self):
        """kubernetes_spec.KubeSettings of the config (the client is imported on first use: an executor that only
        reads a log, in an API worker, never needs it)."""
        if self._settings is None:
            from kaos_backend.executors.kubernetes_spec import KubeSettings
            self._settings = KubeSettings.from_config(self.config, os.environ)
        return self._settings

    @property
    def images(self):
        from kaos_backend.executors.kubernetes_images import image_builder
        return image_builder(self.config, self.settings)

    @classmethod
    def from_config(cls, config) -> "KubernetesExecutor":
        return cls(config)

    @classmethod
    def capacity(cls, config):
        """The largest node's allocatable cpu, memory and GPUs (kubernetes_capacity.py), or None."""
        from kaos_backend.executors.kubernetes_capacity import cluster_capacity
        return cluster_capacity(config)

    @classmethod
    def engine_problem(cls, config) -> Optional[str]:
        """Whether the API server answers GET /version (kubernetes_client.api_server_problem): while it does not
        (a control plane's restart, an upgrade), the scheduler holds the workloads, their reason saying so."""
        from kaos_backend.executors.kubernetes_client import api_server_problem
        return api_server_problem(config)

    @classmethod
    def engine_answers_again(cls, config) -> None:
        """The scheduler saw the API server answer again after it did not: the shared watches and the followed
        logs of this process connect again (kubernetes_cluster.reconnect_all), rather than wait minutes on
        connections that may have died without a word; the notebook claims whose removal failed meanwhile (a
        workspace killed) are removed."""
        from kaos_backend.executors.kubernetes_cluster import reconnect_all
        reconnect_all()
        from kaos_backend.executors.kubernetes_claims import remove_owed_work_claims
        remove_owed_work_claims(config)

    @classmethod
    def remove_notebook_work(cls, config, workspace: Optional[str]) -> bool:
        """Delete the PersistentVolumeClaims of the work directories of this platform's notebooks of `workspace`
        (every workspace's when None); False, logged, when the cluster could not be asked or refused a deletion:
        then the removal is owed, and done once the API server answers again (kubernetes_claims.py)."""
        from kaos_backend.executors.kubernetes_claims import remove_work_claims
        return remove_work_claims(config, workspace)

    # -- building -------------------------------------------------------------------------------------------
    def image_for(self, spec: WorkloadSpec) -> str:
        return self.images.image_for(spec)

    def is_image_ready(self, image: str) -> bool:
        return self.images.is_image_ready(image)

    def build(self, spec: WorkloadSpec) -> str:
        """The image builder's build of `spec` (its progress in the build's log); the image pods will run."""
        image = self.image_for(spec)
        self._delegate = self.images.builder()
        self._delegate.build(self.images.spec_for(spec))
        self.log_name = spec.log
        return image

    # -- running --------------------------------------------------------------------------------------------
    def start(self, spec: WorkloadSpec) -> Optional[Address]:
        """Create the workload's Job (train) or Deployment and Service (serve) and the Secret of its artifact token,
        then follow it. Raises ArtifactMissing (and InvalidBundle, PayloadTooLarge) for inputs the platform cannot
        give, before anything is created; ClusterUnavailable when the API server cannot be reached, ClusterRefused
        when it refuses (each in one line; nothing is left behind)."""
        if spec.kind == "ingestion":
            from kaos_backend.executors.local import LocalExecutor
            self._delegate = LocalExecutor.from_config(self.config)
            return self._delegate.start(spec)
        if spec.kind not in MAIN:
            raise ValueError(f"the kubernetes executor runs no {spec.kind} workload")
        hints = self._check_inputs(spec)
        from kaos_backend.executors.kubernetes_cluster import cluster_for
        cluster = cluster_for(self.config)
        home = self.data_dir / check_log_name(spec.log)
        home.mkdir(parents=True, exist_ok=True)
        name = kubernetes_names.workload_name(spec)
        state = kubernetes_state.begin(
            spec.kind, spec.job_id, spec.log, home, namespace=self.settings.namespace, name=name,
            object="Job" if spec.kind == "train" else "Deployment", main=MAIN[spec.kind],
            start=secrets.token_hex(4), memory=spec.memory, image=spec.image, uid=None)
        self.log_name = spec.log
        from kaos_backend.executors.kubernetes_objects import create_workload
        try:
            created = create_workload(cluster, spec, self.settings, state["start"])
        except Exception as error:  # noqa: BLE001 - said in one line; the scheduler tries again, then gives up
            said = as_cluster_error(error, cluster.core.api_client.configuration.host,
                                    f"to create the {state['object']} {name} in the namespace {cluster.namespace}")
            if said is None:
                raise
            raise said from None
        self.append_log(*spec.preamble)  # once created: a start the scheduler tries again writes it once
        notes = hints + [self._runs_note(spec, name)]
        if created.adopted:  # an earlier start's, whose answers were lost: followed, not run again
            state["start"] = created.adopted
            notes.append(f"kaos: the {kubernetes_state.WHAT[spec.kind]} runs already in the Job {name} (a start "
                         "made twice): following it")
        state.update(uid=created.uid, service=created.service, notes=notes)
        self._state = state
        self._follow()
        if spec.kind == "train":
            return None
        return Address(created.cluster_ip, SERVE_PORT if spec.kind == "serve" else NOTEBOOK_PORT)

    def _check_inputs(self, spec: WorkloadSpec) -> List[str]:
        """ArtifactMissing for an input the platform does not have; the hints about the code (a missing script)."""
        staging = Staging(self.data_dir, self.config.max_bundle_bytes)
        if spec.kind == "notebook":
            for artifact in spec.attached:
                staging.data_root(artifact)
            if spec.model is not None and not staging.output_dir(spec.model).is_dir():
                raise ArtifactMissing(spec.model, str(staging.output_dir(spec.model)))
            if spec.source is not None:
                staging.model_dir(spec.source)
            return []
        code = staging.model_dir(spec.source)
        if spec.kind == "train":
            staging.data_root(spec.data)
        return script_hints(code / ("train" if spec.kind == "train" else "serve"))

    def _runs_note(self, spec: WorkloadSpec, name: str) -> str:
        limits = ", ".join(part for part in (f"cpu {spec.cpu:g}" if spec.cpu else "",
                                             f"memory {spec.memory}" if spec.memory else "",
                                             f"gpu {spec.gpu}" if spec.gpu else "") if part)
        what = kubernetes_state.WHAT[spec.kind]
        owner = "Job" if spec.kind == "train" else "Deployment"
        work = ""
        if spec.kind == "notebook":
            from kaos_backend.executors.kubernetes_notebook import WORK_DIR, work_claim_name
            work = (f", its work directory {WORK_DIR} on the PersistentVolumeClaim {work_claim_name(spec)}"
                    if self.settings.notebook_storage else f", its work directory {WORK_DIR} an emptyDir (lost "
                    "when the notebook stops: KAOS_NOTEBOOK_STORAGE is empty)")
        return (f"kaos: the {what} runs in a pod of the {owner} {name} in the namespace {self.settings.namespace}, "
                f"image {spec.image}" + (f" (limits: {limits})" if limits else "") + work)

    def _follow(self) -> bool:
        """Start the workload's follower in this process, unless one follows it (here or elsewhere)."""
        from kaos_backend.executors.kubernetes_cluster import cluster_for
        from kaos_backend.wakeup import socket_name
        return kubernetes_follower.Follower.spawn(
            cluster_for(self.config), self._state, self._log_file(), self.config.max_log_mb * 1024 * 1024,
            socket_name(self.data_dir), self.config.pod_pending_timeout)

    # -- observing ------------------------------------------------------------------------------------------
    def poll(self) -> Optional[int]:
        """The exit code once the follower recorded the end; None while the workload runs (a follower is started
        here when none follows it: after a backend restart)."""
        if self._delegate is not None:
            return self._delegate.poll()
        if self._state is None:
            return None
        record = kubernetes_state.read_record(self._state)
        if record is not None:
            return record["code"]
        if not kubernetes_state.followed(self._state):
            self._follow()
            record = kubernetes_state.read_record(self._state)  # it may have ended meanwhile
            if record is not None:
                return record["code"]
        return None

    def reason(self) -> Optional[str]:
        if self._delegate is not None:
            return self._delegate.reason()
        record = kubernetes_state.read_record(self._state) if self._state else None
        return describe(record) if record is not None else None

    def standing(self) -> Optional[Standing]:
        """What the follower last saw of the running workload: the problem its pod waits on (unschedulable, an
        image not pulled), how often its Deployment replaced its pod and how the last one ended; None when there
        is none of that, or it ended."""
        if self._delegate is not None:
            return self._delegate.standing()
        if self._state is None or kubernetes_state.read_record(self._state) is not None:
            return None
        progress = kubernetes_state.read_progress(self._state)
        standing = Standing(waiting=progress.get("waiting"), replaced=int(progress.get("replaced") or 0),
                            last_replaced=progress.get("last_replaced"))
        return standing if standing != Standing() else None

    def stop(self, now: bool = False, timeout: float = STOP_GRACE) -> None:
        """Delete the workload's pods (SIGTERM, then SIGKILL after `timeout` seconds; at once when `now`) and its
        Job or Deployment (Background: its Service and Secret go with it), revoke its token, and return once its
        end is recorded. Gone, or ended already, is not an error."""
        if self._delegate is not None:
            return self._delegate.stop(now, timeout)
        state = self._state
        if state is None or kubernetes_state.read_record(state) is not None:
            return None
        from kaos_backend.executors.kubernetes_cluster import cluster_for
        cluster = cluster_for(self.config)
        grace = 0 if now else max(1, math.ceil(timeout))
        kubernetes_state.request_stop(state, grace)
        informer = cluster.informer()
        for pod in informer.pods_of(state["workload"]):
            if (pod["metadata"].get("labels") or {}).get(kubernetes_state.START_LABEL) == state.get("start"):
                kubernetes_state.delete_pod(cluster, pod["metadata"]["name"], grace)
        kubernetes_state.delete_owner(cluster, state)
        informer.notify()
        self._follow()
        deadline = time.monotonic() + grace + STOP_RECORD_WAIT
        while kubernetes_state.read_record(state) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if kubernetes_state.read_record(state) is None:  # no follower recorded it (stuck): recorded here
            what = kubernetes_state.WHAT.get(state["kind"], "workload")
            self.append_log(f"kaos: the {what} ended: killed on request")
            outcome.write_record(state["exit_path"], outcome.record_for(-9, requested=True, memory=state["memory"]))
            try:
                cluster.tokens.revoke(state["workload"])
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
        return None

    def remove_unrecorded(self, log: str, workloads: List[str]) -> None:
        """Delete the Jobs (Deployments) of `workloads` (of the log `log`) that starts whose answers were lost
        made (found by their job's label), and revoke their tokens."""
        if not workloads:
            return
        kind = {"jobs": "train", "endpoints": "serve", "notebooks": "notebook"}[check_log_name(log).split("/")[0]]
        from kaos_backend.executors.kubernetes_cluster import cluster_for
        cluster = cluster_for(self.config)
        selector = f"{cluster.selector},{kubernetes_names.JOB}={kubernetes_names.label_value(log.split('/', 1)[1])}"
        listed = (cluster.batch.list_namespaced_job if kind == "train" else cluster.apps.list_namespaced_deployment)(
            cluster.namespace, label_selector=selector)
        wanted = {kubernetes_names.label_value(workload): workload for workload in workloads}
        for found in listed.items:
            workload = wanted.get((found.metadata.labels or {}).get(kubernetes_names.WORKLOAD))
            if workload is not None:
                kubernetes_state.delete_owner(cluster, {"object": "Job" if kind == "train" else "Deployment",
                                                        "name": found.metadata.name, "uid": found.metadata.uid})
                cluster.tokens.revoke(workload)

    # -- state ----------------------------------------------------------------------------------------------
    def get_state(self) -> dict:
        if self._delegate is not None:
            return {"delegate": self._delegate.kind, "state": self._delegate.get_state()}
        return dict(self._state) if self._state is not None else {}

    def load_state(self, state: dict) -> None:
        self.clear_state()
        if "delegate" in state:
            from kaos_backend.executors.registry import executor_class
            self._delegate = executor_class(state["delegate"]).from_config(self.config)
            self._delegate.load_state(state["state"])
            self.log_name = self._delegate.log_name
            return
        self._state = dict(state)
        self.log_name = state.get("log")

    def clear_state(self) -> None:
        self._state = None
        self._delegate = None
        self.log_name = None


register(KubernetesExecutor.kind, KubernetesExecutor, KubernetesExecutor.from_config)
