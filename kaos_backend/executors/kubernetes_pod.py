"""A kaos workload's pod on Kubernetes, as the official client's model objects (issue 11): pure functions.

    volume pfs        an emptyDir mounted at /pfs in every container of the pod
    initContainer     `fetch`: the pod agent fills /pfs/code, /pfs/data/<name>, /pfs/hyper (pod_commands.py)
    train             pod_commands.TRAIN_WRAPPER in /pfs/code: `./train $KAOS_TRAIN_OUTPUT`, then the agent's
                      upload of the output; exits with train's code (the upload's when train succeeded but the
                      upload did not)
    serve             `./serve` in /pfs/code, port 8080 (`http`), ready once GET /ping answers 2xx/3xx

Resources: --cpu and --memory are the requests AND the limits (one value: the workload gets what it asked for,
no more); --gpu N is the limit `nvidia.com/gpu: N` (Kubernetes takes the request of an extended resource from
its limit). The fetch container gets the same cpu and memory (so the pod asks for no more than the workload
does) and no GPU.

Every pod: no service account token (a workload has no business with the Kubernetes API), no service links (a
Service named kaos-backend would otherwise put KAOS_BACKEND_* variables into every workload's environment), the
artifact token from its Secret as KAOS_ARTIFACT_TOKEN (the fetch container's, and the train container's for the
upload: the wrapper takes it out of ./train's environment); the serve container has none.
"""
from typing import Dict, List, Mapping, Optional

from kubernetes import client

from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.executors.workload_env import SERVE_PORT

PFS_VOLUME = "pfs"
PFS_ROOT = "/pfs"
CODE_DIR = "/pfs/code"
TOKEN_ENV = "KAOS_ARTIFACT_TOKEN"
TOKEN_KEY = "token"            # the key of the token in its Secret
GPU_RESOURCE = "nvidia.com/gpu"
HTTP_PORT_NAME = "http"
READINESS_PATH = "/ping"


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity in millicores ("500m", "1500m"), whole cores plainly ("2"); at least 1m."""
    millicores = max(1, int(round(cores * 1000)))
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def resource_requirements(cpu: Optional[float], memory: Optional[str], gpu: int,
                          with_gpu: bool = True) -> Optional[client.V1ResourceRequirements]:
    """The requests and limits of a container (None when nothing is asked): `cpu` cores and `memory` (a
    Kubernetes quantity, as the user gave it and kaos_backend.resources checked it) as both, `gpu` as the limit
    nvidia.com/gpu (left out when not `with_gpu`)."""
    amounts: Dict[str, str] = {}
    if cpu:
        amounts["cpu"] = cpu_quantity(cpu)
    if memory:
        amounts["memory"] = str(memory).strip()
    limits = dict(amounts)
    if gpu and with_gpu:
        limits[GPU_RESOURCE] = str(int(gpu))
    if not limits:
        return None
    return client.V1ResourceRequirements(requests=amounts or None, limits=limits)


def env_vars(env: Mapping[str, str], token_secret: Optional[str]) -> List[client.V1EnvVar]:
    """`env` as a container's variables, in its order, then KAOS_ARTIFACT_TOKEN from the Secret `token_secret`
    (when one is named)."""
    variables = [client.V1EnvVar(name=name, value=str(value)) for name, value in env.items()]
    if token_secret:
        variables.append(client.V1EnvVar(name=TOKEN_ENV, value_from=client.V1EnvVarSource(
            secret_key_ref=client.V1SecretKeySelector(name=token_secret, key=TOKEN_KEY))))
    return variables


def pfs_mount() -> client.V1VolumeMount:
    return client.V1VolumeMount(name=PFS_VOLUME, mount_path=PFS_ROOT)


def fetch_container(spec: WorkloadSpec, image: str, pull_policy: str, command: List[str],
                    token_secret: str) -> client.V1Container:
    """The initContainer `fetch`: the pod agent's `command` in the workload's own image (it has a python3)."""
    return client.V1Container(
        name="fetch", image=image, image_pull_policy=pull_policy, command=list(command),
        env=env_vars({"PYTHONUNBUFFERED": "1"}, token_secret), volume_mounts=[pfs_mount()],
        resources=resource_requirements(spec.cpu, spec.memory, spec.gpu, with_gpu=False))


def train_container(spec: WorkloadSpec, image: str, pull_policy: str, env: Mapping[str, str],
                    command: List[str], token_secret: str) -> client.V1Container:
    """The container `train`: `command` (pod_commands.train_and_upload_command: ./train, then the upload)."""
    return client.V1Container(
        name="train", image=image, image_pull_policy=pull_policy, working_dir=CODE_DIR,
        command=list(command),
        env=env_vars(env, token_secret), volume_mounts=[pfs_mount()],
        resources=resource_requirements(spec.cpu, spec.memory, spec.gpu))


def serve_container(spec: WorkloadSpec, image: str, pull_policy: str,
                    env: Mapping[str, str]) -> client.V1Container:
    """The container `serve`: ./serve on port 8080, ready once GET /ping answers (every 5 s); no artifact token
    (only its fetch container needs one)."""
    return client.V1Container(
        name="serve", image=image, image_pull_policy=pull_policy, working_dir=CODE_DIR, command=["./serve"],
        env=env_vars(env, None), volume_mounts=[pfs_mount()],
        ports=[client.V1ContainerPort(name=HTTP_PORT_NAME, container_port=SERVE_PORT, protocol="TCP")],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path=READINESS_PATH, port=HTTP_PORT_NAME),
            period_seconds=5, timeout_seconds=2, failure_threshold=3),
        resources=resource_requirements(spec.cpu, spec.memory, spec.gpu))


def pod_spec(init: client.V1Container, main: client.V1Container, restart_policy: str) -> client.V1PodSpec:
    """One workload's pod: `init` then `main`, sharing the emptyDir /pfs."""
    return client.V1PodSpec(
        init_containers=[init], containers=[main], restart_policy=restart_policy,
        volumes=[client.V1Volume(name=PFS_VOLUME, empty_dir=client.V1EmptyDirVolumeSource())],
        automount_service_account_token=False, enable_service_links=False)
