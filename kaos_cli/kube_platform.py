"""The KUBERNETES and MINIKUBE platforms: `kaos build deploy -c KUBERNETES|MINIKUBE` applies the backend's shipped
manifests (kube_manifests.py) to a kube context and waits until the backend is available (kube_rollout.py);
`kaos destroy` removes exactly what it made (kube_destroy.py). No kubectl: the official client (kube_api.py).

The CLI context (`[context:KUBERNETES]`, `[context:MINIKUBE]` in .kaos/config) keeps url, token, kind =
kubernetes, kube_context, namespace, kubeconfig (when KUBECONFIG named it), target (the shipped render) and
objects (every object the deploys made there, for destroy). It is written before anything is applied, so that a
deploy that fails halfway leaves nothing `kaos destroy` does not know; it becomes the active context once the
backend is available. A later deploy without --context or --namespace goes where the context says (so that
`kaos build deploy -c KUBERNETES -f` rebuilds that backend, its data volume kept, with a new token).

The URL the CLI uses, first found: --url; the Ingress `kaos`'s address (status.loadBalancer: an Ingress
controller gives it); MINIKUBE only: the node's address and the backend Service's NodePort, when it has one; the
backend Service's cluster IP (reachable from inside the cluster only, e.g. a test's fake cluster: a Warning says
so when it does not answer).
"""
import copy
import datetime
import secrets
import time
from typing import Dict, Optional, Tuple

from kaos_cli import kube_manifests as manifests
from kaos_cli import render
from kaos_cli.errors import KaosError
from kaos_cli.kube_manifests import BACKEND, ObjectRef
from kaos_cli.state import Config, default_user, ensure_state_dir

KUBERNETES, MINIKUBE = "KUBERNETES", "MINIKUBE"
KIND = "kubernetes"                    # the context's kind
DEFAULT_NAMESPACE = "kaos"
MINIKUBE_CONTEXT = "minikube"          # the kube context `minikube start` writes
IMAGE_VARIABLE = "KAOS_BACKEND_IMAGE"  # the backend image when --image is not given
DEFAULT_TIMEOUT = 300                  # seconds for the backend to become available (pulling its image included)
HEALTH_WAIT = 15.0                     # seconds for the chosen URL to answer once the backend is available
DEPLOYMENT = ObjectRef("apps/v1", "Deployment", BACKEND)
SERVICE = ObjectRef("v1", "Service", BACKEND)
KEPT = {"PersistentVolumeClaim"}       # created once, never replaced: their spec is immutable, their data stays
# The backend's settings (kaos_backend/config.py) that the environment of `kaos build deploy` hands to the cluster's
# backend, as the LOCAL and DOCKER backends inherit them: written into its ConfigMap when set (and not empty).
# Not those the manifests own (KAOS_EXECUTOR, KAOS_DATA_DIR, KAOS_NAMESPACE, KAOS_TOKEN, KAOS_DATABASE_URL, the
# internal port and URL) nor those naming this machine (KAOS_KUBECONFIG, KAOS_KUBE_CONTEXT).
CLUSTER_SETTINGS = ("KAOS_MAX_CPU", "KAOS_MAX_MEMORY", "KAOS_MAX_GPU", "KAOS_MAX_UPLOAD_MB", "KAOS_MAX_BUNDLE_MB",
                    "KAOS_MAX_LOG_MB", "KAOS_ENDPOINT_START_TIMEOUT", "KAOS_NOTEBOOK_IDLE_TIMEOUT",
                    "KAOS_NOTEBOOK_STORAGE", "KAOS_POD_PENDING_TIMEOUT", "KAOS_IMAGE_PULL_POLICY", "KAOS_BASE_IMAGE")


def kube_context_for(cloud: str, given: Optional[str]) -> Optional[str]:
    """--context, else MINIKUBE's `minikube`, else None: the kube config's current context."""
    return given or (MINIKUBE_CONTEXT if cloud == MINIKUBE else None)


def connect(cloud: str, kubeconfig: str, context: Optional[str], failure: str):
    """The API server of `context`; a KaosError `<failure>: <why>` when the client or the kube config fails."""
    from kaos_cli import kube_api

    kube_api.require_client(cloud)
    try:
        return kube_api.Cluster(kubeconfig, context)
    except kube_api.KubeError as error:
        started = " - is minikube started?" if cloud == MINIKUBE and context == MINIKUBE_CONTEXT else ""
        raise KaosError(f"{failure}: {error.message}{started}") from None


