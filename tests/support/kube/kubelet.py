"""The fake node's kubelet: a `PodWorker` (podworker.py) for each pod bound to the node, the pods' logs, volumes
and published ports.

The fake's pod network: every pod's IP (and the node's) is 127.0.0.1, and pods share this machine's ports. So
that two pods can both "listen on 8080", each port a pod's containers declare (`ports[].containerPort`) is
published on a free local port chosen when the pod starts; the container is told that port wherever the pod
spec says the declared one in an environment variable (`PORT=8080` becomes `PORT=41234`), the readiness probe
and the Services reach it there (`Kubelet.published`, `FakeCluster.service_address`). A workload that takes its
port from its environment (kaos's serve contract: $PORT) works unchanged; one with a port written in its code
or its arguments does not.
"""
import threading
from typing import Dict, Optional

from tests.support.ports import free_port

from . import clock
from .faults import Faults
from .images import ImageResolver
from .kinds import PODS
from .mount_points import MountPoints
from .owners import set_condition
from .podlogs import PodLogs
from .podworker import PodWorker
from .store import Store
from .volumes import Volumes


class Kubelet:
    def __init__(self, store: Store, logs: PodLogs, faults: Faults, images: ImageResolver, root: str,
                 node: str, mount_points: MountPoints, errors: list, tick: float = 0.1, pull_backoff: float = 0.3,
                 crash_backoff: float = 0.2):
        self.store = store
        self.logs = logs
        self.faults = faults
        self.images = images
        self.volumes = Volumes(store, root, mount_points)
        self.node = node
        self.errors = errors                  # where a worker that failed says why (a bug of the fake)
        self.tick = tick                      # how often a worker looks at its pod and processes (seconds)
        self.pull_backoff = pull_backoff      # ErrImagePull → ImagePullBackOff after this long
        self.crash_backoff = crash_backoff    # the first restart's back-off (doubling, at most 5 s)
        self.workers: Dict[str, PodWorker] = {}
        self.ports: Dict[str, Dict[int, int]] = {}   # pod uid -> {declared port: local port}
        self.lock = threading.Lock()
        self.stopped = False

    def routes(self, change):
        if change.resource == PODS and change.obj["spec"].get("nodeName") == self.node:
            yield "kubelet", change.obj["metadata"]["uid"], change.obj["metadata"]["namespace"], \
                change.obj["metadata"]["name"]

    def register(self, manager) -> None:
        manager.register("kubelet", self.reconcile, self.routes)
        self.faults.on_change.append(self.wake_all)

    def reconcile(self, key: tuple) -> Optional[float]:
        _, uid, namespace, name = key
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None and not self.stopped:
                pod = self.store.find(PODS, namespace, name)
                if pod is None or pod["metadata"]["uid"] != uid or pod["metadata"].get("deletionTimestamp"):
                    if pod is not None and pod["metadata"]["uid"] == uid:  # deleted before it started
                        self.store.delete(PODS, namespace, name, grace=0)
                    return None
                worker = self.workers[uid] = PodWorker(self, pod)
                worker.thread.start()
        worker.wake.set()
        return None

    def wake_all(self) -> None:
        with self.lock:
            for worker in self.workers.values():
                worker.wake.set()

    def publish_ports(self, pod: dict) -> Dict[int, int]:
        declared = [port["containerPort"] for container in pod["spec"]["containers"]
                    for port in container.get("ports") or []]
        published = {port: free_port() for port in declared}
        self.ports[pod["metadata"]["uid"]] = published
        return published

    def published(self, uid: str, port: int) -> Optional[int]:
        return self.ports.get(uid, {}).get(port)

    def disrupt(self, pod: dict, message: str) -> None:
        """The DisruptionTarget condition of a pod the kubelet is about to end (eviction)."""
        def write(edited):
            edited["status"]["conditions"] = set_condition(edited["status"].get("conditions") or [],
                                                           "DisruptionTarget", "True", "TerminationByKubelet",
                                                           message, clock.rfc3339())
        self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], write, "status")

    def forget(self, uid: str, pod: Optional[dict]) -> None:
        """A worker's pod is gone: its logs, ports and volumes go too."""
        with self.lock:
            self.workers.pop(uid, None)
            self.ports.pop(uid, None)
        self.logs.forget(uid)
        if pod is not None:
            self.volumes.remove(pod)

    def stop(self) -> None:
        """Stop every pod's processes (the node goes away)."""
        with self.lock:
            self.stopped = True
            workers = list(self.workers.values())
        for worker in workers:
            worker.wake.set()
        for worker in workers:
            worker.thread.join(timeout=10)
