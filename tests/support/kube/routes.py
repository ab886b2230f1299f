"""The REST routes of the fake API server, as a WSGI application (werkzeug): the URL space of the Kubernetes API
for the resources of kinds.py, answered from the store.

    GET    /api/v1/<plural>                              list (all namespaces), or watch with ?watch=true
    GET    /api/v1/namespaces/<ns>/<plural>              list / watch in a namespace
    POST   /api/v1/namespaces/<ns>/<plural>              create
    DELETE /api/v1/namespaces/<ns>/<plural>              delete collection (labelSelector, fieldSelector)
    GET    /api/v1/namespaces/<ns>/<plural>/<name>       read          (and .../status)
    PUT    /api/v1/namespaces/<ns>/<plural>/<name>       replace       (and .../status)
    PATCH  /api/v1/namespaces/<ns>/<plural>/<name>       patch: JSON, merge, strategic merge (and .../status)
    DELETE /api/v1/namespaces/<ns>/<plural>/<name>       delete (propagationPolicy, gracePeriodSeconds, preconditions)
    GET    /api/v1/namespaces/<ns>/pods/<name>/log       a container's log (container, follow, tailLines,
                                                         previous, timestamps, sinceSeconds, sinceTime, limitBytes)
    /apis/<group>/<version>/...                          the same for batch/v1, apps/v1, coordination.k8s.io/v1,
                                                         rbac.authorization.k8s.io/v1, networking.k8s.io/v1
    GET    /version, /api, /apis, /api/v1, /apis/<group>/<version>    discovery

Errors are `Status` objects with the real server's codes, reasons and messages. `dryRun` is refused (400).
"""
import base64
import collections
import json
import logging
from typing import Callable, Optional

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from . import kinds, selectors, watching
from .errors import ApiError, bad_request, not_found
from .store import Store

TRUE = ("true", "1")
log = logging.getLogger("kubefake")


def _integer(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name}: not an integer: {value!r}")


