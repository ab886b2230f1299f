from pathlib import Path
from typing import Optional

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
    config = services().config
    body = HealthInfo(status="ok", version=__version__, executor=config.executor).to_dict()
    evaluate = current_app.extensions.get("kaos_parts")
    if evaluate is not None:
        verdict = evaluate()
        body["parts"] = verdict.parts
        if not verdict.healthy:
            return _unhealthy(body, verdict.part, verdict.message)
    lost = missing_storage(config.data_dir, config.database_url)
    if lost:
        return _unhealthy(body, "storage", f"The kaos backend's {lost} is gone (removed while the backend ran): "
                                           "what it records now is lost at its next start; restart the backend")
    return respond(body)


def missing_storage(data_dir: Path, database_url: str) -> Optional[str]:
    """What of the backend's storage no longer exists: its data directory, or its SQLite database file (a file
    removed while open keeps answering, from an unlinked inode); None when both are there."""
    if not data_dir.is_dir():
        return f"data directory {data_dir}"
    if database_url.startswith("sqlite:///"):
        database = Path(database_url[len("sqlite:///"):].split("?", 1)[0])
        if str(database) not in ("", ":memory:") and not database.exists():
            return f"database {database}"
    return None


def _unhealthy(body: dict, part: str, message: str):
    body["status"] = "degraded"
    return respond({"error_code": "PLATFORM_UNHEALTHY", "message": message, "part": part, **body}, 503)
