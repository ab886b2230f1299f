from flask import Blueprint

from kaos_backend.api import respond
from kaos_backend.openapi import openapi_description

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def description():
    """The OpenAPI 3.1 description of this API. Public (no X-Token): generated clients and API tools read it
    before they have a token, and it says nothing the open-source docs do not."""
    return respond(openapi_description())


description.public = True  # app.py's authentication lets it through
