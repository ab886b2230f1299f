"""The names and labels of what kaos makes on Kubernetes, from a WorkloadSpec: pure functions, so that the executor,
its shared watch and the tests agree (issue 11).

    training partition   batch/v1 Job        train-<job id>-<index>
    endpoint             apps/v1 Deployment  serve-<ws>-<hex6>        and a Service of the same name
    notebook             apps/v1 Deployment  notebook-<ws>-<user>     and a Service of the same name; its work
                         v1 PersistentVolumeClaim notebook-<ws>-<user>-work (kubernetes_notebook.py)
    artifact token       v1 Secret           kaos-token-<the name of the Job or Deployment>

Kubernetes names these objects with DNS-1123 labels (lowercase letters, digits and '-', starting with a letter
for a Service (DNS-1035), at most 63 characters: a Job's name also becomes its pods' `job-name` label, a
Service's a DNS label), and a label's value may hold at most 63 characters of letters, digits, '-', '_', '.'.
A name that already fits is used as it is (every name of today's kaos ids fits: a job id has 32 characters, a
workspace name at most 40); one that does not (a notebook user's capitals or underscores, a longer id) is made to
fit: lowercased, other characters replaced by '-', cut to 57 characters and ended by '-' and the first five hex
digits of the sha256 of the name as it was. The hash is of the original, so two names that differ stay different
once made to fit.
"""
import hashlib
import re
from typing import Dict

from kaos_backend.executors.base import WorkloadSpec
from kaos_model.ids import ENDPOINT_RE

MAX_NAME = 63                 # a DNS-1123 label
MAX_LABEL_VALUE = 63
HASH_CHARS = 5
LABEL_PREFIX = "kaos.io/"
WORKSPACE = LABEL_PREFIX + "workspace"
JOB = LABEL_PREFIX + "job"            # the job id, or the endpoint's (notebook's) name
WORKLOAD = LABEL_PREFIX + "workload"  # the spec's job_id: a partition "<job id>-<index>", or the endpoint's name
KIND = LABEL_PREFIX + "kind"          # build | train | serve | notebook
PLATFORM = LABEL_PREFIX + "platform"  # the platform id (kaos_backend.config.platform_id)
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kaos"
TOKEN_SECRET_PREFIX = "kaos-token-"

_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _hashed(original: str, cleaned: str, limit: int, trim: str) -> str:
    digest = hashlib.sha256(original.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_CHARS]
    return f"{cleaned[:limit - HASH_CHARS - 1].rstrip(trim)}-{digest}"


def object_name(name: str) -> str:
    """`name` when it is a DNS-1035 label (what every kind kaos makes accepts as its name), else one made from it
    as the module docstring says. `name` starts with a letter (kaos's names start with their kind)."""
    if len(name) <= MAX_NAME and _NAME_RE.match(name):
        return name
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = "x-" + cleaned
    return _hashed(name, cleaned, MAX_NAME, "-")


def label_value(value: str) -> str:
    """`value` when it is a valid label value, else one made from it as the module docstring says."""
    if len(value) <= MAX_LABEL_VALUE and _LABEL_VALUE_RE.match(value):
        return value
    cleaned = re.sub(r"[^-A-Za-z0-9_.]+", "-", value).strip("-_.")
    return _hashed(value, cleaned, MAX_LABEL_VALUE, "-_.") if cleaned else _hashed(value, "x", MAX_LABEL_VALUE, "")


def workload_name(spec: WorkloadSpec) -> str:
    """The name of the Job (train) or Deployment and Service (serve, notebook) that runs `spec`: `train-<job
    id>-<index>` (a partition's job_id is "<job id>-<index>"), the endpoint's or the notebook's own name.
    ValueError for a kind that kaos does not run as a Kubernetes object."""
    if spec.kind == "train":
        return object_name(f"train-{spec.job_id}")
    if spec.kind in ("serve", "notebook"):
        return object_name(spec.job_id)
    raise ValueError(f"kaos runs no {spec.kind} workload as a Kubernetes object")


def token_secret_name(spec: WorkloadSpec) -> str:
    """The Secret that holds the workload's artifact token: `kaos-token-<workload_name>`."""
    return object_name(TOKEN_SECRET_PREFIX + workload_name(spec))


def job_of(spec: WorkloadSpec) -> str:
    """The job a workload belongs to, as its log names it: a job id (a training's partitions share it), or the
    endpoint's name."""
    return spec.log.split("/", 1)[1]


def workspace_of(spec: WorkloadSpec) -> str:
    """The workspace of `spec`: its env's KAOS_WORKSPACE (a training's), else the one its endpoint's name holds
    (`serve-<ws>-<hex6>`), else "" (unknown)."""
    if spec.env.get("KAOS_WORKSPACE"):
        return spec.env["KAOS_WORKSPACE"]
    match = ENDPOINT_RE.match(spec.job_id) if spec.kind == "serve" else None
    return match["workspace"] if match else ""


def workload_labels(spec: WorkloadSpec, platform: str) -> Dict[str, str]:
    """The labels of every object (and pod template) made for `spec` by the platform `platform`."""
    return {MANAGED_BY: MANAGER, PLATFORM: label_value(platform), KIND: label_value(spec.kind),
            WORKSPACE: label_value(workspace_of(spec)), JOB: label_value(job_of(spec)),
            WORKLOAD: label_value(spec.job_id)}


def selector_labels(spec: WorkloadSpec, platform: str) -> Dict[str, str]:
    """The labels that select the pods of one Deployment and its Service (a subset of `workload_labels`: a
    Deployment's selector cannot change, and must select no other Deployment's pods)."""
    labels = workload_labels(spec, platform)
    return {key: labels[key] for key in (MANAGED_BY, PLATFORM, KIND, WORKLOAD)}


def platform_selector(platform: str) -> str:
    """The label selector of everything the platform `platform` made: the shared watch's."""
    return f"{MANAGED_BY}={MANAGER},{PLATFORM}={label_value(platform)}"
