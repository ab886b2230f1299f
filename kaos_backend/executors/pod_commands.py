"""The pod agent's invocations for a workload (pure: no I/O but reading the agent's source once), for the
Kubernetes spec builders (kubernetes_spec.py): the init container `fetch` runs `fetch_command`, the train
container `train_and_upload_command` (TRAIN_WRAPPER: ./train, then `upload_command`). Where things land is kaos
1.x's /pfs layout, as the docker executor mounts it:

    /pfs/code                    the source bundle's model/ (the working directory), `train`/`serve` executable;
                                 for an endpoint the model's files are unpacked into it after the code (they win)
    /pfs/data/<name:hash5>       the training's data (workload_env.data_target)
    /pfs/hyper/<hash5>/<k=v>.json  its hyperparameters (workload_env.HYPER_DIR); there, empty, without any
    /pfs/out/<hex6>              made empty and writable; `./train /pfs/out/<hex6>`, then handed back

A notebook fetches its attached data bundles (`data-<i>`) into /pfs/data/<name:hash5>, a model (a training's
output: model/ and metrics/) into /pfs/out/<hex6>, and its source's model/ into its work directory
/opt/program (NOTEBOOK_WORK_DIR) without replacing a file there: the work directory outlives its pods.

Every URL is `<base_url>/internal/artifacts/<workload>/<artifact>` (api/artifacts.py); the agent reads its token
from env KAOS_ARTIFACT_TOKEN (a Secret's key, the executor's to set)."""
import json
from pathlib import Path
from typing import List, Optional
from urllib.parse import quote

from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_backend.executors.local_staging import input_name
from kaos_backend.executors.workload_env import HYPER_DIR, data_target, output_target

SOURCE, DATA, HYPERPARAMETERS, MODEL, OUTPUT = "source", "data", "hyperparameters", "model", "output"
CODE_DIR = "/pfs/code"
NOTEBOOK_WORK_DIR = "/opt/program"  # a notebook's work directory (1.x's WORKDIR; the notebook template's)
PYTHON = "python3"
AGENT = Path(__file__).with_name("pod_agent.py")
_agent_source: Optional[str] = None


def agent_source() -> str:
    """pod_agent.py's code as `python3 -c` runs it (its module docstring left out: it is for readers)."""
    global _agent_source
    if _agent_source is None:
        text = AGENT.read_text(encoding="utf-8")
        _agent_source = text[text.index('"""', 3) + 3:].lstrip("\n")
    return _agent_source


def attached_name(index: int) -> str:
    """The artifact name of a notebook's `index`th attached data bundle: data-<index>."""
    return f"{DATA}-{index}"


def attached_of(spec: WorkloadSpec, name: str) -> Optional[Artifact]:
    """The attached data artifact that `name` (attached_name) names, or None."""
    prefix, _, index = name.partition("-")
    if spec.kind != "notebook" or prefix != DATA or not index.isdigit() or int(index) >= len(spec.attached):
        return None
    return spec.attached[int(index)]


def names_of(spec: WorkloadSpec) -> List[str]:
    """The artifacts `spec`'s workload fetches, in the order it unpacks them (a model after the code it joins; a
    notebook's data before its code: its inputs are looked at first)."""
    if spec.kind == "notebook":
        return ([attached_name(index) for index in range(len(spec.attached))] + ([SOURCE] if spec.source else [])
                + ([MODEL] if spec.model is not None else []))
    names = []
    if spec.source is not None:
        names.append(SOURCE)
    if spec.data is not None and spec.data.kind in (Artifact.BUNDLE, Artifact.INGESTED):
        names.append(DATA)
    if spec.kind == "train":
        names.append(HYPERPARAMETERS)
    if spec.kind == "serve" and spec.model is not None:
        names.append(MODEL)
    return names


def artifact_url(base_url: str, spec: WorkloadSpec, name: str) -> str:
    """`<base_url>/internal/artifacts/<workload>/<name>` (base_url: the backend as pods reach it)."""
    return f"{base_url.rstrip('/')}/internal/artifacts/{quote(spec.job_id, safe='')}/{name}"


