from flask import Blueprint

from kaos_backend import __version__
from kaos_backend.api import respond, services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    return respond({"status": "ok", "version": __version__, "executor": services().config.executor})
