"""kaos workloads as Kubernetes objects (issue 11), the official client's models: pure functions, no I/O
(the kubernetes executor sends them). Names and labels are kubernetes_names.py's, the pod kubernetes_pod.py's.

    training_job(spec, settings)             batch/v1 Job train-<job id>-<index>: one pod, never retried
                                             (backoffLimit 0), removed an hour after it ended
                                             (ttlSecondsAfterFinished), activeDeadlineSeconds when given
    endpoint_deployment(spec, settings)      apps/v1 Deployment serve-<ws>-<hex6>, one replica
    endpoint_service(spec, settings, owner)  its ClusterIP Service, port 8080 -> the pod's 8080
    token_secret(spec, settings, token, owner)   the Secret kaos-token-<workload> holding the artifact token (and
                                                 a notebook's JUPYTER_TOKEN)

A notebook's Deployment, Service and work directory claim are kubernetes_notebook.py's (over deployment_of and
workload_service here).

A Secret or Service made after its Job or Deployment names it as its owner (`owner_reference`), so deleting the
Job or Deployment (any propagation) deletes them too. The executor creates the Job or Deployment first, then the
Secret: the pod waits for a Secret its environment names, so nothing runs before the token is there.

RBAC_RULES is every verb on every kind that the kubernetes executor uses: the backend's Role
(infrastructure/kubernetes/base/rbac.yaml) grants exactly these (a test compares them), NODE_RBAC_RULES the
read-only look at nodes (their allocatable capacity, before a workload asks for more than any node has).
"""
from dataclasses import dataclass, field
from typing import Mapping, Optional

from kubernetes import client

from kaos_backend.executors import kubernetes_names, kubernetes_pod, pod_commands
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.executors.workload_env import SERVE_PORT, passed_env, serve_env, train_env, workload_env

BACKEND_SERVICE = "kaos-backend"   # the backend's Service (infrastructure/kubernetes/base/service.yaml)
INTERNAL_PORT = 8081               # its port of the internal artifact routes, the only one workloads may reach
JOB_TTL_SECONDS = 3600
API_VERSIONS = {"Job": "batch/v1", "Deployment": "apps/v1"}

RBAC_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "get"]},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create", "delete", "list"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "delete", "get", "list", "watch"]},
]
NODE_RBAC_RULES = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
]


@dataclass(frozen=True)
class KubeSettings:
    """What the objects depend on besides the spec: the namespace, the platform id (labels), the registry images
    are pushed to ("" = none: images are used by name, as with minikube's docker-env), where pods reach the
    backend's internal routes ("" = its Service in `namespace`), the image pull policy ("" = IfNotPresent without
    a registry, Always with one: a tag such as build-train-<ws>:<hash5> can be pushed again with other content),
    the variables of the backend's environment that workloads get (workload_env.PASSED_ENV), and the size of a
    notebook's work directory claim ("" = an emptyDir, kubernetes_notebook.py)."""
    namespace: str = "kaos"
    platform: str = ""
    registry: str = ""
    internal_url: str = ""
    image_pull_policy: str = ""
    passed_env: Mapping[str, str] = field(default_factory=dict)
    notebook_storage: str = ""

    @classmethod
    def from_config(cls, config, environ: Mapping[str, str]) -> "KubeSettings":
        """The settings of a backend's `config` (kaos_backend.config.Config), `environ` its environment."""
        from kaos_backend.config import platform_id
        return cls(namespace=config.namespace, platform=platform_id(config.data_dir), registry=config.registry,
                   internal_url=config.internal_url, image_pull_policy=config.image_pull_policy,
                   passed_env=passed_env(environ), notebook_storage=config.notebook_storage.strip())

    @property
    def base_url(self) -> str:
        """Where a pod reaches the backend's internal routes (no trailing slash)."""
        return (self.internal_url or f"http://{BACKEND_SERVICE}.{self.namespace}.svc:{INTERNAL_PORT}").rstrip("/")

    @property
    def pull_policy(self) -> str:
        return self.image_pull_policy or ("Always" if self.registry else "IfNotPresent")


def image_reference(settings: KubeSettings, image_name: str) -> str:
    """The reference pods pull a build's image by: `<registry>/<image_name>`, or `image_name` without a registry."""
    registry = settings.registry.strip().rstrip("/")
    return f"{registry}/{image_name}" if registry else image_name


def owner_reference(kind: str, name: str, uid: str) -> client.V1OwnerReference:
    """A reference to the created Job or Deployment `name` (`uid` as the API server gave it) that owns an object."""
    return client.V1OwnerReference(api_version=API_VERSIONS[kind], kind=kind, name=name, uid=uid)


def object_metadata(spec: WorkloadSpec, settings: KubeSettings, name: str,
                    owner: Optional[client.V1OwnerReference] = None) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, namespace=settings.namespace,
                               labels=kubernetes_names.workload_labels(spec, settings.platform),
                               owner_references=[owner] if owner is not None else None)


