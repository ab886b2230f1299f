"""The kubernetes executor's view of the cluster: one shared watch per kind and namespace (after KubeSpawner's
reflector), so that status costs the API server a few long requests, not a call per workload per tick.

    informer = Informer(core, batch, apps, "kaos", "app.kubernetes.io/managed-by=kaos,kaos.io/platform=<id>")
    informer.start(); informer.wait_synced(30)
    informer.pods_of("<job id>-0"); informer.jobs.get("train-..."); informer.wait_for_change(1.0)

Each `Reflector` lists its kind (pods, Jobs, Deployments, Services) with the label selector, then watches from
the list's resourceVersion with bookmarks; a watch that ends (the server's timeout, a disconnect, an API server
restart) is resumed from the last resourceVersion it saw; a 410 Gone (the history compacted past it) lists again,
which replaces the cache whole (objects deleted meanwhile drop out). The cache holds the objects as the API sends
them (JSON dicts), by name. Every change notifies one condition (`changed`) that workloads wait on.
"""
import json
import logging
import threading
import time
from typing import Callable, Dict, List, Optional

from kaos_backend.executors import kubernetes_names
from kaos_backend.executors.kubernetes_client import is_status, response_lines

log = logging.getLogger("kaos_backend.executors.kubernetes")
WATCH_SECONDS = 300       # the server ends a watch after this; it is resumed at once
READ_MARGIN = 30          # the client gives up on a silent watch this long after the server should have ended it
RETRY_SECONDS = (0.2, 30.0)   # back-off after a failed list or watch: first, most


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Reflector:
    """One kind's objects in one namespace, matching one label selector, kept current by list + watch."""

    def __init__(self, kind: str, list_call: Callable, namespace: str, selector: str, changed: threading.Condition,
                 watch_seconds: int = WATCH_SECONDS):
        self.kind = kind
        self.list_call = list_call
        self.namespace = namespace
        self.selector = selector
        self.changed = changed
        self.watch_seconds = watch_seconds
        self.objects: Dict[str, dict] = {}
        self.resource_version: Optional[str] = None
        self.synced = threading.Event()
        self.calls = {"list": 0, "watch": 0}    # requests made (what a benchmark counts)
        self._stopped = threading.Event()
        self._retry = threading.Event()   # set: the back-off after a failure ends at once
        self._response = None
        self._thread = threading.Thread(target=self._run, name=f"kaos-kube-watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._retry.set()
        self._end_stream()
        self._thread.join(timeout=5)

    def reconnect(self) -> None:
        """End the current watch (it is resumed from the last resourceVersion seen) and any back-off: after the
        API server was away, a connection it held may be dead without a word (its host powered off or rebooted:
        nothing more arrives until the read timeout, minutes), and the back-off may have grown to RETRY_SECONDS[1]."""
        self._retry.set()
        self._end_stream()

    def _end_stream(self) -> None:
        response = self._response
        if response is not None:
            try:  # urllib3 2.3's `shutdown` wakes a read blocked on the socket; `close` is what older ones have
                (getattr(response, "shutdown", None) or response.close)()
            except Exception:  # noqa: BLE001 - closing a stream another thread reads: best effort
                pass

    def get(self, name: str) -> Optional[dict]:
        with self.changed:
            return self.objects.get(name)

    def select(self, predicate: Callable[[dict], bool]) -> List[dict]:
        with self.changed:
            return [obj for obj in self.objects.values() if predicate(obj)]

    # -- the loop -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        delay = RETRY_SECONDS[0]
        while not self._stopped.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                self._watch()
                delay = RETRY_SECONDS[0]
            except Expired:
                log.info("The watch of %s in %s expired (410 Gone): listing again", self.kind, self.namespace)
                self.resource_version = None
            except Exception as error:  # noqa: BLE001 - the API server unreachable or restarting: try again
                if self._stopped.is_set():
                    return
                if is_status(error, 410):
                    self.resource_version = None
                    continue
                log.warning("The watch of %s in %s failed (%s: %s): again in %.1fs", self.kind, self.namespace,
                            type(error).__name__, str(error).splitlines()[0][:300] if str(error) else "", delay)
                if self._retry.wait(delay):
                    delay = RETRY_SECONDS[0]
                else:
                    delay = min(RETRY_SECONDS[1], delay * 2)
                self._retry.clear()

    def _list(self) -> None:
        self.calls["list"] += 1
        response = self.list_call(self.namespace, label_selector=self.selector, _preload_content=False,
                                  _request_timeout=(10, 120))
        data = json.loads(response.data)
        objects = {item["metadata"]["name"]: item for item in data.get("items") or []}
        with self.changed:
            self.objects = objects
            self.resource_version = data["metadata"]["resourceVersion"]
            self.synced.set()
            self.changed.notify_all()

    def _watch(self) -> None:
        self.calls["watch"] += 1
        response = self.list_call(self.namespace, label_selector=self.selector, watch=True,
                                  resource_version=self.resource_version, allow_watch_bookmarks=True,
                                  timeout_seconds=self.watch_seconds, _preload_content=False,
                                  _request_timeout=(10, self.watch_seconds + READ_MARGIN))
        self._response = response
        try:
            for line in response_lines(response):
                if self._stopped.is_set():
                    return
                if line.strip():
                    self._apply(json.loads(line))
        finally:
            self._response = None
            response.release_conn()

    def _apply(self, event: dict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired()
            raise RuntimeError(f"the watch answered an error: {obj.get('code')} {obj.get('reason')}: "
                               f"{obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        with self.changed:
            if kind in ("ADDED", "MODIFIED"):
                self.objects[obj["metadata"]["name"]] = obj
            elif kind == "DELETED":
                self.objects.pop(obj["metadata"]["name"], None)
            if version:
                self.resource_version = version
            if kind != "BOOKMARK":
                self.changed.notify_all()


class Informer:
    """The pods, Jobs, Deployments and Services one platform made in one namespace (its label selector)."""

    def __init__(self, core, batch, apps, namespace: str, selector: str, watch_seconds: int = WATCH_SECONDS):
        self.namespace = namespace
        self.changed = threading.Condition()
        self.pods = Reflector("pods", core.list_namespaced_pod, namespace, selector, self.changed, watch_seconds)
        self.jobs = Reflector("jobs", batch.list_namespaced_job, namespace, selector, self.changed, watch_seconds)
        self.deployments = Reflector("deployments", apps.list_namespaced_deployment, namespace, selector,
                                     self.changed, watch_seconds)
        self.services = Reflector("services", core.list_namespaced_service, namespace, selector, self.changed,
                                  watch_seconds)  # an endpoint's or notebook's Service deleted by someone else
        self.reflectors = (self.pods, self.jobs, self.deployments, self.services)
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> "Informer":
        with self._lock:
            if not self._started:
                self._started = True
                for reflector in self.reflectors:
                    reflector.start()
        return self

    def stop(self) -> None:
        for reflector in self.reflectors:
            reflector.stop()

    def reconnect(self) -> None:
        """Every kind's watch made again at once (Reflector.reconnect), its cache kept meanwhile."""
        for reflector in self.reflectors:
            reflector.reconnect()

    def wait_synced(self, timeout: float) -> bool:
        """Every kind listed once (within `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        return all(reflector.synced.wait(max(0.0, deadline - time.monotonic())) for reflector in self.reflectors)

    def wait_for_change(self, timeout: float) -> None:
        """Until a change is seen, or `timeout` seconds."""
        with self.changed:
            self.changed.wait(timeout)

    def notify(self) -> None:
        """Wake whoever waits for a change (a stop request)."""
        with self.changed:
            self.changed.notify_all()

    def pods_of(self, workload: str) -> List[dict]:
        """The pods of the workload `workload` (its spec's job_id), oldest first."""
        value = kubernetes_names.label_value(workload)
        pods = self.pods.select(lambda pod: (pod["metadata"].get("labels") or {}).get(kubernetes_names.WORKLOAD)
                                == value)
        return sorted(pods, key=lambda pod: (pod["metadata"].get("creationTimestamp") or "",
                                             pod["metadata"]["name"]))

    def calls(self) -> Dict[str, int]:
        """The list and watch requests made so far, of all kinds."""
        total = {"list": 0, "watch": 0}
        for reflector in self.reflectors:
            for key, value in reflector.calls.items():
                total[key] += value
        return total
