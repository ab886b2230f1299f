"""The Kubernetes API as the kubernetes executor reaches it: one official-client ApiClient per process and
configuration, loaded by the client's own loaders:

    KAOS_KUBECONFIG (config `kubeconfig`)   that kubeconfig file, its context KAOS_KUBE_CONTEXT (or its current one)
    else $KUBECONFIG                        the client's default kubeconfig (with KAOS_KUBE_CONTEXT)
    else inside a pod                       the in-cluster config: the pod's ServiceAccount (the backend's Role)
    else                                    ~/.kube/config

The client is imported here, on first use: the API and the CLI never need it. Errors: `ClusterUnavailable` when
the client is missing or no configuration can be loaded."""
import os
import threading
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from kaos_backend.executors.engine_requests import EngineError, bound_of, tracked

POOL_SIZE = 256             # connections kept to the API server (followed logs, watches, requests)
PROBE_TIMEOUT = (2, 3)      # seconds to connect, to read: the scheduler's look at whether the API server answers
REQUEST_TIMEOUT = (10, 30)  # seconds to connect, to read, of every request that gives none of its own (a create, a
#                             delete, a get): without one, an API server that accepts and never answers (its etcd
#                             wedged: GET /version still answers) held the scheduler's tick for good

_lock = threading.Lock()
_clients: Dict[Tuple, object] = {}
_probes: Dict[Tuple, object] = {}


class ClusterUnavailable(EngineError):
    """No Kubernetes API can be reached with this configuration (the client missing, no kubeconfig, the API server
    down or refusing connections); the message says which."""


class ClusterRefused(RuntimeError):
    """The Kubernetes API answered a request with an error (a namespace missing, the Role lacking a verb, an object
    it finds invalid); the message says what was asked and the API server's answer, in one line."""


def _configuration(kubeconfig: str, context: str):
    try:
        import kubernetes.client
        import kubernetes.config
    except ImportError:
        raise ClusterUnavailable("the kubernetes executor needs the kubernetes client: pip install "
                                 "'kaos[kubernetes]'") from None
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_kube_config(config_file=kubeconfig or None, context=context or None,
                                               client_configuration=configuration, persist_config=False)
        else:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError) as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ClusterUnavailable(f"cannot load the Kubernetes configuration ({where}"
                                 f"{', context ' + context if context else ''}): {error}") from None
    # Each followed workload holds a connection (its pod's log, followed) and the shared watch three: beyond the
    # client's default pool (5 per CPU) every further request opens a connection and drops it with a warning.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, POOL_SIZE)
    # urllib3 tries a request that timed out again (a GET, a DELETE): each try as long again, the scheduler's tick
    # waiting on all of them. One try; the scheduler tries again at its next round.
    configuration.retries = False
    return configuration


def api_client(config):
    """This process's kubernetes.client.ApiClient for `config` (kaos_backend.config.Config: kubeconfig,
    kube_context), made on first use (a forked child makes its own). Raises ClusterUnavailable."""
    key = (os.getpid(), config.kubeconfig, config.kube_context, os.environ.get("KUBECONFIG", ""))
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _bounded_client_class()(_configuration(config.kubeconfig, config.kube_context))
        return found


def _bounded_client_class():
    """kubernetes.client.ApiClient whose requests without a `_request_timeout` get REQUEST_TIMEOUT, each tracked
    while in flight when the scheduler's tick makes it (engine_requests)."""
    import kubernetes.client

    class BoundedApiClient(kubernetes.client.ApiClient):
        def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
            timeout = _request_timeout or REQUEST_TIMEOUT
            with tracked(f"{method} {urlsplit(url).path}", bound_of(timeout)):
                return super().call_api(method, url, header_params, body, post_params, _request_timeout=timeout)
    return BoundedApiClient


def api_server_problem(config) -> Optional[str]:
    """None when the API server of `config`'s cluster answers `GET /version` (any answer, an error status
    included: it is there; the body is not read); else where it was asked and what the connection met, in one
    line (or why no configuration loads). One try, at most PROBE_TIMEOUT seconds (the probe's own client: no
    retries). Never raises."""
    key = (os.getpid(), config.kubeconfig, config.kube_context, os.environ.get("KUBECONFIG", ""))
    try:
        with _lock:
            probe = _probes.get(key)
            if probe is None:
                import kubernetes.client
                configuration = _configuration(config.kubeconfig, config.kube_context)
                configuration.retries = False  # urllib3: a refused connection is an answer, not tried 3 times more
                probe = _probes[key] = kubernetes.client.VersionApi(kubernetes.client.ApiClient(configuration))
    except ClusterUnavailable as error:
        return str(error)
    host = probe.api_client.configuration.host
    try:
        probe.get_code(_request_timeout=PROBE_TIMEOUT, _preload_content=False).release_conn()  # not read: any
    except Exception as error:  # noqa: BLE001 - whatever the connection met is the answer
        said = as_cluster_error(error, host, "to answer GET /version")
        if isinstance(said, ClusterRefused):
            return None
        return f"at {host}: {_connection_text(error)}"
    return None


def apis(config):
    """(CoreV1Api, BatchV1Api, AppsV1Api) on `config`'s cluster."""
    import kubernetes.client
    client = api_client(config)
    return kubernetes.client.CoreV1Api(client), kubernetes.client.BatchV1Api(client), \
        kubernetes.client.AppsV1Api(client)


def api_exception():
    """The client's ApiException (status, reason, body)."""
    from kubernetes.client.exceptions import ApiException
    return ApiException


def is_status(error: BaseException, *statuses: int) -> bool:
    """`error` is an ApiException with one of `statuses` (404: gone, 409: exists, 410: expired...)."""
    return isinstance(error, api_exception()) and error.status in statuses


def as_cluster_error(error: BaseException, host: str, what: str):
    """ClusterUnavailable or ClusterRefused, in one line, for what a request about `what` ("to create the Job x in
    the namespace y") raised: a connection that failed (urllib3's MaxRetryError and its kind: the API server at
    `host` down, refusing, timing out, a TLS failure) or an ApiException; None for anything else."""
    import urllib3.exceptions
    if isinstance(error, api_exception()):
        answer = " ".join(str(part) for part in (error.status, error.reason) if part)
        return ClusterRefused(f"the Kubernetes API refused {what}: {answer}: {message_of(error)}")
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    if not isinstance(error, (urllib3.exceptions.HTTPError, OSError)):
        return None
    return ClusterUnavailable(f"the Kubernetes API server at {host} cannot be reached ({what}): "
                              f"{_connection_text(error)}")


def _connection_text(error: BaseException) -> str:
    """What a failed connection met, in one line of at most 300 characters, without urllib3's connection object."""
    import urllib3.exceptions
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "): " in text and text.startswith(("HTTPConnection(", "HTTPSConnection(", "<urllib3")):
        text = text.split("): ", 1)[1]   # urllib3 names the connection object first: the host says it already
    return text[:300]


def message_of(error: BaseException) -> str:
    """The API server's message of an ApiException (its Status), else the error's text; one line."""
    import json
    body = getattr(error, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body).splitlines()[0][:500]
        except (ValueError, AttributeError):
            pass
    text = str(getattr(error, "reason", "") or error) or type(error).__name__
    return text.splitlines()[0][:500]


def response_lines(response, chunk: int = 64 * 1024):
    """The lines of a streamed response (`_preload_content=False`: a urllib3 response), as bytes without their
    newline; blank lines between watch events are skipped, a pod log's are kept."""
    pending = b""
    for data in response.stream(chunk, decode_content=True):
        pending += data
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line
    if pending:
        yield pending
