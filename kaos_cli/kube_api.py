"""The Kubernetes API server of one kube context, as `kaos build deploy|destroy -c KUBERNETES|MINIKUBE` uses it,
through the official `kubernetes` client (the `kubernetes` extra; imported here only, and only when asked for).

Objects go and come as dicts (as the manifests hold them): each call picks the client's typed API of the object's
apiVersion and kind (`AppsV1Api.create_namespaced_deployment`, `RbacAuthorizationV1Api.read_cluster_role`, ...),
sends the dict, and reads the answer's JSON. Every failure is a `KubeError` whose message is one line: the API
server's own words (its Status message) or why it could not be reached.
"""
import json
import logging
import os
import re
from typing import Dict, List, Optional

from kaos_cli.errors import KaosError
from kaos_cli.kube_manifests import ObjectRef

MISSING_CLIENT = "The {cloud} platform needs the Kubernetes client: pip install 'kaos[kubernetes]'"
REQUEST_TIMEOUT = (10, 60)   # seconds: to connect, then to read an answer
RETRIES = 1                  # a connection that fails is tried once more (urllib3), then reported


class KubeError(Exception):
    """A request the API server refused (`status`: its HTTP status) or that did not reach it (`status` None)."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.status = status


def require_client(cloud: str) -> None:
    """Raise the `pip install` line when the official client cannot be imported."""
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        raise KaosError(MISSING_CLIENT.format(cloud=cloud)) from None


def default_kubeconfig() -> str:
    """Where kubectl (and the client) read the kube config: $KUBECONFIG (a list of files, `:` between them), else
    ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


class Cluster:
    """The API server of kube context `context` from the kube config `kubeconfig`.

    Raises KubeError when the kube config cannot be read or has no such context (None: its current context)."""

    def __init__(self, kubeconfig: str, context: Optional[str] = None):
        import kubernetes

        logging.getLogger("urllib3").setLevel(logging.ERROR)  # retries are ours to report, in one line
        files = [path for path in kubeconfig.split(os.pathsep) if path]
        if not any(os.path.isfile(os.path.expanduser(path)) for path in files):
            raise KubeError(f"no kube config at {kubeconfig} (set KUBECONFIG to the file that holds the kube context)")
        try:
            contexts, current = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
        except Exception as error:  # noqa: BLE001 - ConfigException, YAML errors: one line about the file
            raise KubeError(f"cannot read the kube config {kubeconfig}: {_first_line(error)}") from None
        names = [entry.get("name") for entry in contexts or []]
        if context is None:
            if not current:
                raise KubeError(f"the kube config {kubeconfig} has no current context: give --context NAME")
            context = current["name"]
        elif context not in names:
            raise KubeError(f"no kube context {context!r} in {kubeconfig} (its contexts: "
                            f"{', '.join(names) or 'none'})")
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context,
                                               client_configuration=configuration, persist_config=False)
        except Exception as error:  # noqa: BLE001 - a context whose cluster or user cannot be used
            raise KubeError(f"cannot use kube context {context!r}: {_first_line(error)}") from None
        configuration.retries = RETRIES
        self.context = context
        self.host = configuration.host
        self.client = kubernetes.client.ApiClient(configuration)

    def close(self) -> None:
        self.client.close()

    # -- one object ------------------------------------------------------------------------------------------
    def create(self, obj: Dict) -> Dict:
        return self._call("create", _ref(obj), obj["metadata"].get("namespace"), body=obj)

    def read(self, ref: ObjectRef, namespace: Optional[str]) -> Optional[Dict]:
        """The object, or None when there is none."""
        try:
            return self._call("read", ref, namespace, name=ref.name)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def replace(self, obj: Dict) -> Dict:
        ref = _ref(obj)
        return self._call("replace", ref, obj["metadata"].get("namespace"), name=ref.name, body=obj)

    def delete(self, ref: ObjectRef, namespace: Optional[str], propagation: str = "Background") -> bool:
        """Delete the object, its dependents after it (`propagation`); False when there was none."""
        try:
            self._call("delete", ref, namespace, name=ref.name,
                       body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation})
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str = "") -> List[Dict]:
        """The objects of `kind` in `namespace` that `label_selector` selects (every page)."""
        items, token = [], None
        while True:
            answer = self._call("list", ObjectRef(api_version, kind, ""), namespace, label_selector=label_selector,
                                limit=500, **({"_continue": token} if token else {}))
            items.extend(answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return items

    def pod_log(self, name: str, namespace: str, container: str, previous: bool, lines: int) -> str:
        """The last `lines` lines of a container's log ('' when there is none to read)."""
        import kubernetes

        try:
            answer = kubernetes.client.CoreV1Api(self.client).read_namespaced_pod_log(
                name, namespace, container=container, previous=previous, tail_lines=lines,
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
            return answer.data.decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - a log is a hint in a message, never a failure of its own
            return ""

    # -- the typed API of a kind -----------------------------------------------------------------------------
    def _call(self, verb: str, ref: ObjectRef, namespace: Optional[str], **arguments) -> Dict:
        method = _method(self.client, verb, ref, namespace is not None and ref.namespaced)
        if namespace is not None and ref.namespaced:
            arguments["namespace"] = namespace
        try:
            answer = method(_preload_content=False, _request_timeout=REQUEST_TIMEOUT, **arguments)
        except Exception as error:  # noqa: BLE001 - ApiException, urllib3's errors: one line each
            raise describe(error, self.host) from None
        data = answer.data
        return json.loads(data) if data else {}


def _ref(obj: Dict) -> ObjectRef:
    return ObjectRef(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def _method(client, verb: str, ref: ObjectRef, namespaced: bool):
    """The client's typed method for `verb` of `ref`'s kind: e.g. ("create", apps/v1 Deployment) →
    AppsV1Api(client).create_namespaced_deployment."""
    import kubernetes

    group, _, version = ref.api_version.rpartition("/")
    prefix = "Core" if not group else "".join(word.capitalize() for word in group.replace(".k8s.io", "").split("."))
    api = getattr(kubernetes.client, f"{prefix}{version.capitalize()}Api")(client)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", ref.kind).lower()
    return getattr(api, f"{verb}_namespaced_{snake}" if namespaced else f"{verb}_{snake}")


def describe(error: Exception, host: str) -> KubeError:
    """One line for a failed request: the API server's Status message with its code, or why it was not reached."""
    status = getattr(error, "status", None)
    body = getattr(error, "body", None)
    if status:
        message = ""
        try:
            message = json.loads(body).get("message") or ""
        except (TypeError, ValueError, AttributeError):
            pass
        reason = getattr(error, "reason", None) or ""
        return KubeError(f"{message or reason or 'the API server refused the request'} (HTTP {status})", status)
    reason = getattr(error, "reason", None) or error  # urllib3's MaxRetryError says why in `reason`
    return KubeError(f"cannot reach the Kubernetes API server at {host}: {_first_line(reason)}")


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def first_address(status: Dict) -> Optional[str]:
    """The first address in a Service's or an Ingress's `status.loadBalancer.ingress` (its ip, else its
    hostname), or None."""
    for entry in ((status or {}).get("loadBalancer") or {}).get("ingress") or []:
        address = entry.get("ip") or entry.get("hostname")
        if address:
            return address
    return None
