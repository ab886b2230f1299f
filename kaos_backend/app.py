"""`create_app()`: the Flask application — blueprints under /api, X-Token auth, JSON errors. Nothing else: the
serving gateway (`/serve-<ws>-<hex6>/...`) is the front door's (kaos_backend.front), in front of gunicorn."""
import hmac
import logging

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from kaos_backend.api import blueprints, respond
from kaos_backend.api.converters import OtherThan
from kaos_backend.config import Config
from kaos_backend.errors import AuthorizationError, KaosApiError
from kaos_backend.services import Services

log = logging.getLogger("kaos_backend.app")

MULTIPART_SLACK = 1024 * 1024  # multipart framing around the `data` part; the part itself is limited exactly
HTTP_ERROR_CODES = {400: "BAD_REQUEST", 401: "AUTHORIZATION_FAILURE", 404: "NOT_FOUND", 405: "BAD_REQUEST",
                    413: "PAYLOAD_TOO_LARGE"}


def create_app(config: Config = None, services: Services = None) -> Flask:
    config = config or Config.from_env()
    app = Flask("kaos_backend")
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes + MULTIPART_SLACK
    app.json.sort_keys = False  # a hyperparameter grid keeps the key order of its file
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.extensions["kaos"] = services or Services(config)
    app.url_map.converters["other_than"] = OtherThan
    for blueprint in blueprints():
        app.register_blueprint(blueprint, url_prefix="/api")
    token = (config.token or "").encode("utf-8", "surrogateescape")

    @app.before_request
    def authenticate():
        if not (request.path == "/api" or request.path.startswith("/api/")):
            return None
        if getattr(app.view_functions.get(request.endpoint), "public", False):
            return None  # the API's description (api/openapi.py)
        given = request.headers.get("X-Token")
        if given is None:
            raise AuthorizationError("Authorization header not present in the request")
        if not token or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token):
            raise AuthorizationError("Unauthorized Token")
        return None

    @app.errorhandler(KaosApiError)
    def api_error(error: KaosApiError):
        return respond(error.to_dict(), error.status)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error  # redirects and the like are not errors
        code = HTTP_ERROR_CODES.get(error.code, "BAD_REQUEST" if error.code < 500 else "INTERNAL_ERROR")
        response = respond({"error_code": code, "message": _http_message(error, config)}, error.code)
        if error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("Unexpected error on %s %s", request.method, request.path)
        return respond({"error_code": "INTERNAL_ERROR",
                        "message": "Internal error of the kaos backend: see the backend log for details"}, 500)

    return app


def _http_message(error: HTTPException, config: Config) -> str:
    if error.code == 404:
        return f"Not found: {request.method} {request.path}"
    if error.code == 405:
        return f"Method {request.method} is not allowed on {request.path}"
    if error.code == 413:
        return f"Upload is larger than the limit of {config.max_upload_mb} MB"
    return error.description or error.name
