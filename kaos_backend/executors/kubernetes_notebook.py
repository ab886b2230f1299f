"""A notebook on Kubernetes (issue 12), as the official client's model objects: pure functions, no I/O (the
kubernetes executor sends them; kubernetes_spec.py builds the other kinds).

    notebook_deployment(spec, settings)        apps/v1 Deployment notebook-<ws>-<user>, one replica, its pod:
        initContainer `fetch`   the pod agent fills /pfs/data/<name> (each attached data bundle), /pfs/out/<hex6>
                                (a model: its training's model/ and metrics/) and seeds the work directory with
                                the source's model/ files it does not hold yet (pod_commands.py)
        container `notebook`    `jupyter lab` (notebook_command.py) in the work directory /opt/program, listening
                                on 0.0.0.0:8888 (`http`) under the notebook's base URL, ready once
                                GET <base_url>api answers; /pfs mounted read-only (its inputs cannot be changed)
    notebook_service(spec, settings, owner)    its ClusterIP Service, port 8888 -> the pod's `http`: where the
                                               gateway routes /notebook-<ws>-<user>/... (`start` returns it)
    work_claim(spec, settings)                 the PersistentVolumeClaim notebook-<ws>-<user>-work of its work
                                               directory (ReadWriteOnce, KAOS_NOTEBOOK_STORAGE, the cluster's
                                               default StorageClass)

The work directory: the issue asks that it survive culling and kills, as it does on the local and docker
executors (a directory of the backend's machine there). A pod's emptyDir goes with the pod, so by default it is a
PersistentVolumeClaim per notebook that nothing owns: a kill or a cull deletes the Deployment, never the claim,
and the next deploy of the same user in the workspace mounts it again. KAOS_NOTEBOOK_STORAGE="" makes it an
emptyDir instead (a cluster without a default StorageClass or dynamic provisioning: the work is then lost when the
notebook stops). `kaos workspace kill` removes its notebooks' claims, killed ones' too
(KubernetesExecutor.remove_notebook_work, by their labels), `kaos destroy -c KUBERNETES` every claim with the rest.

The token: JUPYTER_TOKEN from the workload's Secret (kaos-token-<name>, which also holds its artifact token, and
goes with the Deployment), never on a command line; Jupyter refuses a request without it. The notebook container
gets no artifact token (only `fetch` needs one). --cpu/--memory are requests and limits, --gpu the
nvidia.com/gpu limit (kubernetes_pod.resource_requirements).
"""
from typing import Dict, List

from kubernetes import client

from kaos_backend.executors import kubernetes_names, kubernetes_pod, pod_commands
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.executors.kubernetes_spec import (KubeSettings, check_kind, deployment_of, image_of,
                                                    object_metadata, workload_service)
from kaos_backend.executors.notebook_command import CONTAINER_PORT, jupyter_arguments, readiness_path
from kaos_backend.executors.workload_env import DATA_ROOT, output_target, workload_env

WORK_DIR = pod_commands.NOTEBOOK_WORK_DIR
WORK_VOLUME = "work"
PORT_VARIABLE = "PORT"   # the port Jupyter listens on, as $(PORT) in its arguments


def work_claim_name(spec: WorkloadSpec) -> str:
    """The claim of a notebook's work directory: `<notebook name>-work`."""
    return kubernetes_names.object_name(f"{kubernetes_names.workload_name(spec)}-{WORK_VOLUME}")


def notebook_env(spec: WorkloadSpec, settings: KubeSettings) -> Dict[str, str]:
    """The notebook container's plain environment: workload_env's, where its inputs are (KAOS_NOTEBOOK_DATA,
    1.x's DATA_REPO under /pfs, KAOS_NOTEBOOK_MODEL with a model) and the port it listens on."""
    staged = {"KAOS_NOTEBOOK_DATA": DATA_ROOT, "DATA_REPO": "data", PORT_VARIABLE: str(CONTAINER_PORT)}
    if spec.model is not None:
        staged["KAOS_NOTEBOOK_MODEL"] = output_target(spec.model.output_parts()[1])
    return workload_env(spec, staged, settings.passed_env)


