"""Failure knobs: a test makes the fake cluster fail a pod the way a real one would report it.

    cluster.faults.add("OOMKilled", pods={"job-name": "train-x"}, container="train", after=0.5)

`pods` picks the pods: a dict of labels they must carry, a name prefix (str), or a predicate on the pod object
(None: every pod). A fault applies to pods that exist when it is added and to those created later, until removed.

    Unschedulable      the scheduler leaves the pod Pending: PodScheduled False, reason Unschedulable, `message`
                       (default: the real scheduler's "0/1 nodes are available: ..." for a node selector)
    ErrImagePull       the container's image cannot be pulled: waiting ErrImagePull, then ImagePullBackOff
    OOMKilled          the container's process is SIGKILLed `after` seconds after it started: terminated,
                       reason OOMKilled, exitCode 137
    CrashLoopBackOff   the container exits 1 at once each time it starts (`message` is its log line); with
                       restartPolicy Always/OnFailure the kubelet backs off: waiting CrashLoopBackOff
    Evicted            `after` seconds after the pod started running the kubelet evicts it: containers killed,
                       phase Failed, reason Evicted, `message`, a DisruptionTarget condition
    DeadlineExceeded   the pod is past its activeDeadlineSeconds: containers killed, phase Failed, reason
                       DeadlineExceeded
"""
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional, Union

KINDS = ("Unschedulable", "ErrImagePull", "OOMKilled", "CrashLoopBackOff", "Evicted", "DeadlineExceeded")
PodPicker = Union[None, str, dict, Callable[[dict], bool]]


@dataclass(eq=False)
class Fault:
    kind: str
    pods: PodPicker = None
    container: Optional[str] = None
    message: Optional[str] = None
    after: float = 0.0

    def matches(self, pod: dict, container: Optional[str] = None) -> bool:
        if container is not None and self.container not in (None, container):
            return False
        if self.pods is None:
            return True
        if isinstance(self.pods, str):
            return pod["metadata"]["name"].startswith(self.pods)
        if isinstance(self.pods, dict):
            labels = pod["metadata"].get("labels") or {}
            return all(labels.get(key) == value for key, value in self.pods.items())
        return bool(self.pods(pod))


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.active: List[Fault] = []
        self.on_change: List[Callable[[], None]] = []

    def add(self, kind: str, pods: PodPicker = None, container: Optional[str] = None,
            message: Optional[str] = None, after: float = 0.0) -> Fault:
        """Start failing the pods `pods` picks with `kind` (see the module docstring); returns the fault."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}: one of {', '.join(KINDS)}")
        fault = Fault(kind, pods, container, message, after)
        with self.lock:
            self.active.append(fault)
        for callback in self.on_change:
            callback()
        return fault

    def remove(self, fault: Fault) -> None:
        with self.lock:
            self.active = [f for f in self.active if f is not fault]
        for callback in self.on_change:
            callback()

    def find(self, kind: str, pod: dict, container: Optional[str] = None) -> Optional[Fault]:
        with self.lock:
            return next((f for f in self.active if f.kind == kind and f.matches(pod, container)), None)