def deploy(cloud: str, kube_context: Optional[str], namespace: Optional[str], image: Optional[str],
           url: Optional[str], postgres: bool, timeout: float, force: bool, yes: bool, verbose: bool,
           registry: Optional[str] = None) -> None:
    """`kaos build deploy -c KUBERNETES|MINIKUBE`: see the module's docstring; `registry` the backend's
    KAOS_REGISTRY (None: the manifests' own, none). Raises KaosError (one line)."""
    import os

    from kaos_cli.kube_api import KubeError, default_kubeconfig

    failure = f"Deployment Unsuccessful while creating kaos {cloud} environment"
    earlier = Config.load().context(cloud) or {}
    if earlier.get("kind") == KIND:  # a rebuild (-f) goes where the backend is unless told otherwise
        namespace = namespace or earlier.get("namespace")
        kube_context = kube_context or earlier.get("kube_context")
    namespace = namespace or DEFAULT_NAMESPACE
    problem = manifests.namespace_problem(namespace)
    if problem:
        raise KaosError(f"{failure}: {problem}")
    image = image or os.environ.get(IMAGE_VARIABLE) or None
    kubeconfig = default_kubeconfig()
    cluster = connect(cloud, kubeconfig, kube_context_for(cloud, kube_context), failure)
    try:
        _deploy(cluster, cloud, namespace, image, url, postgres, timeout, force, yes, verbose,
                kubeconfig if os.environ.get("KUBECONFIG") else "", registry)
    except KubeError as error:
        raise KaosError(f"{failure}: {error.message}") from None
    finally:
        cluster.close()


def cluster_settings(environ, registry: Optional[str]) -> Dict[str, str]:
    """The ConfigMap entries of the cluster's backend that this deploy sets: the CLUSTER_SETTINGS given (not empty)
    in `environ`, and KAOS_REGISTRY when `registry` is."""
    settings = {name: environ[name] for name in CLUSTER_SETTINGS if environ.get(name, "").strip()}
    if registry:
        settings["KAOS_REGISTRY"] = registry
    return settings


def _deploy(cluster, cloud, namespace, image, url, postgres, timeout, force, yes, verbose, kubeconfig,
            registry=None) -> None:
    import os

    from kaos_cli import kube_rollout

    config = Config.load()
    existing = config.context(cloud)
    backend = cluster.read(DEPLOYMENT, namespace)
    if backend is not None and kube_rollout.rolled_out(backend) and not force:
        raise KaosError("kaos backend is already built.", level="Aborting")
    elsewhere = existing and (existing.get("kube_context"), existing.get("namespace")) != (cluster.context, namespace)
    if elsewhere and not force:
        raise KaosError(f"kaos backend in {cloud} is deployed in namespace {existing.get('namespace')} of kube "
                        f"context {existing.get('kube_context')}: run kaos destroy -c {cloud} first, or -f to leave "
                        "it there", level="Aborting")
    if force and (backend is not None or existing):
        render.warning("Performing force build of the backend")
    if elsewhere:
        render.warning(f"The backend in namespace {existing.get('namespace')} of kube context "
                       f"{existing.get('kube_context')} stays: kaos destroy -c {cloud} will not know it")
    if not registry and cloud == KUBERNETES:
        render.warning("No --registry (nor KAOS_REGISTRY): the workloads' images stay on the backend's Docker engine, "
                       "which the nodes cannot pull from (that suits a single-node cluster sharing that engine only)")
    if not yes:
        render.confirm(f"Are you sure about building kaos backend in {cloud}?", abort=True)

    target = manifests.target(cloud, postgres)
    deployed_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    objects = manifests.prepare(manifests.load(target), namespace, image, deployed_at,
                                cluster_settings(os.environ, registry))
    token = secrets.token_hex(24)
    made = [manifests.secret(BACKEND, namespace, manifests.TOKEN_KEY, token)]
    if manifests.uses_postgres(objects):  # hex: it goes into the database URL as it is
        made.append(manifests.secret(manifests.POSTGRES_SECRET, namespace, manifests.POSTGRES_KEY,
                                     secrets.token_hex(24)))
    refs = [manifests.ref(obj) for obj in made + objects] + manifests.claims_of(objects)
    if existing and not elsewhere:
        refs += manifests.parse_refs(existing.get("objects"))  # what an earlier deploy made there goes at destroy
    if verbose:
        render.info(f"Kubernetes API server {cluster.host}, kube context {cluster.context}, namespace {namespace}, "
                    f"manifests {target}, backend image {manifests.default_image(objects)}")
    fields = dict(kind=KIND, kube_context=cluster.context, namespace=namespace, kubeconfig=kubeconfig,
                  target=target, objects=manifests.dump_refs(refs))
    # Before anything is applied: a failure from here on leaves a context that kaos destroy finds.
    _save_context(cloud, dict(fields, url=(existing or {}).get("url", ""), token=token), active=False)

    _ensure_namespace(cluster, namespace, verbose)
    for obj in made + objects:
        done = apply(cluster, obj, keep=obj["kind"] == "Secret" and obj["metadata"]["name"] != BACKEND)
        if verbose:
            render.info(f"{done} {manifests.ref(obj)}")
    if verbose:
        render.info(f"Waiting up to {timeout:.0f} s for the Deployment {BACKEND} to be available")
    problem = kube_rollout.wait_available(cluster, namespace, BACKEND, timeout)
    if problem:
        raise KaosError(f"Deployment Unsuccessful while creating kaos {cloud} environment: {problem} - kaos destroy "
                        f"-c {cloud} removes what was made")

    url, source = backend_url(cluster, namespace, cloud, url)
    unreachable = _health(url, token)
    _save_context(cloud, dict(fields, url=url, token=token), active=True)
    if unreachable:
        render.warning(f"The backend is available in the cluster but does not answer at {url} ({source}): "
                       f"{unreachable}{_hint(source, namespace)}")
    render.info(f"Endpoint successfully set to {url}")
    render.info("Successfully built kaos environment")


