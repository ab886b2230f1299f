"""Checking real HTTP exchanges against the API's OpenAPI description (kaos_backend/openapi.yaml).

The published description leaves objects open (clients ignore fields they do not know); `closed()` makes every
described object refuse undescribed fields, so that a check here fails on anything the description does not say:
a route, a method, a status, a field or a type. `ContractSession` is a requests session that checks every
request it sends and every answer it gets, and remembers which operations it exercised."""
import copy
import json
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from kaos_backend.openapi import openapi_description

COMPOSITIONS = ("allOf", "oneOf", "anyOf")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def closed(description: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of `description` where every object schema in a value position (a body, a property, an array item,
    a map value) that names its fields gets `unevaluatedProperties: false`. The branches of allOf/oneOf are left
    open: the keyword at the composition sees the fields that any matching branch described."""
    description = copy.deepcopy(description)

    def close(schema: Any, value_position: bool) -> None:
        if isinstance(schema, list):
            for item in schema:
                close(item, value_position)
            return
        if not isinstance(schema, dict):
            return
        describes_fields = "properties" in schema or "$ref" in schema or any(k in schema for k in COMPOSITIONS)
        if value_position and describes_fields and "additionalProperties" not in schema \
                and "unevaluatedProperties" not in schema:
            schema["unevaluatedProperties"] = False
        for name in schema.get("properties", {}).values():
            close(name, True)
        for key in ("items", "additionalProperties"):
            close(schema.get(key), True)
        for key in COMPOSITIONS:
            close(schema.get(key), False)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "schema":
                    close(value, True)
                elif key == "schemas":  # components: named schemas are closed where they are used
                    for schema in value.values():
                        close(schema, False)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(description)
    return description


def operations(description: Dict[str, Any]) -> Set[Tuple[str, str]]:
    """Every (METHOD, path template) the description has."""
    return {(method.upper(), path) for path, item in description["paths"].items() for method in item
            if method in METHODS}


class ContractViolation(AssertionError):
    pass


class ContractSession(requests.Session):
    """A session on `api_url` (`http://host:port/api/`) with the X-Token set, that checks every exchange against
    the closed description (ContractViolation names the request, the answer and what is wrong)."""

    def __init__(self, api_url: str, token: Optional[str], description: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.api_url = api_url
        if token is not None:
            self.headers["X-Token"] = token
        self.openapi = OpenAPI.from_dict(closed(description or openapi_description()))
        self.exercised: Set[Tuple[str, str]] = set()
        self.statuses: Set[Tuple[str, str, int]] = set()

    def call(self, method: str, path: str, expect: Optional[int] = None, outside: bool = False,
             **kwargs) -> requests.Response:
        """`method` on `api_url + path`, checked; `expect` also checks the status. `outside=True` for a request
        made on purpose outside the description (no token, a parameter out of its range): it must not match,
        and the answer must still be one the operation describes."""
        kwargs.setdefault("timeout", 120)
        response = self.request(method, self.api_url + path.lstrip("/"), **kwargs)
        self.check(response, outside)
        if expect is not None and response.status_code != expect:
            raise ContractViolation(f"{method} {path}: expected {expect}, got {response.status_code}: "
                                    f"{response.text[:500]}")
        return response

    def check(self, response: requests.Response, outside: bool = False) -> None:
        request = RequestsOpenAPIRequest(response.request)
        where = f"{response.request.method} {response.request.url} -> {response.status_code} {response.text[:300]!r}"
        try:
            self.openapi.validate_request(request)
        except Exception as error:
            if not outside:
                raise ContractViolation(f"request not as described: {where}: {_explain(error)}") from None
        else:
            if outside:
                raise ContractViolation(f"request meant to be outside the description matches it: {where}")
        try:
            self.openapi.validate_response(request, RequestsOpenAPIResponse(response))
        except Exception as error:
            raise ContractViolation(f"response not as described: {where}: {_explain(error)}") from None
        template = self._template(request)
        self.exercised.add((response.request.method.upper(), template))
        self.statuses.add((response.request.method.upper(), template, response.status_code))

    def _template(self, request: RequestsOpenAPIRequest) -> str:
        from urllib.parse import urljoin

        from openapi_core.templating.paths.finders import APICallPathFinder
        found = APICallPathFinder(self.openapi.spec).find(request.method, urljoin(request.host_url, request.path))
        return found.path_result.pattern


def _explain(error: Exception) -> str:
    parts: List[str] = [f"{type(error).__name__}: {error}"]
    cause = error.__cause__ or error.__context__
    while cause is not None and len(parts) < 6:
        details = getattr(cause, "schema_errors", None) or ()
        parts.append(f"{type(cause).__name__}: {cause}" + "".join(f"\n    - {detail.message} at "
                                                                  f"{list(detail.absolute_path)}"
                                                                  for detail in details))
        cause = cause.__cause__ or cause.__context__
    return "\n  ".join(parts)


def error_body(response: requests.Response) -> Dict[str, str]:
    """The `{"error_code", "message"}` of an answer outside every described operation (unknown route, wrong
    method), checked against the description's Error schema, as JSON."""
    import jsonschema

    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    body = json.loads(response.text)
    schema = openapi_description()["components"]["schemas"]["Error"]
    jsonschema.validate(body, {**schema, "unevaluatedProperties": False})
    return body


def undescribed(exchanged: Iterable[Tuple[str, str]], description: Dict[str, Any]) -> Set[Tuple[str, str]]:
    return operations(description) - set(exchanged)
