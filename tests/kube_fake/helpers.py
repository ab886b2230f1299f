"""What the tests of the fake cluster share: bounded waits and the official client's APIs on a cluster."""
import time
from types import SimpleNamespace

import kubernetes.client as k8s

WAIT = 20.0  # a bound against hanging, never a speed claim
NS = "kaos"


def wait_for(check, what: str, timeout: float = WAIT):
    """Poll `check()` until it returns something truthy (returned); fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def apis(cluster) -> SimpleNamespace:
    client = cluster.api_client()
    return SimpleNamespace(client=client, core=k8s.CoreV1Api(client), batch=k8s.BatchV1Api(client),
                           apps=k8s.AppsV1Api(client), coordination=k8s.CoordinationV1Api(client))


def container(name: str = "main", command=None, image: str = "python:3.11-slim", **extra) -> k8s.V1Container:
    return k8s.V1Container(name=name, image=image, command=command, **extra)


def pod(name: str, *containers, labels=None, restart_policy: str = "Never", **spec) -> k8s.V1Pod:
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name, labels=labels),
                     spec=k8s.V1PodSpec(containers=list(containers), restart_policy=restart_policy, **spec))


def job(name: str, *containers, backoff_limit: int = 0, labels=None, **spec) -> k8s.V1Job:
    template = k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels),
                                     spec=k8s.V1PodSpec(containers=list(containers), restart_policy="Never"))
    return k8s.V1Job(metadata=k8s.V1ObjectMeta(name=name, labels=labels),
                     spec=k8s.V1JobSpec(template=template, backoff_limit=backoff_limit, **spec))


def python(code: str):
    return ["python3", "-c", code]


def condition(obj, kind: str):
    return next((c for c in (obj.status.conditions or []) if c.type == kind), None)


def job_pods(api, name: str):
    return api.core.list_namespaced_pod(NS, label_selector=f"batch.kubernetes.io/job-name={name}").items


def one_pod(api, name: str):
    return wait_for(lambda: (job_pods(api, name) or [None])[0], f"the pod of job {name}")


def container_state(api, pod_name: str, index: int = 0, init: bool = False):
    status = api.core.read_namespaced_pod(pod_name, NS).status
    statuses = (status.init_container_statuses if init else status.container_statuses) or []
    return statuses[index].state if len(statuses) > index else k8s.V1ContainerState()
