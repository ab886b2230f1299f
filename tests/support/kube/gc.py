"""The garbage collector: what deleting an owner does to the objects whose ownerReferences name it.

- Background (the owner is gone already): each dependent whose owners are all gone is deleted, in the
  background too (a Deployment's ReplicaSets, then their pods).
- Foreground (the owner stays, with a deletionTimestamp and the finalizer `foregroundDeletion`): its dependents
  are deleted in the foreground; once none is left the finalizer is removed and the owner goes.
- Orphan is the store's (the owner references are removed at once).
- A deleted namespace takes everything in it.
"""
from typing import Iterable, Optional

from .kinds import NAMESPACES, PODS
from .store import FOREGROUND, Change, Store


class GarbageCollector:
    def __init__(self, store: Store):
        self.store = store

    def routes(self, change: Change) -> Iterable[tuple]:
        meta = change.obj["metadata"]
        if change.type == "DELETED":
            yield "gc-dependents", meta["uid"]
            if change.resource == NAMESPACES:
                yield "gc-namespace", meta["name"]
            for ref in meta.get("ownerReferences") or []:
                yield "gc-foreground", ref["uid"]
        elif meta.get("deletionTimestamp") and FOREGROUND in (meta.get("finalizers") or []):
            yield "gc-foreground", meta["uid"]

    def _by_uid(self, uid: str):
        with self.store.lock:
            for key, obj in self.store.objects.items():
                if obj["metadata"]["uid"] == uid:
                    return self.store.resources[key[0]], obj
        return None, None

    def dependents_of_deleted(self, key: tuple) -> Optional[float]:
        uid = key[1]
        for resource, obj in self.store.dependents(uid):
            owners = [ref["uid"] for ref in obj["metadata"]["ownerReferences"]]
            if all(self._by_uid(owner)[1] is None for owner in owners):
                self._delete(resource, obj, "Background")
        return None

    def foreground(self, key: tuple) -> Optional[float]:
        resource, owner = self._by_uid(key[1])
        if owner is None or FOREGROUND not in (owner["metadata"].get("finalizers") or []):
            return None
        dependents = self.store.dependents(key[1])
        for dependent_resource, obj in dependents:
            if not obj["metadata"].get("deletionTimestamp"):
                self._delete(dependent_resource, obj, "Foreground")
        if not dependents:
            def release(edited):
                edited["metadata"]["finalizers"] = [f for f in edited["metadata"]["finalizers"] if f != FOREGROUND]
            self.store.mutate(resource, owner["metadata"].get("namespace"), owner["metadata"]["name"], release)
        return None

    def namespace(self, key: tuple) -> Optional[float]:
        with self.store.lock:
            doomed = [(self.store.resources[k[0]], k[1], k[2]) for k in self.store.objects if k[1] == key[1]]
        for resource, namespace, name in doomed:
            try:
                self.store.delete(resource, namespace, name, "Background", 0 if resource == PODS else None)
            except Exception:
                pass  # gone meanwhile
        return None

    def _delete(self, resource, obj: dict, policy: str) -> None:
        try:
            self.store.delete(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"], policy)
        except Exception:
            pass  # gone meanwhile: nothing left to collect

    def register(self, manager) -> None:
        manager.register("gc-dependents", self.dependents_of_deleted, self.routes)
        manager.register("gc-foreground", self.foreground)
        manager.register("gc-namespace", self.namespace)
