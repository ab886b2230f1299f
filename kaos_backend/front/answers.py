"""The gateway's own answers about upstreams (docs/rest-api.md): an unknown workload 404 PIPELINE_NOT_FOUND, one
not accepting connections 503 ENDPOINT_UNAVAILABLE, one that breaks off 502 ENDPOINT_ERROR, one too slow to
answer 504 ENDPOINT_TIMEOUT; the API's equivalents."""
from typing import Optional

from kaos_backend.front.heads import json_response


def not_found(name: str) -> bytes:
    return json_response(404, "PIPELINE_NOT_FOUND", f"Pipeline {name} not found")


def logs_command(name: str, build_job_id: Optional[str] = None) -> str:
    """The command that shows why the workload `name` does not answer: its build's log while it waits for its image
    (or that build failed), else its own log."""
    group = "notebook" if name.startswith("notebook-") else "serve"
    if build_job_id:
        return f"kaos {group} build-logs -j {build_job_id}"
    return f"kaos notebook logs -n {name}" if group == "notebook" else f"kaos serve logs -e {name}"


def unavailable(name: str, state: str, build_job_id: Optional[str] = None) -> bytes:
    """503: the workload is not accepting connections; `build_job_id` while it waits for that build (Address)."""
    what = "Notebook" if name.startswith("notebook-") else "Endpoint"
    return json_response(503, "ENDPOINT_UNAVAILABLE", f"{what} {name} is not accepting connections ({state}): see "
                                                      f"{logs_command(name, build_job_id)}")


def unavailable_at(name: str, address) -> bytes:
    """503 for the workload `name` at the endpoints.Address `address` (one without a build job id too)."""
    return unavailable(name, address[0], address[4] if len(address) > 4 else None)


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
