"""Waiting for the backend's Deployment to be available after `kaos build deploy -c KUBERNETES|MINIKUBE`, and
saying in one line why it is not: what its pods report (a container's waiting or terminated reason and message,
the scheduler's Unschedulable message, an eviction), as `kubectl rollout status` and `kubectl describe pod` would.

A problem that waiting will not mend ends the wait at once: an image that cannot be pulled (ImagePullBackOff,
after the first ErrImagePull), a container that cannot be created (a missing Secret key, ...), a backend that
keeps crashing (CrashLoopBackOff after CRASH_RESTARTS restarts: with PostgreSQL the backend's first start may fail
while the database initialises), a pod the ReplicaSet cannot create (the Deployment's ReplicaFailure). Anything
else (Unschedulable: a cluster autoscaler may add a node; an image still pulling) is waited for until the
timeout, then reported.
"""
import time
from typing import Dict, List, Optional, Tuple

from kaos_cli.kube_api import Cluster, KubeError
from kaos_cli.kube_manifests import ObjectRef

POLL = 1.0            # seconds between two looks at the Deployment and its pods
CRASH_RESTARTS = 3    # a container restarted this often, and crashing still, fails the deploy at once
FATAL_WAITING = {"ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError",
                 "CreateContainerError", "RunContainerError"}
DEPLOYMENT = "apps/v1", "Deployment"


def rolled_out(deployment: Dict) -> bool:
    """Has the Deployment's newest template its replicas available, and no pod of an older one left (the
    condition `kubectl rollout status` waits for)?"""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    return ((status.get("observedGeneration") or 0) >= (deployment["metadata"].get("generation") or 0)
            and (status.get("updatedReplicas") or 0) >= wanted
            and (status.get("replicas") or 0) <= (status.get("updatedReplicas") or 0)
            and (status.get("availableReplicas") or 0) >= wanted)


def stuck(deployment: Dict) -> Optional[str]:
    """Why the Deployment will not progress, from its conditions: its pods cannot be created (ReplicaFailure: a
    quota, a PodSecurity policy refusing the privileged Docker engine, ...) or its progress deadline passed. None
    when neither."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return f"{condition.get('reason') or 'ReplicaFailure'}: {condition.get('message') or ''}".rstrip(": ")
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return condition.get("message") or "ProgressDeadlineExceeded"
    return None


def pod_problem(pod: Dict) -> Optional[Tuple[bool, str]]:
    """What keeps `pod` from being ready, as (fatal, one line), or None when nothing is wrong (yet)."""
    name, status = pod["metadata"]["name"], pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return False, f"pod {name} was Evicted: {status.get('message') or ''}".rstrip(": ")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            return False, f"pod {name} is Unschedulable: {condition.get('message') or ''}".rstrip(": ")
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        found = _container_problem(container)
        if found:
            fatal, text = found
            return fatal, f"pod {name}: container {container['name']}: {text}"
    return None


def _container_problem(container: Dict) -> Optional[Tuple[bool, str]]:
    state = container.get("state") or {}
    waiting, terminated = state.get("waiting"), state.get("terminated")
    if waiting and waiting.get("reason") == "CrashLoopBackOff":
        last = ((container.get("lastState") or {}).get("terminated")) or {}
        exited = f" (exit code {last.get('exitCode')}, {last.get('reason') or 'Error'})" if last else ""
        said = f": {_one_line(last['message'])}" if last.get("message") else ""
        return (container.get("restartCount") or 0) >= CRASH_RESTARTS, f"CrashLoopBackOff{exited}{said}"
    if waiting and waiting.get("reason") in FATAL_WAITING | {"ErrImagePull"}:
        text = waiting["reason"] + (f": {waiting['message']}" if waiting.get("message") else "")
        return waiting["reason"] in FATAL_WAITING, text
    if terminated and terminated.get("exitCode"):
        said = f": {_one_line(terminated['message'])}" if terminated.get("message") else ""
        return False, f"exited with code {terminated['exitCode']} ({terminated.get('reason') or 'Error'}){said}"
    return None


def _one_line(text: str) -> str:
    """A termination message (the container's own, up to 4 KiB) as one line."""
    return " ".join(text.split())[:500]


def live_pods(cluster: Cluster, namespace: str, deployment: Dict) -> List[Dict]:
    """The Deployment's pods that are not being deleted, the newest first."""
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    pods = [pod for pod in cluster.list("v1", "Pod", namespace, selector)
            if not pod["metadata"].get("deletionTimestamp")]
    return sorted(pods, key=lambda pod: pod["metadata"].get("creationTimestamp") or "", reverse=True)


def crash_cause(cluster: Cluster, namespace: str, pod: Dict, container: str) -> Optional[str]:
    """Why the container's previous run ended, from its log (the backend's `Error - ...` line)."""
    from kaos_cli.local_platform import cause_in_log

    return cause_in_log(cluster.pod_log(pod["metadata"]["name"], namespace, container, previous=True, lines=50))


def wait_available(cluster: Cluster, namespace: str, name: str, timeout: float) -> Optional[str]:
    """Wait up to `timeout` seconds for the Deployment `name` to be available: None once it is, else why not
    (one line). Raises KubeError when the API server cannot be asked."""
    deadline = time.monotonic() + timeout
    last = "its pod did not start"
    while True:
        deployment = cluster.read(ObjectRef(*DEPLOYMENT, name), namespace)
        if deployment is None:
            return f"the Deployment {name} is gone"
        if rolled_out(deployment):
            return None
        blocked = stuck(deployment)
        if blocked:
            return blocked
        for pod in live_pods(cluster, namespace, deployment):
            found = pod_problem(pod)
            if found:
                fatal, last = found
                if fatal:
                    return _with_cause(cluster, namespace, pod, last)
                break
        if time.monotonic() >= deadline:
            return f"not available after {timeout:.0f} s: {last}"
        time.sleep(POLL)


def _with_cause(cluster: Cluster, namespace: str, pod: Dict, problem: str) -> str:
    """`problem`, and for a crashing container what its last run logged."""
    if "CrashLoopBackOff" not in problem:
        return problem
    container = problem.split(": container ", 1)[1].split(":", 1)[0]
    try:
        cause = crash_cause(cluster, namespace, pod, container)
    except KubeError:
        cause = None
    return f"{problem}: {cause}" if cause else problem
