"""What a workload's pod (and its Job) say about how it is doing, in kaos's words: pure functions over the objects
as the API sends them (JSON dicts, from the shared watch's cache).

    waiting_problem(pod)         why a pod does not start yet, if it is a reason to give up after a while:
                                 "cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory. ...",
                                 "cannot pull the image x: ImagePullBackOff: Back-off pulling image ..."
    ended(pod, main, restarts)   how the pod ended (or its `main` container, for a pod that restarts its
                                 containers: the first end counts): an exit record (outcome.py) with, where the
                                 exit code does not say it all, its `error` in words (evicted, deadline
                                 exceeded, the fetch of the inputs failed, CrashLoopBackOff)
    job_failure(job)             a Job's terminal failure the pods do not show (DeadlineExceeded: the Job
                                 controller deleted them)

A container's exit code 128 + N is signal N (a shell's and the runtime's convention); the runtime's OOMKilled is
"out of memory (limit X)" as the other executors say it.
"""
import signal
from typing import Dict, Optional

from kaos_backend.executors import outcome

FETCH = "fetch"
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
FAILED_WITHOUT_CODE = 1   # the exit code of a workload that ended without one of its own (never ran, evicted)


def _status(pod: dict) -> dict:
    return pod.get("status") or {}


def container_status(pod: dict, name: str) -> Optional[dict]:
    """The status of the container (or init container) `name` of `pod`, None before the kubelet reports it."""
    status = _status(pod)
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if entry.get("name") == name:
            return entry
    return None


def started(pod: dict, name: str) -> bool:
    """The container `name` runs or ran (it has a log to read)."""
    entry = container_status(pod, name) or {}
    state = entry.get("state") or {}
    return bool(state.get("running") or state.get("terminated") or (entry.get("lastState") or {}).get("terminated"))


def terminated(pod: dict, name: str, restarts: bool = False) -> Optional[dict]:
    """The container's `terminated` state once it ended (with `restarts`, also its last run's, for a container
    the kubelet starts again), else None."""
    entry = container_status(pod, name) or {}
    end = (entry.get("state") or {}).get("terminated")
    if end is None and restarts:
        end = (entry.get("lastState") or {}).get("terminated")
    return end


def waiting_reason(pod: dict, name: str) -> Optional[str]:
    return (((container_status(pod, name) or {}).get("state") or {}).get("waiting") or {}).get("reason")


def waiting_problem(pod: dict) -> Optional[str]:
    """Why the pod cannot start, in words, when it is one that may not pass by itself: the scheduler finds no
    node for it, or an image cannot be pulled. None otherwise (still starting, or running)."""
    status = _status(pod)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" and \
                condition.get("reason") == "Unschedulable":
            return f"cannot be scheduled: {condition.get('message') or 'no node can run it'}"
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (entry.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PULL_FAILURES:
            message = f": {waiting['message']}" if waiting.get("message") else ""
            return f"cannot pull the image {entry.get('image')}: {waiting['reason']}{message}"
    return None


def exit_record(end: dict, memory: Optional[str], last_line: Optional[str]) -> dict:
    """The exit record (outcome.py) of a container's `terminated` state."""
    code = int(end.get("exitCode") or 0)
    oom = end.get("reason") == "OOMKilled"
    status = code
    if code > 128:
        try:
            status = -signal.Signals(code - 128).value
        except ValueError:
            pass
    if oom and status >= 0:
        status = -signal.SIGKILL
    return outcome.record_for(status, oom_kills=1 if oom else 0, memory=memory, last_line=last_line)


def ended(pod: dict, main: str, restarts: bool, memory: Optional[str],
          last_lines: Dict[str, Optional[str]]) -> Optional[dict]:
    """The exit record of a pod that ended, or whose `main` container ended once (`restarts`: a Deployment's pod,
    whose containers the kubelet would start again), else None. `last_lines`: each container's last line of
    output (the reason of a failure quotes it)."""
    status = _status(pod)
    if status.get("reason") == "Evicted":
        return _failed(pod, main, memory, f"evicted: {status.get('message') or 'by the node'}".rstrip())
    if status.get("reason") == "DeadlineExceeded":
        return _failed(pod, main, memory, f"deadline exceeded: {status.get('message') or 'activeDeadlineSeconds'}")
    fetch = terminated(pod, FETCH, restarts=True)
    if fetch is not None and int(fetch.get("exitCode") or 0) != 0:
        record = exit_record(fetch, memory, last_lines.get(FETCH))
        record["error"] = f"could not fetch its inputs: {outcome.describe(record)}"
        return record
    end = terminated(pod, main, restarts)
    if end is not None:
        record = exit_record(end, memory, last_lines.get(main))
        if restarts and waiting_reason(pod, main) == "CrashLoopBackOff":
            record["error"] = f"CrashLoopBackOff: {outcome.describe(record)}"
        return record
    if status.get("phase") == "Failed":
        why = ": ".join(part for part in (status.get("reason"), status.get("message")) if part)
        return _failed(pod, main, memory, f"the pod failed{': ' + why if why else ''}")
    return None


def _failed(pod: dict, main: str, memory: Optional[str], error: str) -> dict:
    end = terminated(pod, main)
    record = exit_record(end, memory, None) if end else outcome.record_for(FAILED_WITHOUT_CODE, memory=memory)
    record["error"] = error
    return record


def job_failure(job: Optional[dict]) -> Optional[str]:
    """Why a Job failed, when the Job says it (Failed condition): "deadline exceeded: ..." for DeadlineExceeded,
    else "<reason>: <message>"; None while it has not failed."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            if condition.get("reason") == "DeadlineExceeded":
                return f"deadline exceeded: {condition.get('message') or 'activeDeadlineSeconds passed'}"
            return ": ".join(part for part in (condition.get("reason"), condition.get("message")) if part) or \
                "the Job failed"
    return None


def job_finished(job: Optional[dict]) -> bool:
    """The Job is Complete or Failed."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return True
    return False


def describe(record: dict) -> str:
    """How the workload ended, in words: the record's `error` when it has one, else outcome.describe."""
    if record.get("requested"):
        return outcome.describe(record)
    return record.get("error") or outcome.describe(record)
