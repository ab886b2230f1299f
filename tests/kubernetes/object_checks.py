"""What the API server would check of an object kaos sends it, offline: its schema (kubernetes-validate, strict:
an unknown field is an error, for the oldest and the newest Kubernetes version this suite validates against),
and the rules the schemas cannot say (names: DNS-1123 labels and subdomains; label keys and values; container,
port, volume and environment variable names; a Deployment's selector selecting its own pods)."""
import re
from typing import Any, Dict, Iterator, List, Tuple

import kubernetes_validate
from kubernetes.client import ApiClient

# The oldest version still commonly run (what kaos's objects must not outgrow) and the newest the package knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")             # RFC 1123 label, <= 63
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")           # a Service's name, <= 63
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")  # <= 253
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")  # <= 63
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # <= 63
IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*[a-z0-9]?$")  # <= 15
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Kinds named by a DNS-1123 label (the rest by a subdomain). A Job's name becomes its pods' job-name label.
LABEL_NAMED = {"Service", "Job", "Deployment", "StatefulSet", "Namespace"}


def as_dict(obj: Any) -> Dict:
    """A client model object as the JSON the client sends; a dict as it is."""
    return obj if isinstance(obj, dict) else ApiClient().sanitize_for_serialization(obj)


def problems(obj: Any) -> List[str]:
    """Everything wrong with `obj` (a client model object or a manifest's dict), empty when the API server would
    take it."""
    data = as_dict(obj)
    found = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(data, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            found.append(f"{data.get('kind')} {version}: {error.message} at {list(error.path)}")
    found.extend(_name_problems(data))
    return found


def assert_valid(obj: Any) -> Dict:
    """`obj` as a dict, once `problems` found nothing wrong with it."""
    found = problems(obj)
    assert not found, "\n".join(found)
    return as_dict(obj)


def _name_problems(data: Dict) -> Iterator[str]:
    kind, meta = data.get("kind"), data.get("metadata") or {}
    name = meta.get("name", "")
    if kind == "Service":
        pattern, limit = DNS_1035_LABEL, 63
    elif kind in LABEL_NAMED:
        pattern, limit = DNS_LABEL, 63
    else:
        pattern, limit = DNS_SUBDOMAIN, 253
    if len(name) > limit or not pattern.match(name):
        yield f"{kind} name {name!r} is not valid"
    for where, labels in _label_sets(data):
        for key, value in labels.items():
            prefix, _, label = key.rpartition("/")
            if (prefix and not DNS_SUBDOMAIN.match(prefix)) or len(label) > 63 or not LABEL_NAME.match(label):
                yield f"{where}: label key {key!r} is not valid"
            if len(value) > 63 or not LABEL_VALUE.match(value):
                yield f"{where}: label {key}={value!r} is not valid"
    pod = _pod_spec(data)
    if pod is not None:
        claims = {claim["metadata"]["name"] for claim in (data.get("spec") or {}).get("volumeClaimTemplates") or []}
        yield from _pod_problems(pod, claims)
    spec = data.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") if kind in ("Deployment", "StatefulSet") else None
    if selector is not None:
        template = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if any(template.get(key) != value for key, value in selector.items()):
            yield f"{kind} {name}: selector {selector} does not select its template's labels {template}"


def _label_sets(data: Dict) -> Iterator[Tuple[str, Dict[str, str]]]:
    yield "metadata", (data.get("metadata") or {}).get("labels") or {}
    template = (data.get("spec") or {}).get("template") or {}
    yield "template", (template.get("metadata") or {}).get("labels") or {}
    selector = (data.get("spec") or {}).get("selector") or {}
    yield "selector", selector.get("matchLabels", selector if data.get("kind") == "Service" else {}) or {}


def _pod_spec(data: Dict):
    if data.get("kind") == "Pod":
        return data.get("spec")
    return ((data.get("spec") or {}).get("template") or {}).get("spec")


def _pod_problems(pod: Dict, claims) -> Iterator[str]:
    volumes = {volume["name"] for volume in pod.get("volumes") or []}
    for volume in volumes:
        if len(volume) > 63 or not DNS_LABEL.match(volume):
            yield f"volume name {volume!r} is not valid"
    containers = (pod.get("initContainers") or []) + (pod.get("containers") or [])
    names = [container["name"] for container in containers]
    if len(names) != len(set(names)):
        yield f"container names repeat: {names}"
    for container in containers:
        if len(container["name"]) > 63 or not DNS_LABEL.match(container["name"]):
            yield f"container name {container['name']!r} is not valid"
        for port in container.get("ports") or []:
            if "name" in port and (len(port["name"]) > 15 or not IANA_SVC_NAME.match(port["name"])):
                yield f"port name {port['name']!r} is not valid"
        for variable in container.get("env") or []:
            if not ENV_NAME.match(variable["name"]):
                yield f"environment variable name {variable['name']!r} is not valid"
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes | claims:  # a StatefulSet's claims are its pods' volumes too
                yield f"container {container['name']} mounts {mount['name']!r}, which is no volume of its pod"
