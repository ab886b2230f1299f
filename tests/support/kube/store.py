"""The fake API server's memory: objects by resource, namespace and name, one resourceVersion counter for all of
them (as etcd's revision), and the history of changes that watches replay.

Every write goes through one lock, gets the next resourceVersion, and is recorded as a `Change` (ADDED, MODIFIED,
DELETED) that listeners (the controllers, the kubelet) receive at once and watches read from `changes_since`. The
history keeps the last `history` changes; `compact()` drops it all, as etcd's compaction does, so that a watch
from an older resourceVersion is answered 410 Gone ("Expired").

Deletion follows the real server: an object with finalizers, a pod bound to a node (graceful deletion: the kubelet
stops its containers, then deletes it with a grace period of 0), or a Foreground deletion (the finalizer
`foregroundDeletion`, removed by the garbage collector once the dependents are gone) first gets a
deletionTimestamp; Orphan takes the owner reference off the dependents; Background removes the object and leaves
the dependents to the garbage collector (gc.py).
"""
import collections
import copy
import threading
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from . import clock, defaults
from .errors import ApiError, already_exists, bad_request, conflict, expired, not_found
from .kinds import NAMESPACES, PODS, Resource
from .patching import apply_patch

Key = Tuple[Tuple[str, str], str, str]  # ((group, plural), namespace or "", name)
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass
class Change:
    rv: int
    type: str                 # ADDED | MODIFIED | DELETED
    resource: Resource
    obj: dict                 # the object after the change (as deleted, for DELETED); never changed afterwards
    old: Optional[dict]       # before it (None for ADDED)


