"""A fake Kubernetes cluster for tests: the API server (real HTTP on 127.0.0.1, for the official client), its
controllers (Job, Deployment/ReplicaSet, garbage collector, scheduler) and one node whose kubelet runs pods'
containers as local processes.

    with FakeCluster(tmp_path) as cluster:
        core = kubernetes.client.CoreV1Api(cluster.api_client())
        ...
        cluster.faults.add("OOMKilled", pods={"job-name": "train-1"})
        cluster.disconnect_watches(); cluster.compact()            # a server-side disconnect; etcd compaction
        service.spec.cluster_ip, 8080                                # a Service answers there (proxy.py)
        cluster.service_address("kaos", "serve-x", 8080)             # -> ("127.0.0.1", the pod's local port)

The namespaces `default`, `kube-system` and `kaos` exist, and one node (`kubefake-node`, allocatable `cpu`,
`memory`, `pods` and `nvidia.com/gpu` as given). See README.md for what is modelled and what is not.
"""
import os
import tempfile
from typing import Optional, Tuple

from . import kinds
from .deployments import DeploymentController
from .faults import Faults
from .gc import GarbageCollector
from .images import ImageResolver, host_images
from .jobs import JobController
from .kubelet import Kubelet
from .manager import Manager
from .owners import is_ready
from .podlogs import PodLogs
from .probes import resolve_port
from .proxy import KubeProxy
from .routes import Routes
from .scheduler import Scheduler
from .selectors import selector_matcher
from .server import HttpServer
from .store import Store
from .mount_points import MountPoints

NAMESPACES = ("default", "kube-system", "kaos")


