"""Creating one workload's objects (kubernetes_spec.py, kubernetes_notebook.py build them): the Job, or the
Deployment and its Service (a notebook's work directory claim before them, when there is none yet), then the
Secret of its artifact token owned by it (a pod whose Secret is not there yet waits for it:
CreateContainerConfigError, which is no failure). The token's row keeps the spec without its `secrets`. Each
pod template carries the start's own label (kubernetes_state.START_LABEL), so that the pods of an earlier start
of the same name (an endpoint's, being deleted) are never taken for this start's.

A name taken already is an earlier start's leftover (a backend that crashed between creating a Job and recording
it; an endpoint's Service that its deleted Deployment's garbage collection has not removed yet): it is deleted,
and the create tried again once it is gone; but a training's Job whose token Secret it owns is there too has run,
or runs (an earlier start got that far, its answers lost): it is adopted, never run a second time. A create that
fails leaves nothing: what was created is deleted and the token revoked; unless the API server did not answer
(timed out, or its connection closed: engine_requests.is_timeout/is_dropped), which may have carried the create
out: then it is left for the next start, which adopts it or deletes it."""
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional

from kaos_backend.executors import engine_requests, kubernetes_names
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.executors.kubernetes_client import is_status

GONE_WAIT = 30.0   # seconds a leftover of the same name may take to go


@dataclass
class Created:
    uid: str
    service: Optional[str] = None
    cluster_ip: Optional[str] = None
    adopted: Optional[str] = None  # the start label of an earlier start's Job adopted (None: made by this one)


def create_workload(cluster, spec: WorkloadSpec, settings, start: str) -> Created:
    """Issue the workload's artifact token and create its objects in `cluster` (kubernetes_cluster.Cluster), or
    adopt a training's Job that an earlier start made whole (`Created.adopted`). Raises the client's ApiException
    (nothing left behind), or its error for a request not answered (left as it is)."""
    from kaos_backend.executors import kubernetes_spec
    from kaos_backend.executors.kubernetes_state import START_LABEL, delete_owner
    token = cluster.tokens.issue(replace(spec, secrets={}), job=kubernetes_names.job_of(spec))  # kept: no secret
    namespace = cluster.namespace
    name = kubernetes_names.workload_name(spec)
    created: Optional[Created] = None
    try:
        if spec.kind == "train":
            job = kubernetes_spec.training_job(spec, settings)
            job.spec.template.metadata.labels[START_LABEL] = start
            made, adopted = _create_or_adopt(
                lambda: cluster.batch.create_namespaced_job(namespace, job),
                lambda: cluster.batch.delete_namespaced_job(name, namespace, propagation_policy="Background",
                                                            _preload_content=False),
                lambda: cluster.batch.read_namespaced_job(name, namespace), lambda found: _ran(cluster, spec, found))
            if adopted:
                return Created(made.metadata.uid, adopted=(made.spec.template.metadata.labels or {})[START_LABEL])
            created = Created(made.metadata.uid)
            owner = kubernetes_spec.owner_reference("Job", name, made.metadata.uid)
        else:
            deployment, service_of = _deployment_and_service(cluster, spec, settings)
            deployment.spec.template.metadata.labels[START_LABEL] = start
            made = _create(lambda: cluster.apps.create_namespaced_deployment(namespace, deployment),
                           lambda: cluster.apps.delete_namespaced_deployment(name, namespace,
                                                                             propagation_policy="Background",
                                                                             _preload_content=False),
                           lambda: cluster.apps.read_namespaced_deployment(name, namespace))
            created = Created(made.metadata.uid)
            owner = kubernetes_spec.owner_reference("Deployment", name, made.metadata.uid)
            service = service_of(spec, settings, owner)
            made_service = _create(lambda: cluster.core.create_namespaced_service(namespace, service),
                                   lambda: cluster.core.delete_namespaced_service(name, namespace,
                                                                                  _preload_content=False),
                                   lambda: cluster.core.read_namespaced_service(name, namespace))
            created.service, created.cluster_ip = name, made_service.spec.cluster_ip
        secret = kubernetes_spec.token_secret(spec, settings, token, owner)
        secret_name = kubernetes_names.token_secret_name(spec)
        _create(lambda: cluster.core.create_namespaced_secret(namespace, secret),
                lambda: cluster.core.delete_namespaced_secret(secret_name, namespace, _preload_content=False),
                lambda: cluster.core.read_namespaced_secret(secret_name, namespace))
        return created
    except BaseException as error:
        if engine_requests.is_timeout(error) or engine_requests.is_dropped(error):
            raise  # maybe carried out: the next start adopts what ran, or deletes what did not (and revokes)
        cluster.tokens.revoke(spec.job_id)
        if created is not None:
            delete_owner(cluster, {"object": "Job" if spec.kind == "train" else "Deployment", "name": name,
                                   "uid": created.uid})
        raise


def _deployment_and_service(cluster, spec: WorkloadSpec, settings):
    """The Deployment of an endpoint or a notebook, and the builder of its Service; a notebook's work directory
    claim is made first when there is none (kept from its earlier deploys otherwise)."""
    from kaos_backend.executors import kubernetes_notebook, kubernetes_spec
    if spec.kind != "notebook":
        return kubernetes_spec.endpoint_deployment(spec, settings), kubernetes_spec.endpoint_service
    deployment = kubernetes_notebook.notebook_deployment(spec, settings)
    if settings.notebook_storage:
        claim = kubernetes_notebook.work_claim(spec, settings)
        try:
            cluster.core.create_namespaced_persistent_volume_claim(cluster.namespace, claim)
        except Exception as error:  # noqa: BLE001
            if not is_status(error, 409):  # 409: the claim of an earlier deploy, with its work
                raise
    return deployment, kubernetes_notebook.notebook_service


def _ran(cluster, spec: WorkloadSpec, job) -> bool:
    """The training's Job `job` (an earlier start's, not being deleted) owns the token Secret of `spec`: the start
    that made it got that far, and its pod has run, or runs."""
    if job.metadata.deletion_timestamp is not None:
        return False
    try:
        secret = cluster.core.read_namespaced_secret(kubernetes_names.token_secret_name(spec), cluster.namespace)
    except Exception as error:  # noqa: BLE001
        if is_status(error, 404):
            return False
        raise
    return any(owner.uid == job.metadata.uid for owner in secret.metadata.owner_references or [])


def _create(create: Callable, delete: Callable, read: Callable):
    """`create()`; when the name is taken (409), `delete()` the leftover, wait until `read()` says it is gone
    (404), and `create()` once more. (Deletes are made without reading their answer: a Service's is a Status on
    some servers, which the client would fail to read as a Service.)"""
    return _create_or_adopt(create, delete, read, None)[0]


def _create_or_adopt(create: Callable, delete: Callable, read: Callable, adopt: Optional[Callable]):
    """(what `_create` makes, False); but (the leftover, True) when the name is taken by one for which
    `adopt(leftover)` holds."""
    try:
        return create(), False
    except Exception as error:  # noqa: BLE001
        if not is_status(error, 409):
            raise
    if adopt is not None:
        try:
            found = read()
        except Exception as error:  # noqa: BLE001
            if not is_status(error, 404):
                raise
            found = None
        if found is not None and adopt(found):
            return found, True
    try:
        delete()
    except Exception as error:  # noqa: BLE001
        if not is_status(error, 404):
            raise
    deadline = time.monotonic() + GONE_WAIT
    while time.monotonic() < deadline:
        try:
            read()
        except Exception as error:  # noqa: BLE001
            if is_status(error, 404):
                break
            raise
        time.sleep(0.1)
    return create(), False
