"""`create_app()`: the Flask application — blueprints under /api, X-Token auth, JSON errors; the internal artifact
routes (api/artifacts.py) beside /api, authorised by a workload's artifact token instead. Nothing else: the
serving gateway (`/serve-<ws>-<hex6>/...`) is the front door's (kaos_backend.front), in front of gunicorn."""
import hmac
import logging
import re

from flask import Flask, request
from kaos_model.wire import Error
from werkzeug.exceptions import HTTPException

from kaos_backend.api import artifacts, blueprints, respond
from kaos_backend.api.converters import OtherThan
from kaos_backend.config import Config
from kaos_backend.errors import AuthorizationError, KaosApiError
from kaos_backend.services import Services

log = logging.getLogger("kaos_backend.app")

MULTIPART_SLACK = 1024 * 1024  # multipart framing around the `data` part; the part itself is limited exactly
REPEATED_SLASHES = re.compile("/{2,}")
HTTP_ERROR_CODES = {400: "BAD_REQUEST", 401: "AUTHORIZATION_FAILURE", 404: "NOT_FOUND", 405: "BAD_REQUEST",
                    413: "PAYLOAD_TOO_LARGE"}


class KaosFlask(Flask):
    """Flask whose automatic answer to OPTIONS is JSON, as every answer of the API: 200 with the route's methods
    in the `Allow` header and as `{"allow": ["GET", "HEAD", "OPTIONS"]}` (sorted)."""

    def make_default_options_response(self):
        methods = sorted(super().make_default_options_response().allow)
        response = respond({"allow": methods})
        response.allow.update(methods)
        return response


def create_app(config: Config = None, services: Services = None) -> Flask:
    config = config or Config.from_env()
    app = KaosFlask("kaos_backend")
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes + MULTIPART_SLACK
    app.json.sort_keys = False  # a hyperparameter grid keeps the key order of its file
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # werkzeug's merging redirects: collapse_slashes routes them instead
    app.wsgi_app = collapse_slashes(app.wsgi_app)
    app.extensions["kaos"] = services or Services(config)
    app.url_map.converters["other_than"] = OtherThan
    for blueprint in blueprints():
        app.register_blueprint(blueprint, url_prefix="/api")
    app.register_blueprint(artifacts.bp)  # /internal/artifacts/: a workload's own token, not the X-Token
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
        response = respond(Error(code, _http_message(error, config)).to_dict(), error.code)
        if error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("Unexpected error on %s %s", request.method, request.path)
        return respond(Error("INTERNAL_ERROR",
                             "Internal error of the kaos backend: see the backend log for details").to_dict(), 500)

    return app


def collapse_slashes(wsgi_app):
    """WSGI middleware: a path with repeated slashes is routed as if each run were one (`/api//workspace` as
    `/api/workspace`). A 1.x client joins paths to its endpoint URL `http://host/api/` with another slash; a
    redirect would not do, as 1.x clients stream their uploads and a client does not resend a body."""
    def app(environ, start_response):
        path = environ.get("PATH_INFO") or ""
        if "//" in path:
            environ["PATH_INFO"] = REPEATED_SLASHES.sub("/", path)
        return wsgi_app(environ, start_response)
    return app


def _http_message(error: HTTPException, config: Config) -> str:
    if error.code == 404:
        return f"Not found: {request.method} {request.path}"
    if error.code == 405:
        return f"Method {request.method} is not allowed on {request.path}"
    if error.code == 413:
        return f"Upload is larger than the limit of {config.max_upload_mb} MB"
    return error.description or error.name