class FakeCluster:
    def __init__(self, root: Optional[str] = None, images: ImageResolver = host_images, cpu: str = "4",
                 memory: str = "8Gi", gpus: int = 0, pods: int = 110, node: str = "kubefake-node",
                 bookmark_interval: float = 1.0, history: int = 100_000):
        """`root`: a directory for the pods' volumes (a temporary one by default); `images`: what each image
        stands for here (images.py); the node's allocatable capacity; how often watches that allow bookmarks get
        one (seconds); how many changes the watch history keeps."""
        self._temporary = None if root else tempfile.TemporaryDirectory(prefix="kubefake-")
        self.root = str(root or self._temporary.name)
        self.store = Store(history)
        self.faults = Faults()
        self.logs = PodLogs(self.store)
        self.node = node
        self.mount_points = MountPoints()   # held from here to stop()
        self.manager = Manager(self.store)
        self.kubelet = Kubelet(self.store, self.logs, self.faults, images, self.root, node, self.mount_points,
                               self.manager.errors)
        self.routes = Routes(self.store, self.logs.read, bookmark_interval, self.manager.errors)
        self.http = HttpServer(self.routes)
        self.proxy = KubeProxy(self.store, self.service_address)
        for part in (GarbageCollector(self.store), JobController(self.store), DeploymentController(self.store),
                     Scheduler(self.store, self.faults, node), self.kubelet, self.proxy):
            part.register(self.manager)
        for namespace in NAMESPACES:
            self.store.create(kinds.NAMESPACES, None, {"metadata": {"name": namespace}})
        self.capacity = {"cpu": cpu, "memory": memory, "pods": str(pods), "ephemeral-storage": "100Gi",
                         **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
        self.store.create(kinds.NODES, None, {"metadata": {"name": node, "labels": {
            "kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}})
        self.store.mutate(kinds.NODES, None, node, lambda obj: obj.update(status={
            "capacity": dict(self.capacity), "allocatable": dict(self.capacity),
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}],
            "nodeInfo": {"kubeletVersion": "v1.33.0-kubefake", "kubeProxyVersion": "",
                         "containerRuntimeVersion": "local://processes", "operatingSystem": "linux",
                         "architecture": "amd64", "osImage": "Debian GNU/Linux", "kernelVersion": os.uname().release,
                         "machineID": "kubefake", "systemUUID": "kubefake", "bootID": "kubefake"}}), "status")

    # -- lifecycle -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.http.url

    def start(self) -> "FakeCluster":
        self.proxy.start()
        self.manager.start()
        self.http.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every watch and log follow, stop every pod's processes, remove what it made."""
        self.store.close()
        self.http.stop()
        self.manager.stop()
        self.proxy.stop()
        self.kubelet.stop()
        self.mount_points.release()
        if self._temporary:
            self._temporary.cleanup()

    def __enter__(self) -> "FakeCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def configuration(self):
        """A kubernetes.client.Configuration for this server (no authentication, no TLS)."""
        import kubernetes.client
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return configuration

    def write_kubeconfig(self, path, context: str = "kubefake", namespace: str = "kaos") -> str:
        """Write a kubeconfig file whose `context` points at this server (no credentials), for a process of its
        own (a backend under test: KUBECONFIG=path); returns the path."""
        import yaml
        config = {"apiVersion": "v1", "kind": "Config", "current-context": context,
                  "clusters": [{"name": context, "cluster": {"server": self.url}}],
                  "users": [{"name": context, "user": {}}],
                  "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                             "namespace": namespace}}]}
        with open(path, "w") as file:
            yaml.safe_dump(config, file)
        return str(path)

    def api_client(self):
        """A new kubernetes.client.ApiClient talking to this server."""
        import kubernetes.client
        return kubernetes.client.ApiClient(self.configuration())

    # -- knobs and views for tests ---------------------------------------------------------------------------
    def disconnect_watches(self) -> None:
        """End every open watch stream now, as an API server restart would."""
        self.store.disconnect_watches()

    def expire_watches(self) -> int:
        """Every open watch ended with its resourceVersion expired (its resume gets 410 Gone), atomically
        (Store.expire_watches); the compacted resourceVersion."""
        return self.store.expire_watches()

    def compact(self) -> int:
        """Forget the change history (a watch from an older resourceVersion gets 410 Gone); the current one."""
        return self.store.compact()

    @property
    def errors(self):
        """What went wrong inside the fake itself (a reconciler or a pod worker that raised): a test's fixture
        checks it stays empty."""
        return self.manager.errors

    @property
    def requests(self) -> int:
        """How many HTTP requests the API server answered so far."""
        return self.routes.requests

    def pod_port(self, namespace: str, pod: str, port: int) -> Optional[int]:
        """The local port a pod's declared container port was published on (None if it declares no such port)."""
        obj = self.store.find(kinds.PODS, namespace, pod)
        return obj and self.kubelet.published(obj["metadata"]["uid"], port)

    def service_address(self, namespace: str, service: str, port) -> Optional[Tuple[str, int]]:
        """Where a Service's `port` (number or name) reaches a ready pod it selects, on this machine: (host,
        port), or None while it has no ready endpoint (or there is no such Service or port)."""
        obj = self.store.find(kinds.SERVICES, namespace, service)
        if obj is None:
            return None
        entry = next((p for p in obj["spec"].get("ports") or [] if port in (p.get("port"), p.get("name"))), None)
        if entry is None:
            return None
        selects = selector_matcher({"matchLabels": obj["spec"].get("selector") or {}})
        pods, _ = self.store.list(kinds.PODS, namespace, lambda p: selects(p) and is_ready(p)
                                  and not p["metadata"].get("deletionTimestamp"))
        for pod in pods:
            for container in pod["spec"]["containers"]:
                target = resolve_port(entry.get("targetPort", entry["port"]), container)
                local = target and self.kubelet.published(pod["metadata"]["uid"], target)
                if local:
                    return "127.0.0.1", local
        return None

    def log_text(self, namespace: str, pod: str, container: str) -> str:
        obj = self.store.get(kinds.PODS, namespace, pod)
        return self.logs.text(obj["metadata"]["uid"], container)