class Store:
    def __init__(self, history: int = 100_000):
        self.lock = threading.Condition(threading.RLock())
        self.rv = 0
        self.compacted = 0                  # every change with rv > compacted is in self.changes
        self.changes = collections.deque(maxlen=history)
        self.objects: Dict[Key, dict] = {}
        self.resources: Dict[Tuple[str, str], Resource] = {}
        self.listeners: List[Callable[[Change], None]] = []
        self.watch_epoch = 0                # bumped to end every open watch (a server-side disconnect)
        self.confirmed = set()              # uids of pods whose deletion the kubelet confirmed (grace period 0)
        self.closed = False

    # -- reading ---------------------------------------------------------------------------------------------
    @staticmethod
    def key(resource: Resource, namespace: Optional[str], name: str) -> Key:
        return resource.key, (namespace or "") if resource.namespaced else "", name

    def get(self, resource: Resource, namespace: Optional[str], name: str) -> dict:
        """A copy of the object. Raises ApiError 404."""
        with self.lock:
            obj = self.objects.get(self.key(resource, namespace, name))
            if obj is None:
                raise not_found(resource.describe(), name)
            return copy.deepcopy(obj)

    def find(self, resource: Resource, namespace: Optional[str], name: str) -> Optional[dict]:
        try:
            return self.get(resource, namespace, name)
        except ApiError:
            return None

    def list(self, resource: Resource, namespace: Optional[str] = None,
             match: Callable[[dict], bool] = lambda obj: True) -> Tuple[List[dict], int]:
        """Copies of the objects of `resource` (in `namespace`, or all when None) that `match`, sorted by
        namespace and name, and the resourceVersion they are current at."""
        with self.lock:
            items = [copy.deepcopy(obj) for (res, ns, _), obj in sorted(self.objects.items())
                     if res == resource.key and (namespace is None or ns == namespace) and match(obj)]
            return items, self.rv

    def dependents(self, uid: str) -> List[Tuple[Resource, dict]]:
        """Every object with an owner reference to `uid`."""
        with self.lock:
            return [(self.resources[key[0]], copy.deepcopy(obj)) for key, obj in self.objects.items()
                    if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])]

    def changes_since(self, rv: int) -> List[Change]:
        """The changes after resourceVersion `rv`. Raises ApiError 410 when the history no longer reaches it."""
        with self.lock:
            if rv < self.compacted:
                raise expired(rv, self.compacted + 1)
            found = []
            for change in reversed(self.changes):
                if change.rv <= rv:
                    break
                found.append(change)
            return found[::-1]

    # -- writing ---------------------------------------------------------------------------------------------
    def _commit(self, change_type: str, resource: Resource, key: Key, obj: Optional[dict], old: Optional[dict]):
        self.rv += 1
        if change_type == "DELETED":
            del self.objects[key]
            snapshot = copy.deepcopy(old)
            snapshot["metadata"]["resourceVersion"] = str(self.rv)
        else:
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = obj
            snapshot = copy.deepcopy(obj)
        self.resources[resource.key] = resource
        if len(self.changes) == self.changes.maxlen:
            self.compacted = self.changes[0].rv
        change = Change(self.rv, change_type, resource, snapshot, old)
        self.changes.append(change)
        self.lock.notify_all()
        for listener in list(self.listeners):
            listener(change)
        return copy.deepcopy(snapshot)

    def create(self, resource: Resource, namespace: Optional[str], body: dict) -> dict:
        """Store a new object (defaulted and checked as the real server does); return it. Raises ApiError 409 when
        the name is taken, 404 when the namespace does not exist, 400/422 for a malformed object."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if resource.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = namespace = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        with self.lock:
            if resource.namespaced and self.key(NAMESPACES, None, namespace) not in self.objects:
                raise not_found("namespaces", namespace)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = defaults.generate_name(meta["generateName"],
                                                      lambda name: self.key(resource, namespace, name) in self.objects)
            defaults.prepare_new(resource, obj)
            key = self.key(resource, namespace, meta["name"])
            if key in self.objects:
                raise already_exists(resource.describe(), meta["name"])
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=clock.rfc3339(), generation=1)
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
                meta.pop(field, None)
            defaults.fill_after_create(resource, obj, self)
            return self._commit("ADDED", resource, key, obj, None)

    def replace(self, resource: Resource, namespace: Optional[str], name: str, body: dict,
                subresource: str = "") -> dict:
        """PUT: the object becomes `body` (its status only, for the `status` subresource; all but its status for
        a resource with a status subresource). A resourceVersion in `body` must be the current one (409)."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        with self.lock:
            current = self.get(resource, namespace, name)
            given = (body.get("metadata") or {}).get("resourceVersion")
            if given and given != current["metadata"]["resourceVersion"]:
                raise conflict(resource.describe(), name)
            if (body.get("metadata") or {}).get("name", name) != name:
                raise bad_request("the name of the object does not match the name on the URL")
            return self._update(resource, current, body, subresource)

    def patch(self, resource: Resource, namespace: Optional[str], name: str, body, content_type: str,
              subresource: str = "") -> dict:
        with self.lock:
            current = self.get(resource, namespace, name)
            patched = apply_patch(current, body, content_type)
            given = (patched.get("metadata") or {}).get("resourceVersion")
            if given and given != current["metadata"]["resourceVersion"]:
                raise conflict(resource.describe(), name)
            return self._update(resource, current, patched, subresource)

    def mutate(self, resource: Resource, namespace: Optional[str], name: str, change: Callable[[dict], None],
               subresource: str = "") -> Optional[dict]:
        """For the controllers and the kubelet: `change(obj)` edits a copy of the object in place and it is stored
        (nothing happens when it changed nothing). The object after, or None when there is no such object."""
        with self.lock:
            current = self.find(resource, namespace, name)
            if current is None:
                return None
            edited = copy.deepcopy(current)
            change(edited)
            if edited == current:
                return current
            return self._update(resource, current, edited, subresource)

    def _update(self, resource: Resource, current: dict, body: dict, subresource: str) -> dict:
        new = copy.deepcopy(body)
        meta = new.setdefault("metadata", {}) or {}
        new["metadata"] = meta
        kept = current["metadata"]
        for field in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp",
                      "deletionGracePeriodSeconds"):
            if field in kept:
                meta[field] = kept[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = resource.api_version, resource.kind
        if subresource == "status":
            edited, new = new, copy.deepcopy(current)
            new["status"] = edited.get("status")
        elif resource.has_status:
            new["status"] = current.get("status")
        if {k: v for k, v in new.items() if k not in ("metadata", "status")} != \
                {k: v for k, v in current.items() if k not in ("metadata", "status")}:
            new["metadata"]["generation"] = kept.get("generation", 1) + 1
        if new == current:
            return copy.deepcopy(current)
        key = self.key(resource, kept.get("namespace"), kept["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and self._may_go(resource, new):
            self.confirmed.discard(meta["uid"])
            return self._commit("DELETED", resource, key, None, new)
        return self._commit("MODIFIED", resource, key, new, current)

    def _may_go(self, resource: Resource, obj: dict) -> bool:
        """Whether an object marked for deletion without finalizers is gone: a pod bound to a node stays until its
        kubelet confirms (a delete with a grace period of 0)."""
        return resource != PODS or not obj["spec"].get("nodeName") or obj["metadata"]["uid"] in self.confirmed

    def delete(self, resource: Resource, namespace: Optional[str], name: str, propagation: Optional[str] = None,
               grace: Optional[int] = None, preconditions: Optional[dict] = None) -> Tuple[dict, bool]:
        """DELETE: (the object, whether it is gone already) — an object with a deletionTimestamp stays until its
        finalizers are removed (or, for a pod on a node, until the kubelet stopped it). Raises ApiError 404, 409
        (preconditions), 400 (an unknown propagationPolicy)."""
        policy = propagation or resource.default_propagation
        if policy not in ("Orphan", "Background", "Foreground"):
            raise bad_request(f"unsupported propagationPolicy: {policy!r}")
        with self.lock:
            current = self.get(resource, namespace, name)
            meta = current["metadata"]
            for field in ("uid", "resourceVersion"):
                if (preconditions or {}).get(field) not in (None, meta.get(field)):
                    raise conflict(resource.describe(), name)
            key = self.key(resource, meta.get("namespace"), name)
            if policy == "Orphan":
                self._orphan(meta["uid"])
            new = copy.deepcopy(current)
            new_meta = new["metadata"]
            if resource == PODS:
                pod_grace = new["spec"].get("terminationGracePeriodSeconds", 30)
                grace = pod_grace if grace is None else grace
                if grace == 0 or not new["spec"].get("nodeName"):
                    self.confirmed.add(meta["uid"])
                new_meta.setdefault("deletionGracePeriodSeconds", grace)
            if policy == "Foreground" and self.dependents(meta["uid"]):
                new_meta["finalizers"] = sorted(set(new_meta.get("finalizers") or []) | {FOREGROUND})
            if not new_meta.get("deletionTimestamp"):
                new_meta["deletionTimestamp"] = clock.rfc3339()
            if not new_meta.get("finalizers") and self._may_go(resource, new):
                self.confirmed.discard(meta["uid"])
                return self._commit("DELETED", resource, key, None, new), True
            if new == current:
                return current, False
            self.objects[key] = new  # bypass _update: deletion fields are not user-writable
            return self._commit("MODIFIED", resource, key, new, current), False

    def _orphan(self, uid: str) -> None:
        for resource, obj in self.dependents(uid):
            def drop(edited, uid=uid):
                edited["metadata"]["ownerReferences"] = [
                    ref for ref in edited["metadata"]["ownerReferences"] if ref.get("uid") != uid]
                if not edited["metadata"]["ownerReferences"]:
                    del edited["metadata"]["ownerReferences"]
            self.mutate(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"], drop)

    # -- knobs -----------------------------------------------------------------------------------------------
    def compact(self) -> int:
        """Forget the history (etcd's compaction): a watch from an older resourceVersion than now gets 410."""
        with self.lock:
            self.changes.clear()
            self.compacted = self.rv
            return self.rv

    def expire_watches(self) -> int:
        """At once, under the lock (no watch event nor bookmark in between): a change no watch sees, the history
        forgotten past it, every watch ended; each watcher's resourceVersion is then older than the history kept,
        so its resumed watch gets 410 Gone, whatever bookmarks it had. The compacted resourceVersion."""
        with self.lock:
            self.rv += 1
            compacted = self.compact()
            self.disconnect_watches()
            return compacted

    def disconnect_watches(self) -> None:
        """End every open watch, as an API server restart or a load balancer's idle timeout would."""
        with self.lock:
            self.watch_epoch += 1
            self.lock.notify_all()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