def _json(body, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class Routes:
    """`logs(namespace, pod, params)` gives a pod log's chunks (bytes) or raises ApiError (podlogs.py)."""

    def __init__(self, store: Store, logs: Callable, bookmark_interval: float = 1.0, errors: list = None):
        self.store = store
        self.errors = [] if errors is None else errors   # what failed inside the fake (FakeCluster.errors)
        self.logs = logs
        self.bookmark_interval = bookmark_interval
        self.requests = 0  # how many requests were answered: what a test or a benchmark counts API calls with
        self.history = collections.deque(maxlen=10_000)   # (method, path, query string) of the latest requests

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.requests += 1
        self.history.append((request.method, request.path, request.query_string.decode()))
        try:
            response = self.dispatch(request)
        except ApiError as error:
            response = _json(error.status(), error.code)
        except (HTTPException, json.JSONDecodeError) as error:  # a body that is not JSON
            response = _json(bad_request(f"the body of the request is not JSON: {error}").status(), 400)
        except Exception as error:  # a bug of the fake: a 500 as the real server would give, and said in errors
            log.exception("kubefake: %s %s failed", request.method, request.path)
            self.errors.append(f"{request.method} {request.path}: {error!r}")
            response = _json(ApiError(500, "InternalError", f"an error on the server: {error!r}").status(), 500)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        parts = [part for part in request.path.split("/") if part]
        if request.args.get("dryRun"):
            raise bad_request("dryRun is not supported by the fake API server")
        if parts == ["version"]:
            return _json({"major": "1", "minor": "33", "gitVersion": "v1.33.0-kubefake", "platform": "linux/amd64"})
        if parts[:1] == ["api"] and len(parts) <= 2 or parts[:1] == ["apis"] and len(parts) <= 3:
            return _json(self.discovery(parts))
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) > 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, plural, tail = rest[1], rest[2], rest[3:]
        else:
            namespace, plural, tail = None, rest[0], rest[1:]
        resource = kinds.by_url(group, version, plural)
        if resource is None or len(tail) > 2 or (namespace is not None and not resource.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not tail:
            return self.collection(request, resource, namespace)
        return self.member(request, resource, namespace, tail[0], tail[1] if len(tail) > 1 else "")

    def discovery(self, parts) -> dict:
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"]}
        groups = sorted({(r.group, r.version) for r in kinds.RESOURCES if r.group})
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in groups]}
        group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2] if len(parts) > 2 else "")
        found = [r for r in kinds.RESOURCES if (r.group, r.version) == (group, version)]
        if not found:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": found[0].api_version,
                "resources": [{"name": r.plural, "kind": r.kind, "namespaced": r.namespaced, "singularName": "",
                               "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                                         "watch"]} for r in found]}

    # -- collections -----------------------------------------------------------------------------------------
    def collection(self, request: Request, resource, namespace: Optional[str]) -> Response:
        if request.method == "POST":
            if namespace is None and resource.namespaced:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                               "resource")
            return _json(self.store.create(resource, namespace, request.get_json(force=True)), 201)
        match = self.matcher(request)
        if request.method == "DELETE":
            items, _ = self.store.list(resource, namespace, match)
            for obj in items:
                self.delete(request, resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            return _json({"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": {},
                          "items": items})
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if request.args.get("watch", "").lower() in TRUE:
            timeout = request.args.get("timeoutSeconds")
            events = watching.watch(self.store, resource, namespace, match, request.args.get("resourceVersion"),
                                    _integer(timeout, "timeoutSeconds") if timeout else None,
                                    request.args.get("allowWatchBookmarks", "").lower() in TRUE,
                                    self.bookmark_interval)
            return Response((json.dumps(event).encode() + b"\n" for event in events), mimetype="application/json",
                            direct_passthrough=True)
        return _json(self.list(request, resource, namespace, match))

    def matcher(self, request: Request):
        labels = selectors.label_matcher(request.args.get("labelSelector"))
        fields = selectors.field_matcher(request.args.get("fieldSelector"))
        return lambda obj: labels(obj) and fields(obj)

    def list(self, request: Request, resource, namespace, match) -> dict:
        items, rv = self.store.list(resource, namespace, match)
        metadata = {"resourceVersion": str(rv)}
        token = request.args.get("continue")
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()))
                rv = after["rv"]
                start = [(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in items].index(
                    tuple(after["after"])) + 1 if after["after"] else 0
            except (ValueError, KeyError, TypeError):
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without the continue parameter.")
            items, metadata["resourceVersion"] = items[start:], str(rv)
        limit = _integer(request.args.get("limit") or 0, "limit")
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"rv": int(metadata["resourceVersion"]), "after": [last.get("namespace", ""), last["name"]]}
            ).encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": metadata,
                "items": items}

    # -- members ---------------------------------------------------------------------------------------------
    def member(self, request: Request, resource, namespace, name: str, sub: str) -> Response:
        if sub not in ("", "status", "log") or (sub == "log" and resource != kinds.PODS):
            raise not_found(resource.describe(), name)
        if sub == "log":
            if request.method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                               "resource")
            chunks = self.logs(namespace, name, request.args)
            return Response(chunks, mimetype="text/plain", direct_passthrough=True)
        if request.method == "GET":
            return _json(self.store.get(resource, namespace, name))
        if request.method == "PUT":
            return _json(self.store.replace(resource, namespace, name, request.get_json(force=True), sub))
        if request.method == "PATCH":
            return _json(self.store.patch(resource, namespace, name, request.get_json(force=True),
                                          request.content_type, sub))
        if request.method == "DELETE" and not sub:
            obj, gone = self.delete(request, resource, namespace, name)
            if gone and resource != kinds.PODS:
                return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": {"name": name, "group": resource.group, "kind": resource.plural,
                                          "uid": obj["metadata"]["uid"]}})
            return _json(obj, 200 if gone else 202)  # 202: accepted, gone once graceful/finalizers/dependents end
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def delete(self, request: Request, resource, namespace, name):
        options = {}
        if request.get_data():
            options = request.get_json(force=True) or {}
        policy = options.get("propagationPolicy") or request.args.get("propagationPolicy")
        if options.get("orphanDependents") is not None and not policy:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        grace = options.get("gracePeriodSeconds", request.args.get("gracePeriodSeconds"))
        grace = None if grace is None else _integer(grace, "gracePeriodSeconds")
        return self.store.delete(resource, namespace, name, policy, grace, options.get("preconditions"))
