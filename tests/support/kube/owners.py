"""Owner references as the workload controllers write and read them."""
import copy
from typing import List

from .kinds import PODS


def owner_reference(obj: dict) -> dict:
    """The controller reference a workload puts on what it creates (so deleting it takes them along)."""
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def controller_uid(obj: dict):
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref["uid"]
    return None


def owned(store, owner: dict, resource=PODS) -> List[dict]:
    uid = owner["metadata"]["uid"]
    return [obj for res, obj in store.dependents(uid) if res == resource and controller_uid(obj) == uid]


def pod_from_template(owner: dict, template: dict, generate_name: str, extra_labels: dict = None) -> dict:
    meta = template.get("metadata") or {}
    labels = dict(meta.get("labels") or {}, **(extra_labels or {}))
    pod_meta = {"generateName": generate_name, "namespace": owner["metadata"]["namespace"], "labels": labels,
                "ownerReferences": [owner_reference(owner)]}
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": copy.deepcopy(template["spec"])}


def is_ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def set_condition(conditions: list, kind: str, status: str, reason: str = None, message: str = None,
                  now: str = None, probe_time: bool = False) -> list:
    """`conditions` with the condition of `kind` set; lastTransitionTime changes only when the status does."""
    old = next((c for c in conditions if c["type"] == kind), None)
    new = {"type": kind, "status": status}
    if probe_time:  # True: set while the condition is not met (a pod's); "always": set (a Job's)
        new["lastProbeTime"] = now if status != "True" or probe_time == "always" else None
    new["lastTransitionTime"] = old["lastTransitionTime"] if old and old["status"] == status else now
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    if old and all(old.get(k) == v for k, v in new.items() if k not in ("lastProbeTime",)):
        return conditions
    return [c for c in conditions if c["type"] != kind] + [new]
