"""The resources the fake API server serves: where each lives in the URL space and how it behaves.

A `Resource` is one REST collection of the Kubernetes API, as discovery would name it: its API group and version
(`""`/`v1` is the core group, served under `/api/v1`; others under `/apis/<group>/<version>`), its plural (the
URL segment), its kind, whether it is namespaced, and whether it has a `status` subresource (then a create or an
update of the object ignores `status`, and only PUT/PATCH of `.../status` changes it, as on a real server).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_status: bool = False
    # The garbage collection policy of a DELETE that names none: batch/v1 Jobs orphan their pods (a trap the
    # real server keeps for compatibility), everything else deletes dependents in the background.
    default_propagation: str = "Background"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> Tuple[str, str]:
        """(group, plural): what identifies the collection in the store."""
        return self.group, self.plural

    def describe(self) -> str:
        """How the real server names the resource in messages: "pods", "jobs.batch", "leases.coordination.k8s.io"."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, has_status=True),
    Resource("", "v1", "nodes", "Node", namespaced=False, has_status=True),
    Resource("", "v1", "pods", "Pod", has_status=True),
    Resource("", "v1", "services", "Service", has_status=True),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "events", "Event"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", has_status=True),
    Resource("batch", "v1", "jobs", "Job", has_status=True, default_propagation="Orphan"),
    Resource("apps", "v1", "deployments", "Deployment", has_status=True),
    Resource("apps", "v1", "replicasets", "ReplicaSet", has_status=True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    # Record-only: stored and served, no controller acts on them (the backend's manifests, applied by `kaos build
    # deploy -c KUBERNETES`, hold them; the fake has no RBAC, no network policies and no ingress controller).
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", has_status=True),
]
_BY_URL: Dict[Tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND: Dict[Tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in RESOURCES}

PODS = _BY_URL["", "v1", "pods"]
NODES = _BY_URL["", "v1", "nodes"]
NAMESPACES = _BY_URL["", "v1", "namespaces"]
SERVICES = _BY_URL["", "v1", "services"]
SECRETS = _BY_URL["", "v1", "secrets"]
CONFIGMAPS = _BY_URL["", "v1", "configmaps"]
EVENTS = _BY_URL["", "v1", "events"]
JOBS = _BY_URL["batch", "v1", "jobs"]
DEPLOYMENTS = _BY_URL["apps", "v1", "deployments"]
REPLICASETS = _BY_URL["apps", "v1", "replicasets"]
LEASES = _BY_URL["coordination.k8s.io", "v1", "leases"]


def by_url(group: str, version: str, plural: str) -> Optional[Resource]:
    return _BY_URL.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> Optional[Resource]:
    """The resource of an owner reference or an involved object (`apiVersion`, `kind`)."""
    return _BY_KIND.get((api_version, kind))
