"""What the real API server does to a new object before storing it: checks that reject it (422 Invalid, with the
real server's field paths and words), defaults it fills in (a pod's restartPolicy, a Job's selector and labels,
a Service's cluster IP), and the status it starts with (whatever status a client sent is dropped for resources
with a status subresource). Only what the executor relies on or could trip over is modelled; the full schemas are
kubernetes-validate's to check."""
import base64
import hashlib
import random
import re
from typing import Callable

from .errors import invalid
from .kinds import DEPLOYMENTS, JOBS, NAMESPACES, PODS, REPLICASETS, SECRETS, SERVICES, Resource
from .proxy import allocate_cluster_ip

NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of generateName suffixes (no vowels, no look-alikes)
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name", "controller-uid", "job-name")


def generate_name(prefix: str, taken: Callable[[str], bool]) -> str:
    while True:
        name = prefix + "".join(random.choice(NAME_CHARS) for _ in range(5))
        if not taken(name):
            return name


def template_hash(template: dict) -> str:
    """The pod-template-hash label of a Deployment's ReplicaSet: a stable digest of its pod template."""
    digest = hashlib.sha256(repr(sorted(_flatten(template))).encode()).hexdigest()
    return "".join(NAME_CHARS[int(digest[i:i + 2], 16) % len(NAME_CHARS)] for i in range(0, 20, 2))


def _flatten(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]")
    else:
        yield path, repr(value)


def prepare_new(resource: Resource, obj: dict) -> None:
    """Check and default `obj` before it is stored. Raises ApiError 422."""
    obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
    name = obj["metadata"].get("name") or ""
    if not name:
        raise invalid(resource.kind, "", "metadata.name: Required value: name or generateName is required")
    pattern = DNS_LABEL if resource in (SERVICES, NAMESPACES) else DNS_SUBDOMAIN
    if len(name) > (63 if pattern is DNS_LABEL else 253) or not pattern.match(name):
        raise invalid(resource.kind, name, f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 "
                      f"{'label' if pattern is DNS_LABEL else 'subdomain'} must consist of lower case alphanumeric "
                      "characters, '-' or '.', and must start and end with an alphanumeric character")
    if resource.has_status:
        obj["status"] = {}
    preparer = {PODS: _pod, JOBS: _job, DEPLOYMENTS: _deployment, REPLICASETS: _replicaset, SERVICES: _service,
                SECRETS: _secret, NAMESPACES: _namespace}.get(resource)
    if preparer:
        preparer(obj, name)


def pod_spec(spec: dict, kind: str, name: str, path: str = "spec") -> None:
    """Check and default a pod spec (a pod's, or a template's at `path`)."""
    if not spec.get("containers"):
        raise invalid(kind, name, f"{path}.containers: Required value")
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            for field in ("name", "image"):
                if not container.get(field):
                    raise invalid(kind, name, f"{path}.{group}[{index}].{field}: Required value")
            image = container["image"]
            tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
            container.setdefault("imagePullPolicy",
                                 "IfNotPresent" if tagged and not image.endswith(":latest") else "Always")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("resources", {})
            for port in container.get("ports") or []:
                port.setdefault("protocol", "TCP")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})


def _pod(obj: dict, name: str) -> None:
    spec = obj.setdefault("spec", {})
    pod_spec(spec, "Pod", name)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("enableServiceLinks", True)
    obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def qos_class(spec: dict) -> str:
    resources = [c.get("resources") or {} for c in spec["containers"]]
    if all(r.get("limits", {}).get(k) and r.get("requests", r.get("limits", {})).get(k) == r["limits"][k]
           for r in resources for k in ("cpu", "memory")):
        return "Guaranteed"
    return "Burstable" if any(r.get("limits") or r.get("requests") for r in resources) else "BestEffort"


def _job(obj: dict, name: str) -> None:
    spec = obj.setdefault("spec", {})
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec(template.setdefault("spec", {}), "Job", name, "spec.template.spec")
    if template["spec"].get("restartPolicy") not in ("Never", "OnFailure"):
        raise invalid("Job", name, f"spec.template.spec.restartPolicy: Unsupported value: "
                      f"\"{template['spec'].get('restartPolicy', '')}\": supported values: \"OnFailure\", \"Never\"")
    for field, value in (("backoffLimit", 6), ("completions", 1), ("parallelism", 1),
                         ("completionMode", "NonIndexed"), ("suspend", False),
                         ("podReplacementPolicy", "TerminatingOrFailed"), ("manualSelector", False)):
        spec.setdefault(field, value)


def _fill_job(obj: dict) -> None:
    uid, name = obj["metadata"]["uid"], obj["metadata"]["name"]
    spec = obj["spec"]
    if not spec.get("selector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec["template"]["metadata"].setdefault("labels", {})
    labels.update(dict(zip(JOB_LABELS, (uid, name, uid, name))))
    obj["metadata"].setdefault("labels", {}).update({k: v for k, v in labels.items() if "job-name" in k})
    obj["metadata"]["labels"].update({k: v for k, v in labels.items() if "controller-uid" in k})


def _deployment(obj: dict, name: str) -> None:
    spec = obj.setdefault("spec", {})
    _check_selector("Deployment", name, spec)
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%",
                                                                            "maxUnavailable": "25%"}})


def _replicaset(obj: dict, name: str) -> None:
    spec = obj.setdefault("spec", {})
    _check_selector("ReplicaSet", name, spec)
    spec.setdefault("replicas", 1)


def _check_selector(kind: str, name: str, spec: dict) -> None:
    template = spec.setdefault("template", {})
    pod_spec(template.setdefault("spec", {}), kind, name, "spec.template.spec")
    selector = (spec.get("selector") or {}).get("matchLabels")
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        raise invalid(kind, name, "spec.selector: Required value")
    if any(labels.get(key) != value for key, value in selector.items()):
        raise invalid(kind, name, f"spec.template.metadata.labels: Invalid value: {labels}: `selector` does not "
                      "match template `labels`")


def _service(obj: dict, name: str) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj["status"] = {"loadBalancer": {}}


def _secret(obj: dict, name: str) -> None:
    obj.setdefault("type", "Opaque")
    for key, value in (obj.pop("stringData", None) or {}).items():
        obj.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()


def _namespace(obj: dict, name: str) -> None:
    obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    obj["status"] = {"phase": "Active"}


def fill_after_create(resource: Resource, obj: dict, store) -> None:
    """Defaults that need the new object's uid, or the store (a free cluster IP)."""
    if resource == JOBS:
        _fill_job(obj)
    elif resource == SERVICES and obj["spec"]["type"] != "ExternalName" and not obj["spec"].get("clusterIP"):
        taken = {o["spec"].get("clusterIP") for (res, _, _), o in store.objects.items() if res == SERVICES.key}
        obj["spec"]["clusterIP"] = allocate_cluster_ip(taken)  # in 127.77.0.0/16: see proxy.py
        obj["spec"]["clusterIPs"] = [obj["spec"]["clusterIP"]]
