"""What an SDK script does between requests: wait for a job or an endpoint, and call an endpoint through the
backend's gateway. A mixin of `KaosClient` (kept apart so client.py stays the REST routes)."""
import time
from typing import Any, Callable, Dict, Optional, TypeVar

from kaos_cli.errors import ConnectionProblem, KaosError, RequestError
from kaos_model.states import JobState, PipelineState
from kaos_model.wire import JobRecord, ServeInfo

T = TypeVar("T")
GATEWAY_ERRORS = ("PIPELINE_NOT_FOUND", "ENDPOINT_UNAVAILABLE", "ENDPOINT_ERROR")
INVOKE_TIMEOUT = 300.0


class WaitTimeout(KaosError):
    """`wait_until` (and the waits built on it) gave up: what it waited for did not happen in time."""


def wait_until(predicate: Callable[[], Optional[T]], timeout: float = 600.0, interval: float = 1.0,
               what: str = "the condition") -> T:
    """Call `predicate()` every `interval` seconds until it returns something truthy, and return that.
    Raises WaitTimeout ("Gave up waiting for <what> after <timeout> s") once `timeout` seconds have passed; an
    exception of `predicate` (a KaosError of a request) ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"Gave up waiting for {what} after {timeout:g} s")
        time.sleep(interval)


class Waits:
    """`wait_for_job`, `wait_for_endpoint` and `invoke`; needs `job_state`, `serve_list`, `_request` and `url`."""

    def wait_for_job(self, workspace: str, job_id: str, timeout: float = 600.0, interval: float = 1.0) -> JobRecord:
        """Poll `job_state` until the job (any kind) is terminal (JOB_SUCCESS, JOB_FAILURE or JOB_KILLED) and
        return its JobRecord, whatever the end; the caller checks `.state` (and `.reason`). Raises WaitTimeout
        after `timeout` seconds, RequestError 404 JOB_NOT_FOUND for an unknown id."""
        def ended() -> Optional[JobRecord]:
            record = self.job_state(workspace, job_id)
            return record if record.state in _TERMINAL else None

        return wait_until(ended, timeout, interval, f"job {job_id} to end")

    def wait_for_endpoint(self, workspace: str, endpoint: str, timeout: float = 600.0,
                          interval: float = 1.0) -> ServeInfo:
        """Poll `serve_list` until the endpoint is PIPELINE_RUNNING (ready: it answers) and return its ServeInfo.
        Raises KaosError when it is PIPELINE_FAILURE (with its `reason`) or no longer listed, WaitTimeout after
        `timeout` seconds."""
        def running() -> Optional[ServeInfo]:
            info = next((item for item in self.serve_list(workspace).endpoints if item.name == endpoint), None)
            if info is None:
                raise KaosError(f"Endpoint {endpoint} is not an endpoint of workspace {workspace}")
            if info.state == PipelineState.PIPELINE_FAILURE.value:
                raise KaosError(f"Endpoint {endpoint} failed: {info.reason or 'no reason given'}")
            return info if info.state == PipelineState.PIPELINE_RUNNING.value else None

        return wait_until(running, timeout, interval, f"endpoint {endpoint} to run")

    def invoke(self, endpoint: str, data: Any = None, path: str = "invocations", method: str = "POST",
               headers: Optional[Dict[str, str]] = None, timeout: float = INVOKE_TIMEOUT):
        """Send a request to an endpoint's server through the backend's gateway
        (`<backend>/<endpoint>/<path>`, no token: the gateway is outside `/api/`) and return its
        `requests.Response`, whatever status the endpoint's own code answered. Raises RequestError for the
        gateway's own errors (404 PIPELINE_NOT_FOUND, 503 ENDPOINT_UNAVAILABLE with the endpoint's state, 502
        ENDPOINT_ERROR), ConnectionProblem when the backend is unreachable."""
        import requests

        root = self.url.rstrip("/")
        root = root[: -len("/api")] if root.endswith("/api") else root
        url = f"{root}/{endpoint}/{path.lstrip('/')}"
        try:
            response = requests.request(method, url, data=data, headers=headers, timeout=(10.0, timeout))
        except requests.exceptions.ConnectionError:
            raise ConnectionProblem(f"Please ensure the endpoint is available - {root} is unreachable!",
                                    self.url) from None
        except requests.exceptions.RequestException as exc:
            raise KaosError(f"Request to {url} failed - {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400 and "json" in (response.headers.get("Content-Type") or ""):
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("error_code") in GATEWAY_ERRORS:
                raise RequestError(str(body.get("message") or body["error_code"]), response.status_code,
                                   body["error_code"])
        return response


_TERMINAL = {state.value for state in JobState if state.is_terminal}
