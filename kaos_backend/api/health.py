from flask import Blueprint, current_app
from kaos_model.wire import HealthInfo

from kaos_backend import __version__
from kaos_backend.api import respond, services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """200 `{"status": "ok", "version", "executor", "parts": {...}}` when every part is up; else 503 with
    `error_code` PLATFORM_UNHEALTHY, a `message` naming the part and `status` "degraded". Without a supervisor
    (the app alone) `parts` is empty."""
    body = HealthInfo(status="ok", version=__version__, executor=services().config.executor).to_dict()
    evaluate = current_app.extensions.get("kaos_parts")
    if evaluate is None:
        return respond(body)
    verdict = evaluate()
    body["parts"] = verdict.parts
    if verdict.healthy:
        return respond(body)
    body["status"] = "degraded"
    return respond({"error_code": "PLATFORM_UNHEALTHY", "message": verdict.message, "part": verdict.part, **body},
                   503)