def image_of(spec: WorkloadSpec) -> str:
    if not spec.image:
        raise ValueError(f"the {spec.kind} workload {spec.job_id} names no image (its build made none)")
    return spec.image


def check_kind(spec: WorkloadSpec, kind: str) -> None:
    if spec.kind != kind:
        raise ValueError(f"a {spec.kind} workload is not a {kind} workload")


def training_job(spec: WorkloadSpec, settings: KubeSettings,
                 active_deadline_seconds: Optional[int] = None) -> client.V1Job:
    """The Job of a training partition `spec`. ValueError when `spec` is not a train spec with an image."""
    check_kind(spec, "train")
    image, secret = image_of(spec), kubernetes_names.token_secret_name(spec)
    env = workload_env(spec, train_env(spec), settings.passed_env)
    pod = kubernetes_pod.pod_spec(
        kubernetes_pod.fetch_container(spec, image, settings.pull_policy,
                                       pod_commands.fetch_command(spec, settings.base_url), secret),
        kubernetes_pod.train_container(spec, image, settings.pull_policy, env,
                                       pod_commands.train_and_upload_command(spec, settings.base_url), secret),
        restart_policy="Never")
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=kubernetes_names.workload_labels(spec, settings.platform)), spec=pod)
    return client.V1Job(
        api_version="batch/v1", kind="Job",
        metadata=object_metadata(spec, settings, kubernetes_names.workload_name(spec)),
        spec=client.V1JobSpec(template=template, backoff_limit=0, ttl_seconds_after_finished=JOB_TTL_SECONDS,
                              active_deadline_seconds=active_deadline_seconds))


def endpoint_deployment(spec: WorkloadSpec, settings: KubeSettings) -> client.V1Deployment:
    """The Deployment of an endpoint `spec`. ValueError when `spec` is not a serve spec with an image."""
    check_kind(spec, "serve")
    image, secret = image_of(spec), kubernetes_names.token_secret_name(spec)
    env = workload_env(spec, serve_env(), settings.passed_env)
    pod = kubernetes_pod.pod_spec(
        kubernetes_pod.fetch_container(spec, image, settings.pull_policy,
                                       pod_commands.fetch_command(spec, settings.base_url), secret),
        kubernetes_pod.serve_container(spec, image, settings.pull_policy, env),
        restart_policy="Always")
    return deployment_of(spec, settings, pod)


def deployment_of(spec: WorkloadSpec, settings: KubeSettings, pod: client.V1PodSpec) -> client.V1Deployment:
    """The one-replica Deployment of `spec` (an endpoint's, a notebook's) whose pods are `pod`."""
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=kubernetes_names.workload_labels(spec, settings.platform)), spec=pod)
    selector = client.V1LabelSelector(match_labels=kubernetes_names.selector_labels(spec, settings.platform))
    return client.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=object_metadata(spec, settings, kubernetes_names.workload_name(spec)),
        spec=client.V1DeploymentSpec(replicas=1, selector=selector, template=template))


def endpoint_service(spec: WorkloadSpec, settings: KubeSettings,
                     owner: Optional[client.V1OwnerReference] = None) -> client.V1Service:
    """The ClusterIP Service of an endpoint `spec` (its Deployment's name): port 8080 to the pod's `http`."""
    check_kind(spec, "serve")
    return workload_service(spec, settings, SERVE_PORT, owner)


def workload_service(spec: WorkloadSpec, settings: KubeSettings, port_number: int,
                     owner: Optional[client.V1OwnerReference] = None) -> client.V1Service:
    """The ClusterIP Service of a Deployment's pods (an endpoint's, a notebook's), named as the Deployment:
    `port_number` to the pod's port `http`."""
    port = client.V1ServicePort(name=kubernetes_pod.HTTP_PORT_NAME, port=port_number, protocol="TCP",
                                target_port=kubernetes_pod.HTTP_PORT_NAME)
    return client.V1Service(
        api_version="v1", kind="Service",
        metadata=object_metadata(spec, settings, kubernetes_names.workload_name(spec), owner),
        spec=client.V1ServiceSpec(type="ClusterIP", selector=kubernetes_names.selector_labels(spec, settings.platform),
                                  ports=[port]))


def token_secret(spec: WorkloadSpec, settings: KubeSettings, token: str,
                 owner: client.V1OwnerReference) -> client.V1Secret:
    """The Secret that gives `spec`'s pod its artifact `token` (KAOS_ARTIFACT_TOKEN), and the spec's `secrets`
    (a notebook's JUPYTER_TOKEN) each under its own name, owned by its Job or Deployment `owner`."""
    return client.V1Secret(
        api_version="v1", kind="Secret", type="Opaque",
        metadata=object_metadata(spec, settings, kubernetes_names.token_secret_name(spec), owner),
        string_data={**spec.secrets, kubernetes_pod.TOKEN_KEY: token})

