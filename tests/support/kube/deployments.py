"""The Deployment and ReplicaSet controllers (apps/v1), reduced to what an endpoint needs: a Deployment owns one
ReplicaSet per pod template (`<deployment>-<pod-template-hash>`, the older ones scaled to 0), a ReplicaSet keeps
`replicas` pods (`<replicaset>-<5 chars>`) that are neither finished nor being deleted, and both report
replicas / readyReplicas / availableReplicas / updatedReplicas and the Deployment's conditions Available
(MinimumReplicasAvailable / MinimumReplicasUnavailable) and Progressing (NewReplicaSetAvailable /
ReplicaSetUpdated). Rolling-update surge limits and minReadySeconds are not modelled."""
import copy
from typing import Optional

from . import clock, defaults, events
from .kinds import DEPLOYMENTS, PODS, REPLICASETS
from .owners import controller_uid, is_ready, is_terminal, owned, owner_reference, pod_from_template, set_condition
from .store import Store

HASH_LABEL = "pod-template-hash"


class DeploymentController:
    def __init__(self, store: Store):
        self.store = store

    def routes(self, change):
        meta = change.obj["metadata"]
        if change.resource == DEPLOYMENTS:
            yield "deployment", meta["namespace"], meta["name"]
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "ReplicaSet" and change.resource == PODS:
                yield "replicaset", meta["namespace"], ref["name"]
            if ref.get("controller") and ref.get("kind") == "Deployment" and change.resource == REPLICASETS:
                yield "deployment", meta["namespace"], ref["name"]
        if change.resource == REPLICASETS:
            yield "replicaset", meta["namespace"], meta["name"]

    def register(self, manager) -> None:
        manager.register("deployment", self.deployment, self.routes)
        manager.register("replicaset", self.replicaset)

    def deployment(self, key: tuple) -> Optional[float]:
        _, namespace, name = key
        deployment = self.store.find(DEPLOYMENTS, namespace, name)
        if deployment is None or deployment["metadata"].get("deletionTimestamp"):
            return None
        spec = deployment["spec"]
        template_hash = defaults.template_hash(spec["template"])
        replica_sets = owned(self.store, deployment, REPLICASETS)
        current = next((rs for rs in replica_sets
                        if rs["metadata"].get("labels", {}).get(HASH_LABEL) == template_hash), None)
        if current is None:
            current = self._new_replica_set(deployment, template_hash, len(replica_sets) + 1)
        for rs in replica_sets + [current]:
            wanted = spec["replicas"] if rs["metadata"]["uid"] == current["metadata"]["uid"] else 0
            if rs["spec"]["replicas"] != wanted:
                self.store.mutate(REPLICASETS, namespace, rs["metadata"]["name"],
                                  lambda edited, wanted=wanted: edited["spec"].update(replicas=wanted))
        replica_sets = owned(self.store, deployment, REPLICASETS)
        count = lambda field, sets: sum((rs.get("status") or {}).get(field, 0) for rs in sets)
        new_sets = [rs for rs in replica_sets if rs["metadata"]["uid"] == current["metadata"]["uid"]]
        available = count("availableReplicas", replica_sets)
        now = clock.rfc3339()
        rs_name = current["metadata"]["name"]

        def write(edited):
            status = edited.setdefault("status", {})
            status.update(observedGeneration=edited["metadata"]["generation"],
                          replicas=count("replicas", replica_sets), updatedReplicas=count("replicas", new_sets),
                          readyReplicas=count("readyReplicas", replica_sets), availableReplicas=available)
            unavailable = max(0, spec["replicas"] - available)
            if unavailable:
                status["unavailableReplicas"] = unavailable
            else:
                status.pop("unavailableReplicas", None)
            for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
                if not status[field]:
                    del status[field]
            conditions = status.get("conditions") or []
            if available >= spec["replicas"]:
                conditions = set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                                           "Deployment has minimum availability.", now)
                conditions = set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                           f'ReplicaSet "{rs_name}" has successfully progressed.', now)
            else:
                conditions = set_condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                                           "Deployment does not have minimum availability.", now)
                conditions = set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                                           f'ReplicaSet "{rs_name}" is progressing.', now)
            status["conditions"] = conditions
        self.store.mutate(DEPLOYMENTS, namespace, name, write, subresource="status")
        return None

    def _new_replica_set(self, deployment: dict, template_hash: str, revision: int) -> dict:
        template = copy.deepcopy(deployment["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
        name = f"{deployment['metadata']['name']}-{template_hash}"
        replica_set = self.store.create(REPLICASETS, deployment["metadata"]["namespace"], {
            "metadata": {"name": name, "labels": dict(template["metadata"]["labels"]),
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                         "ownerReferences": [owner_reference(deployment)]},
            "spec": {"replicas": 0, "selector": selector, "template": template}})
        events.record(self.store, deployment, "Normal", "ScalingReplicaSet",
                      f"Scaled up replica set {name} from 0 to {deployment['spec']['replicas']}",
                      "deployment-controller")
        return replica_set

    def replicaset(self, key: tuple) -> Optional[float]:
        _, namespace, name = key
        replica_set = self.store.find(REPLICASETS, namespace, name)
        if replica_set is None or replica_set["metadata"].get("deletionTimestamp"):
            return None
        pods = [p for p in owned(self.store, replica_set) if controller_uid(p) == replica_set["metadata"]["uid"]]
        active = [p for p in pods if not is_terminal(p) and not p["metadata"].get("deletionTimestamp")]
        wanted = replica_set["spec"]["replicas"]
        for _ in range(wanted - len(active)):
            pod = self.store.create(PODS, namespace, pod_from_template(replica_set, replica_set["spec"]["template"],
                                                                       f"{name}-"))
            events.record(self.store, replica_set, "Normal", "SuccessfulCreate",
                          f"Created pod: {pod['metadata']['name']}", "replicaset-controller")
        for pod in sorted(active, key=lambda p: p["metadata"]["creationTimestamp"])[wanted:]:
            try:
                self.store.delete(PODS, namespace, pod["metadata"]["name"])
            except Exception:
                pass
        ready = sum(1 for p in active if is_ready(p))

        def write(edited):
            status = {"replicas": min(len(active), wanted) if wanted < len(active) else len(active),
                      "fullyLabeledReplicas": len(active), "readyReplicas": ready, "availableReplicas": ready,
                      "observedGeneration": edited["metadata"]["generation"]}
            edited["status"] = {k: v for k, v in status.items() if v or k == "replicas"}
        self.store.mutate(REPLICASETS, namespace, name, write, subresource="status")
        return None
