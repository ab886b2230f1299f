"""The backend's Kubernetes manifests as `kaos build deploy -c KUBERNETES|MINIKUBE` applies them: the shipped renders
of infrastructure/kubernetes (kaos_cli/manifests/<target>.yaml, made by scripts/render_manifests.py), moved to the
chosen namespace, with the chosen backend image, plus the Secrets the deploy makes. Pure: no API calls, no
`kubernetes` import (the CLI runs without the client until a Kubernetes platform is asked for).

Objects are dicts as the YAML has them; an `ObjectRef` (apiVersion, kind, name) names one in a namespace, or in
the cluster for the cluster-scoped kinds.
"""
import base64
import copy
import json
import re
from importlib import resources
from typing import Dict, List, NamedTuple, Optional

import yaml

from kaos_cli.state import parse_json

TARGETS = ("kubernetes", "minikube", "kubernetes-postgres", "minikube-postgres")
SHIPPED_NAMESPACE = "kaos"           # the namespace the overlays render into
BACKEND = "kaos-backend"             # the backend's Deployment, its Service and container, the token's Secret
BACKEND_CONTAINER = "backend"
INGRESS = "kaos"
TOKEN_KEY = "token"                  # the Secret kaos-backend's key the Deployment reads (KAOS_TOKEN)
POSTGRES_SECRET = "kaos-postgres"    # PostgreSQL's password (key `password`), made once: the data keeps it
POSTGRES_KEY = "password"
NODE_READER_BINDING = "kaos-node-reader-"  # + the namespace: one ClusterRoleBinding per kaos of a cluster
DEPLOYED_AT = "kaos.io/deployed-at"  # on the backend's pod template: each deploy starts a new pod (a new token)
CLUSTER_SCOPED = frozenset({"ClusterRole", "ClusterRoleBinding", "Namespace", "PersistentVolume"})
PART_OF = {"app.kubernetes.io/part-of": "kaos", "app.kubernetes.io/name": BACKEND}
# What the kubernetes executor makes: every object of these kinds labelled so in the namespace is removed by
# `kaos destroy` (the Role lets the backend create exactly Jobs, Deployments, Services, Secrets and notebooks'
# work directory claims; Pods are their dependents, removed too in case one was orphaned).
# tests/cli/test_kube_manifests.py compares them with the Role.
MANAGED_BY = "app.kubernetes.io/managed-by=kaos"
WORKLOAD_KINDS = (("apps/v1", "Deployment"), ("batch/v1", "Job"), ("v1", "Service"), ("v1", "Secret"),
                  ("v1", "Pod"), ("v1", "PersistentVolumeClaim"))
NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a DNS-1123 label, at most 63 characters


class ObjectRef(NamedTuple):
    api_version: str
    kind: str
    name: str

    @property
    def namespaced(self) -> bool:
        return self.kind not in CLUSTER_SCOPED

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def target(cloud: str, postgres: bool) -> str:
    """The shipped render for `cloud` (KUBERNETES, MINIKUBE), with or without PostgreSQL."""
    return cloud.lower() + ("-postgres" if postgres else "")


def load(name: str) -> List[Dict]:
    """The objects of the shipped render `name` (one of TARGETS), as `kubectl kustomize` wrote them."""
    if name not in TARGETS:
        raise ValueError(f"no shipped manifests {name!r}: one of {', '.join(TARGETS)}")
    text = resources.files("kaos_cli").joinpath("manifests", f"{name}.yaml").read_text(encoding="utf-8")
    return [document for document in yaml.safe_load_all(text) if document]


def namespace_problem(namespace: str) -> Optional[str]:
    """Why `namespace` cannot name a Kubernetes namespace, or None."""
    if len(namespace) > 63 or not NAMESPACE_NAME.match(namespace):
        return (f"namespace {namespace!r} is not valid: at most 63 lower case letters, digits and '-', starting "
                "and ending with a letter or digit")
    return None