def output_dir(spec: WorkloadSpec) -> str:
    """Where a training writes its output in the pod: /pfs/out/<hex6>."""
    if spec.kind != "train" or spec.output is None:
        raise ValueError(f"workload {spec.job_id} ({spec.kind}) has no output")
    return output_target(spec.output.name or spec.output.output_parts()[1])


def _dest(spec: WorkloadSpec, name: str) -> str:
    if spec.kind == "notebook":
        if name == SOURCE:
            return NOTEBOOK_WORK_DIR
        if name == MODEL:
            return output_target(spec.model.output_parts()[1])
        return data_target(input_name(attached_of(spec, name)))
    if name == DATA:
        return data_target(spec.data.name or spec.data.ref[:5])
    return HYPER_DIR if name == HYPERPARAMETERS else CODE_DIR


def _fetched(spec: WorkloadSpec, base_url: str, name: str, scripts: List[str]) -> dict:
    dest = _dest(spec, name)
    item = {"name": name, "url": artifact_url(base_url, spec, name), "dest": dest,
            "scripts": scripts if dest == CODE_DIR else []}
    if spec.kind == "notebook" and name == SOURCE:
        item["keep"] = True  # the work directory seeded with the files it lacks: the user's edits win
    return item


def fetch_plan(spec: WorkloadSpec, base_url: str, max_bytes: Optional[int] = None) -> dict:
    """What `fetch` does for `spec` (see pod_agent.py): each artifact's URL and destination, the dirs to make."""
    scripts = {"train": ["train"], "serve": ["serve"]}.get(spec.kind, [])
    plan = {"artifacts": [_fetched(spec, base_url, name, scripts) for name in names_of(spec)],
            "dirs": [output_dir(spec)] if spec.kind == "train" else []}
    if max_bytes:
        plan["max_bytes"] = int(max_bytes)
    return plan


def fetch_command(spec: WorkloadSpec, base_url: str, max_bytes: Optional[int] = None) -> List[str]:
    """argv of the init container that fills /pfs for `spec` (a train or serve workload) from the backend at
    `base_url` (e.g. "http://kaos-backend.kaos.svc:8080"), each download and its unpacked size at most
    `max_bytes` (default: the agent's, 4 GiB). Its log lines are the pod's log."""
    return [PYTHON, "-c", agent_source(), "fetch", json.dumps(fetch_plan(spec, base_url, max_bytes))]


def upload_command(spec: WorkloadSpec, base_url: str) -> List[str]:
    """argv that hands a training's /pfs/out/<hex6> back to the backend (exit 0 once the backend stored it).
    ValueError for a workload without output."""
    return [PYTHON, "-c", agent_source(), "upload", output_dir(spec), artifact_url(base_url, spec, OUTPUT)]


# The train container's command: `/bin/sh -c TRAIN_WRAPPER kaos-train <upload argv...>`, in /pfs/code. The shell
# is the container's first process, which the kernel shields from signals it does not handle: it traps SIGTERM (a
# Job deleted, a pod evicted) before it starts ./train and passes it on, then waits for train's own end (a wait
# a trapped signal interrupts is waited again). ./train runs without the artifact token, into an output
# directory made for it; the upload runs whatever train's end, with the token. The container exits with
# train's code (128 + N for signal N, as a shell says it), or the upload's when train succeeded and the
# upload did not: a result counts only once the backend has it.
TRAIN_WRAPPER = """\
token=$KAOS_ARTIFACT_TOKEN
unset KAOS_ARTIFACT_TOKEN
mkdir -p "$KAOS_TRAIN_OUTPUT"
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
./train "$KAOS_TRAIN_OUTPUT" &
child=$!
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
trap - TERM INT
KAOS_ARTIFACT_TOKEN=$token "$@"
uploaded=$?
if [ "$status" -eq 0 ]; then status=$uploaded; fi
exit "$status"
"""
SHELL = "/bin/sh"


def train_and_upload_command(spec: WorkloadSpec, base_url: str) -> List[str]:
    """argv of the train container (working directory /pfs/code, KAOS_TRAIN_OUTPUT and KAOS_ARTIFACT_TOKEN in
    its environment): TRAIN_WRAPPER around `./train $KAOS_TRAIN_OUTPUT` and `upload_command`. ValueError for a
    workload without output."""
    return [SHELL, "-c", TRAIN_WRAPPER, "kaos-train", *upload_command(spec, base_url)]