def notebook_command(spec: WorkloadSpec) -> List[str]:
    """`jupyter lab` under the notebook's base URL in WORK_DIR, culled after `idle_timeout`, on 0.0.0.0:$(PORT)."""
    return ["jupyter", "lab", *jupyter_arguments(spec.base_url, WORK_DIR, spec.idle_timeout),
            "--ServerApp.ip=0.0.0.0", f"--ServerApp.port=$({PORT_VARIABLE})"]


def _work_mount() -> client.V1VolumeMount:
    return client.V1VolumeMount(name=WORK_VOLUME, mount_path=WORK_DIR)


def notebook_container(spec: WorkloadSpec, settings: KubeSettings, image: str, secret: str) -> client.V1Container:
    """The container `notebook` (module docstring); its secrets (JUPYTER_TOKEN) from the Secret `secret`."""
    env = kubernetes_pod.env_vars(notebook_env(spec, settings), None)
    env += [client.V1EnvVar(name=key, value_from=client.V1EnvVarSource(
        secret_key_ref=client.V1SecretKeySelector(name=secret, key=key))) for key in sorted(spec.secrets)]
    return client.V1Container(
        name="notebook", image=image, image_pull_policy=settings.pull_policy, working_dir=WORK_DIR,
        command=notebook_command(spec), env=env,
        volume_mounts=[client.V1VolumeMount(name=kubernetes_pod.PFS_VOLUME, mount_path=kubernetes_pod.PFS_ROOT,
                                            read_only=True), _work_mount()],
        ports=[client.V1ContainerPort(name=kubernetes_pod.HTTP_PORT_NAME, container_port=CONTAINER_PORT,
                                      protocol="TCP")],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path=readiness_path(spec.base_url), port=kubernetes_pod.HTTP_PORT_NAME),
            period_seconds=5, timeout_seconds=2, failure_threshold=3),
        resources=kubernetes_pod.resource_requirements(spec.cpu, spec.memory, spec.gpu))


def notebook_deployment(spec: WorkloadSpec, settings: KubeSettings) -> client.V1Deployment:
    """The Deployment of a notebook `spec`. ValueError when `spec` is not a notebook spec with an image and a
    base URL."""
    check_kind(spec, "notebook")
    image, secret = image_of(spec), kubernetes_names.token_secret_name(spec)
    fetch = kubernetes_pod.fetch_container(spec, image, settings.pull_policy,
                                           pod_commands.fetch_command(spec, settings.base_url), secret)
    fetch.volume_mounts.append(_work_mount())
    pod = kubernetes_pod.pod_spec(fetch, notebook_container(spec, settings, image, secret), restart_policy="Always")
    pod.volumes.append(client.V1Volume(
        name=WORK_VOLUME, persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
            claim_name=work_claim_name(spec)) if settings.notebook_storage else None,
        empty_dir=None if settings.notebook_storage else client.V1EmptyDirVolumeSource()))
    return deployment_of(spec, settings, pod)


def notebook_service(spec: WorkloadSpec, settings: KubeSettings,
                     owner: client.V1OwnerReference = None) -> client.V1Service:
    """The ClusterIP Service of a notebook `spec`: port 8888 to the pod's `http`."""
    check_kind(spec, "notebook")
    return workload_service(spec, settings, CONTAINER_PORT, owner)


def work_claim(spec: WorkloadSpec, settings: KubeSettings) -> client.V1PersistentVolumeClaim:
    """The claim of a notebook's work directory (owned by nothing: it outlives the Deployment). ValueError when
    the settings configure none (KAOS_NOTEBOOK_STORAGE="")."""
    check_kind(spec, "notebook")
    if not settings.notebook_storage:
        raise ValueError("no notebook storage is configured: the work directory is an emptyDir")
    return client.V1PersistentVolumeClaim(
        api_version="v1", kind="PersistentVolumeClaim",
        metadata=object_metadata(spec, settings, work_claim_name(spec)),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": settings.notebook_storage})))
