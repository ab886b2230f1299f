from flask import Blueprint

from kaos_backend.api import respond, services

bp = Blueprint("blobs", __name__)


@bp.get("/blobs/<digest>")
def blob_info(digest):
    return respond(services().blobs.info(digest))