def ref(obj: Dict) -> ObjectRef:
    return ObjectRef(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def default_image(objects: List[Dict]) -> str:
    """The backend image the manifests name (kaos-backend:<the kaos version they were rendered for>)."""
    return backend_container(backend_deployment(objects))["image"]


def backend_deployment(objects: List[Dict]) -> Dict:
    return next(obj for obj in objects if obj["kind"] == "Deployment" and obj["metadata"]["name"] == BACKEND)


def backend_container(deployment: Dict) -> Dict:
    return next(container for container in deployment["spec"]["template"]["spec"]["containers"]
                if container["name"] == BACKEND_CONTAINER)


def prepare(objects: List[Dict], namespace: str, image: Optional[str], deployed_at: str,
            settings: Optional[Dict[str, str]] = None) -> List[Dict]:
    """Copies of `objects` for `namespace` (every namespaced object's, the RBAC subjects', and the node reader
    binding's name, which carries it), the backend container running `image` (None: the manifests' own), the
    backend's pod template marked with `deployed_at` (so that a deploy always starts a pod with the new token), and
    `settings` ({"KAOS_REGISTRY": ...}) written into the ConfigMaps the backend container reads its environment
    from (their other keys kept)."""
    prepared = []
    settings = settings or {}
    config_maps = set()
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == BACKEND:
            config_maps = {source["configMapRef"]["name"] for source in backend_container(obj).get("envFrom") or []
                           if source.get("configMapRef")}
    for obj in copy.deepcopy(objects):
        meta = obj["metadata"]
        if obj["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = namespace
        for subject in obj.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
        if obj["kind"] == "ClusterRoleBinding" and meta["name"].startswith(NODE_READER_BINDING):
            meta["name"] = NODE_READER_BINDING + namespace
        if obj["kind"] == "Deployment" and meta["name"] == BACKEND:
            template = obj["spec"]["template"]
            template["metadata"].setdefault("annotations", {})[DEPLOYED_AT] = deployed_at
            if image:
                backend_container(obj)["image"] = image
        if obj["kind"] == "ConfigMap" and meta["name"] in config_maps and settings:
            obj.setdefault("data", {}).update(settings)
        prepared.append(obj)
    return prepared


def secret(name: str, namespace: str, key: str, value: str) -> Dict:
    """A Secret of the deploy's own (not in the manifests): labelled as the manifests' objects are."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(PART_OF)},
            "data": {key: base64.b64encode(value.encode()).decode()}}


def uses_postgres(objects: List[Dict]) -> bool:
    return any(obj["kind"] == "StatefulSet" and obj["metadata"]["name"] == POSTGRES_SECRET for obj in objects)


def claims_of(objects: List[Dict]) -> List[ObjectRef]:
    """The PersistentVolumeClaims the StatefulSets among `objects` make (`<template>-<set>-<ordinal>`): not in
    the manifests, theirs all the same, removed with them."""
    found = []
    for obj in objects:
        if obj["kind"] != "StatefulSet":
            continue
        for template in obj["spec"].get("volumeClaimTemplates") or []:
            for ordinal in range(obj["spec"].get("replicas", 1)):
                found.append(ObjectRef("v1", "PersistentVolumeClaim",
                                       f"{template['metadata']['name']}-{obj['metadata']['name']}-{ordinal}"))
    return found


def dump_refs(refs: List[ObjectRef]) -> str:
    """`refs` for the CLI context (`objects = ...`): JSON, in the order given, without repeats."""
    unique = list(dict.fromkeys(tuple(item) for item in refs))
    return json.dumps([list(item) for item in unique], separators=(",", ":"))


def parse_refs(text: Optional[str]) -> List[ObjectRef]:
    """The refs `dump_refs` wrote; [] for nothing or for text that is not its JSON."""
    try:
        items = parse_json(text or "[]")
        return [ObjectRef(*map(str, item)) for item in items if isinstance(item, list) and len(item) == 3]
    except (TypeError, ValueError):
        return []