def apply(cluster, obj: Dict, keep: bool = False) -> str:
    """Create `obj`, or replace the object of that name (keeping what the server assigned: a Service's cluster IP,
    the resourceVersion); a PersistentVolumeClaim, or any object with `keep`, that exists is left as it is.
    Returns what was done: created, replaced or kept."""
    namespace = obj["metadata"].get("namespace")
    current = cluster.read(manifests.ref(obj), namespace)
    if current is None:
        cluster.create(obj)
        return "created"
    if keep or obj["kind"] in KEPT:
        return "kept"
    body = copy.deepcopy(obj)
    body["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
    if obj["kind"] == "Service":
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if (current.get("spec") or {}).get(field) is not None:
                body["spec"][field] = current["spec"][field]
    cluster.replace(body)
    return "replaced"


def _ensure_namespace(cluster, namespace: str, verbose: bool) -> None:
    ref = ObjectRef("v1", "Namespace", namespace)
    if cluster.read(ref, None) is None:
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        if verbose:
            render.info(f"created {ref}")


def backend_url(cluster, namespace: str, cloud: str, given: Optional[str]) -> Tuple[str, str]:
    """The URL the CLI uses and where it comes from (see the module's docstring)."""
    from kaos_cli.kube_api import first_address

    if given:
        return given, "--url"
    ingress = cluster.read(ObjectRef("networking.k8s.io/v1", "Ingress", manifests.INGRESS), namespace)
    address = ingress and first_address(ingress.get("status"))
    if address:
        scheme = "https" if (ingress.get("spec") or {}).get("tls") else "http"
        return f"{scheme}://{_host(address)}/api/", f"the Ingress {manifests.INGRESS}"
    service = cluster.read(SERVICE, namespace) or {}
    ports = {port.get("name"): port for port in (service.get("spec") or {}).get("ports") or []}
    http = ports.get("http") or {}
    if cloud == MINIKUBE and http.get("nodePort"):
        node = _node_address(cluster)
        if node:
            return f"http://{_host(node)}:{http['nodePort']}/api/", "the node's NodePort"
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    if not cluster_ip or cluster_ip == "None":
        raise KaosError(f"Deployment Unsuccessful while creating kaos {cloud} environment: the Service {BACKEND} has "
                        "no cluster IP - give the backend's URL with --url")
    return f"http://{_host(cluster_ip)}:{http.get('port', 8080)}/api/", "the Service's cluster IP"


def _node_address(cluster) -> Optional[str]:
    for node in cluster.list("v1", "Node", None):
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                return address.get("address")
    return None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address  # an IPv6 address in a URL


def _health(url: str, token: str) -> Optional[str]:
    """None once `GET <url>health` answers with the token (within HEALTH_WAIT seconds), else why not."""
    from kaos_cli.local_platform import health_problem

    deadline = time.monotonic() + HEALTH_WAIT
    while True:
        problem = health_problem(url, token)
        if problem is None:
            return None
        if time.monotonic() >= deadline:
            return problem.message
        time.sleep(0.5)


def _hint(source: str, namespace: str) -> str:
    if source == "the Service's cluster IP":
        return (f" - a cluster IP is reached from inside the cluster only: give the URL with --url (e.g. with "
                f"`kubectl -n {namespace} port-forward svc/{BACKEND} 8080`, --url http://127.0.0.1:8080/api/)")
    return ""


def _save_context(cloud: str, fields: Dict, active: bool) -> None:
    ensure_state_dir()
    config = Config.load()  # re-read: keep anything written meanwhile
    config.set_context(cloud, **fields)
    if active:
        config.set_active(cloud)
    if not config.has_user:
        config.set_user(default_user())
    config.save()
