"""The scheduler: binds each new pod to the one node when the node's allocatable capacity covers the pod's
requests beside those of the pods already running there, else leaves it Pending with the real scheduler's words:

    conditions: [{type: PodScheduled, status: "False", reason: Unschedulable,
                  message: "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available:
                            1 No preemption victims found for incoming pod."}]

and a FailedScheduling event; it tries again whenever a pod ends or goes, or a fault changes. A pod's requests
are its containers' `resources.requests` (the limits where requests are not given, as the API server defaults
them), the largest init container's if larger.
"""
from decimal import Decimal
from typing import Dict, Optional

from kubernetes.utils.quantity import parse_quantity

from . import clock, events
from .faults import Faults
from .kinds import NODES, PODS
from .owners import is_terminal, set_condition
from .store import Store

PREEMPTION = "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
SELECTOR_MESSAGE = ("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
                    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")


def container_requests(container: dict) -> Dict[str, Decimal]:
    resources = container.get("resources") or {}
    merged = dict(resources.get("limits") or {}, **(resources.get("requests") or {}))
    return {name: parse_quantity(value) for name, value in merged.items()}


def pod_requests(spec: dict) -> Dict[str, Decimal]:
    total: Dict[str, Decimal] = {}
    for container in spec["containers"]:
        for name, value in container_requests(container).items():
            total[name] = total.get(name, Decimal(0)) + value
    for container in spec.get("initContainers") or []:
        for name, value in container_requests(container).items():
            total[name] = max(total.get(name, Decimal(0)), value)
    return total


class Scheduler:
    def __init__(self, store: Store, faults: Faults, node: str):
        self.store = store
        self.faults = faults
        self.node = node

    def routes(self, change):
        if change.resource == PODS:
            meta = change.obj["metadata"]
            if change.type == "ADDED" and not change.obj["spec"].get("nodeName"):
                yield "schedule", meta["namespace"], meta["name"]
            freed = change.type == "DELETED" or (is_terminal(change.obj) and not is_terminal(change.old or {}))
            if freed:
                yield from self.pending()
        elif change.resource == NODES:
            yield from self.pending()

    def pending(self):
        items, _ = self.store.list(PODS, None, lambda pod: not pod["spec"].get("nodeName"))
        return [("schedule", pod["metadata"]["namespace"], pod["metadata"]["name"]) for pod in items]

    def register(self, manager) -> None:
        manager.register("schedule", self.reconcile, self.routes)
        self.faults.on_change.append(lambda: [manager.add(key) for key in self.pending()])

    def unschedulable(self, pod: dict) -> Optional[str]:
        """Why the pod cannot go on the node now, in the scheduler's words; None when it fits."""
        fault = self.faults.find("Unschedulable", pod)
        if fault:
            return fault.message or SELECTOR_MESSAGE
        node = self.store.find(NODES, None, self.node)
        allocatable = {name: parse_quantity(value)
                       for name, value in ((node or {}).get("status") or {}).get("allocatable", {}).items()}
        running, _ = self.store.list(PODS, None, lambda p: p["spec"].get("nodeName") == self.node
                                     and not is_terminal(p))
        used: Dict[str, Decimal] = {}
        for other in running:
            for name, value in pod_requests(other["spec"]).items():
                used[name] = used.get(name, Decimal(0)) + value
        wanted = pod_requests(pod["spec"])
        short = [name for name, value in sorted(wanted.items())
                 if value > 0 and used.get(name, Decimal(0)) + value > allocatable.get(name, Decimal(0))]
        reasons = [f"1 Insufficient {name}" for name in short]
        if len(running) + 1 > allocatable.get("pods", Decimal(110)):
            reasons.append("1 Too many pods")
        if not reasons:
            return None
        return f"0/1 nodes are available: {', '.join(reasons)}. {PREEMPTION}"

    def reconcile(self, key: tuple) -> Optional[float]:
        _, namespace, name = key
        pod = self.store.find(PODS, namespace, name)
        if pod is None or pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            return None
        why = self.unschedulable(pod)
        now = clock.rfc3339()

        def condition(edited, status, reason=None, message=None):
            conditions = (edited.get("status") or {}).get("conditions") or []
            edited.setdefault("status", {})["conditions"] = set_condition(
                conditions, "PodScheduled", status, reason, message, now, probe_time=True)
        if why:
            before = [c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
            self.store.mutate(PODS, namespace, name, lambda e: condition(e, "False", "Unschedulable", why), "status")
            if not before or before[0].get("message") != why:
                events.record(self.store, pod, "Warning", "FailedScheduling", why, "default-scheduler")
            return None
        self.store.mutate(PODS, namespace, name, lambda e: e["spec"].update(nodeName=self.node))
        self.store.mutate(PODS, namespace, name, lambda e: condition(e, "True"), "status")
        events.record(self.store, pod, "Normal", "Scheduled",
                      f"Successfully assigned {namespace}/{name} to {self.node}", "default-scheduler")
        return None
