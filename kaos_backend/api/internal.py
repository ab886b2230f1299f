from flask import Blueprint

from kaos_backend.api import respond, services

bp = Blueprint("internal", __name__)


@bp.delete("/internal/resources")
def delete_resources():
    services().workspaces.delete_all()
    return respond(None)
