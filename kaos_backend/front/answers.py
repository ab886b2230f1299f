"""The gateway's own answers about upstreams (docs/rest-api.md): an unknown workload 404 PIPELINE_NOT_FOUND, one
not accepting connections 503 ENDPOINT_UNAVAILABLE, one that breaks off 502 ENDPOINT_ERROR, one too slow to
answer 504 ENDPOINT_TIMEOUT; the API's equivalents."""
from typing import Optional

from kaos_backend.front.heads import json_response


def not_found(name: str) -> bytes:
    return json_response(404, "PIPELINE_NOT_FOUND", f"Pipeline {name} not found")


def _logs_command(name: str) -> str:
    return f"kaos notebook logs -n {name}" if name.startswith("notebook-") else f"kaos serve logs -e {name}"


def unavailable(name: str, state: str) -> bytes:
    what = "Notebook" if name.startswith("notebook-") else "Endpoint"
    return json_response(503, "ENDPOINT_UNAVAILABLE",
                         f"{what} {name} is not accepting connections ({state}): see {_logs_command(name)}")


def lookup_failed(name: str) -> bytes:
    return json_response(503, "ENDPOINT_UNAVAILABLE", f"Endpoint {name} cannot be looked up: see the backend log")


def endpoint_error(name: str, reason: str, state: Optional[str] = None) -> bytes:
    now = f"; it is now {state}" if state else ""
    return json_response(502, "ENDPOINT_ERROR",
                         f"Endpoint {name} broke off the request ({reason}{now}): see kaos serve logs -e {name}")


def endpoint_timeout(name: str, seconds: float) -> bytes:
    return json_response(504, "ENDPOINT_TIMEOUT",
                         f"Endpoint {name} did not answer within {seconds:g} s: see kaos serve logs -e {name}")


def api_unhealthy() -> bytes:
    return json_response(503, "PLATFORM_UNHEALTHY", "The kaos backend's api is not answering")


def api_error(reason: str) -> bytes:
    return json_response(502, "INTERNAL_ERROR", f"The kaos API server broke off the request ({reason}): see the "
                                                f"backend log")


def api_timeout(seconds: float) -> bytes:
    return json_response(504, "GATEWAY_TIMEOUT", f"The kaos API server did not answer within {seconds:g} s")
