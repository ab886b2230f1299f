"""What the front answers for the API while the API is not up (the supervisor's status file says so)."""
import json
import os
from typing import Callable, Optional

from kaos_backend.front.heads import json_response


def api_health(run_dir: str, token: Optional[str]) -> Callable[[bytes, list], Optional[bytes]]:
    """`api_down(target, headers)` for `Front`: while the supervisor's status file (in its runtime directory
    `run_dir`, kaos_backend.part_status) says the API is not up, a request for /api/health is answered here,
    503 PLATFORM_UNHEALTHY naming the API (401 without the right X-Token, as the API would); every other
    request is relayed (and waits a little for the API)."""
    import hmac
    from pathlib import Path

    from kaos_backend import __version__
    from kaos_backend.part_status import describe, evaluate

    executor = os.environ.get("KAOS_EXECUTOR", "").strip().lower() or "local"
    run_dir = Path(run_dir)
    expected = (token or "").encode("utf-8", "surrogateescape")

    def api_down(target: bytes, headers) -> Optional[bytes]:
        if target.split(b"?", 1)[0].rstrip(b"/") != b"/api/health":
            return None
        verdict = evaluate(run_dir)
        api = verdict.parts.get("api") or {"state": "down"}
        if api.get("state") == "up":
            return None
        given = next((value for name, _, value in headers if name == b"x-token"), None)
        if given is None or not expected or not hmac.compare_digest(given, expected):
            message = "Authorization header not present in the request" if given is None else "Unauthorized Token"
            return json_response(401, "AUTHORIZATION_FAILURE", message)
        body = json.dumps({"error_code": "PLATFORM_UNHEALTHY", "message": describe("api", api), "part": "api",
                           "status": "degraded", "version": __version__, "executor": executor,
                           "parts": verdict.parts}).encode()
        return (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
    return api_down
