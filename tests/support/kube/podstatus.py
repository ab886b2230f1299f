"""What the kubelet knows of each container (`ContainerState`) and the pod status it reports from it, in the
shapes of the real API (core/v1 PodStatus, ContainerStatus, ContainerState):

    waiting     {reason: ContainerCreating | PodInitializing | ErrImagePull | ImagePullBackOff |
                 CrashLoopBackOff | CreateContainerConfigError | CreateContainerError, message}
    running     {startedAt}
    terminated  {exitCode, reason: Completed | Error | OOMKilled | StartError, message, startedAt, finishedAt,
                 containerID}

and the pod's phase (Pending until the main containers started, Running, Succeeded or Failed), its conditions
(PodReadyToStartContainers, Initialized, Ready, ContainersReady; PodScheduled is the scheduler's, kept) and,
for a pod the kubelet ended itself, `reason` / `message` (Evicted, DeadlineExceeded).
"""
import hashlib
from dataclasses import dataclass
from typing import List, Optional, Tuple

from . import clock
from .owners import set_condition


@dataclass
class ContainerState:
    name: str
    image: str
    init: bool = False
    process: object = None                         # the current run (containers.ContainerProcess), if any
    waiting: Optional[Tuple[str, Optional[str]]] = ("ContainerCreating", None)
    terminated: Optional[dict] = None              # the current run's end, once it ended
    last_terminated: Optional[dict] = None         # the run before (lastState)
    restarts: int = 0
    ready: bool = False
    final: bool = False                            # ended, and will not be restarted
    next_start: float = 0.0                        # not started again before (the crash back-off)
    restart_pending: bool = False                  # ended, and waits for its back-off to start again
    backoff: float = 0.0
    pulled: bool = False

    def container_id(self) -> str:
        digest = hashlib.sha256(f"{self.name}/{self.restarts}/{id(self)}".encode()).hexdigest()
        return f"containerd://{digest}"

    def status(self) -> dict:
        image_id = f"{self.image}@sha256:{hashlib.sha256(self.image.encode()).hexdigest()}" if self.pulled else ""
        status = {"name": self.name, "image": self.image, "imageID": image_id, "ready": self.ready,
                  "restartCount": self.restarts, "started": bool(self.process and self.terminated is None),
                  "lastState": {"terminated": self.last_terminated} if self.last_terminated else {}}
        if self.terminated is not None:
            status["state"] = {"terminated": self.terminated}
            status["containerID"] = self.terminated["containerID"]
        elif self.waiting:
            reason, message = self.waiting
            status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        else:
            status["state"] = {"running": {"startedAt": clock.rfc3339(self.process.started_at)}}
            status["containerID"] = self.container_id()
        if self.init:
            status.pop("started")
        return status


def terminated(state: ContainerState, reason: str, message: Optional[str] = None) -> dict:
    process = state.process
    record = {"exitCode": process.exit_code, "reason": reason, "startedAt": clock.rfc3339(process.started_at),
              "finishedAt": clock.rfc3339(process.finished_at), "containerID": state.container_id()}
    if message:
        record["message"] = message
    return record


def pod_status(current: dict, init: List[ContainerState], main: List[ContainerState], phase: str,
               started_at: Optional[float], reason: Optional[Tuple[str, str]]) -> dict:
    """The pod's new status, from the current one (`current`, whose PodScheduled and DisruptionTarget conditions
    and qosClass are kept) and the kubelet's container states."""
    now = clock.rfc3339()
    status = dict(current)
    conditions = list(current.get("conditions") or [])
    terminal = phase in ("Succeeded", "Failed")
    conditions = set_condition(conditions, "PodReadyToStartContainers", "True" if started_at else "False",
                               now=now)
    incomplete = [s.name for s in init if not (s.terminated and s.terminated["exitCode"] == 0)]
    conditions = set_condition(conditions, "Initialized", "False" if incomplete else "True",
                               "ContainersNotInitialized" if incomplete else None,
                               f"containers with incomplete status: [{' '.join(incomplete)}]" if incomplete else None,
                               now)
    unready = [s.name for s in main if not s.ready]
    for kind in ("Ready", "ContainersReady"):
        if terminal:
            conditions = set_condition(conditions, kind, "False", "PodCompleted", None, now)
        elif unready:
            conditions = set_condition(conditions, kind, "False", "ContainersNotReady",
                                       f"containers with unready status: [{' '.join(unready)}]", now)
        else:
            conditions = set_condition(conditions, kind, "True", None, None, now)
    order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    conditions.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))
    status.update(phase=phase, conditions=conditions, hostIP="127.0.0.1", hostIPs=[{"ip": "127.0.0.1"}],
                  podIP="127.0.0.1", podIPs=[{"ip": "127.0.0.1"}],
                  containerStatuses=[s.status() for s in main])
    if started_at:
        status["startTime"] = clock.rfc3339(started_at)
    if init:
        status["initContainerStatuses"] = [s.status() for s in init]
    if reason:
        status["reason"], status["message"] = reason
    return status
