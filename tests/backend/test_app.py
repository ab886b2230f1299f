"""The Flask application through its test client: auth, JSON errors, request parsing."""
import io
import logging

import pytest

from kaos_backend.app import create_app
from kaos_backend.config import Config
from tests.backend.helpers import features_zip

TOKEN = "app-token"


@pytest.fixture
def app(tmp_path):
    config = Config.from_env({}, data_dir=tmp_path / "data", token=TOKEN, max_upload_mb=1)
    app = create_app(config)

    @app.get("/api/test-boom")
    def boom():
        raise RuntimeError("secret detail of a bug")

    yield app
    app.extensions["kaos"].dispose()


@pytest.fixture
def client(app):
    client = app.test_client()
    client.environ_base["HTTP_X_TOKEN"] = TOKEN
    return client


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == code
    return body["message"]


def test_health(client):
    response = client.get("/api/health")
    assert response.get_json() == {"status": "ok", "version": "2.0.0.dev0", "executor": "local", "parts": {}}


@pytest.mark.parametrize("remove", ["database", "data directory"])
def test_health_says_when_the_storage_was_removed_under_it(client, tmp_path, remove):
    """Found by a newcomer: `rm -rf` of the data directory left health "ok" while writes went to an unlinked
    SQLite file, lost at the next start."""
    import shutil
    if remove == "database":
        (tmp_path / "data" / "kaos.db").unlink()
    else:
        shutil.rmtree(tmp_path / "data")
    response = client.get("/api/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["error_code"] == "PLATFORM_UNHEALTHY" and body["part"] == "storage" and body["status"] == "degraded"
    assert body["message"].startswith(f"The kaos backend's {remove} ") and "restart the backend" in body["message"]


def test_auth(app):
    client = app.test_client()
    message = assert_error(client.get("/api/health"), 401, "AUTHORIZATION_FAILURE")
    assert message == "Authorization header not present in the request"
    for wrong in ("", "wrong", TOKEN + "x", "ünïcode"):
        message = assert_error(client.get("/api/workspace", headers={"X-Token": wrong}), 401,
                               "AUTHORIZATION_FAILURE")
        assert message == "Unauthorized Token"
    # unknown /api routes are not revealed without a token
    assert_error(client.get("/api/no-such-route"), 401, "AUTHORIZATION_FAILURE")


def test_without_a_configured_token_nothing_is_allowed(tmp_path):
    app = create_app(Config.from_env({}, data_dir=tmp_path / "d"))
    assert_error(app.test_client().get("/api/health", headers={"X-Token": ""}), 401, "AUTHORIZATION_FAILURE")
    app.extensions["kaos"].dispose()


def test_unknown_route_and_method(client):
    assert assert_error(client.get("/api/no-such-route"), 404, "NOT_FOUND") == "Not found: GET /api/no-such-route"
    assert_error(client.get("/elsewhere"), 404, "NOT_FOUND")
    response = client.put("/api/workspace")
    assert assert_error(response, 405, "BAD_REQUEST") == "Method PUT is not allowed on /api/workspace"
    assert "GET" in response.headers["Allow"]


def test_options_answers_the_methods_as_json(app, client):
    """OPTIONS was Flask's empty text/html answer: it is JSON like every answer, the methods in `Allow` and in the
    body, and it runs no view (the workspace is not created)."""
    for path, methods in (("/api/workspace", ["GET", "HEAD", "OPTIONS"]),
                          ("/api/workspace/mnist", ["DELETE", "GET", "HEAD", "OPTIONS", "POST"])):
        response = client.open(path, method="OPTIONS")
        assert (response.status_code, response.mimetype) == (200, "application/json"), path
        assert response.get_json() == {"allow": methods}
        assert sorted(response.headers["Allow"].split(", ")) == methods
    assert client.get("/api/workspace").get_json() == {"names": []}
    message = assert_error(client.open("/api/no-such-route", method="OPTIONS"), 404, "NOT_FOUND")
    assert message == "Not found: OPTIONS /api/no-such-route"
    assert_error(app.test_client().open("/api/workspace", method="OPTIONS"), 401, "AUTHORIZATION_FAILURE")


def test_trailing_and_repeated_slashes_are_routed_without_redirects(client):
    """A 1.x client joins `/workspace` to its endpoint `http://host/api/`: `/api//workspace` is routed, not
    redirected (a 1.x client streams its uploads, and a redirect would lose the body)."""
    assert client.get("/api/workspace/").status_code == 200
    for path in ("/api//workspace", "/api///workspace//"):
        response = client.get(path)
        assert (response.status_code, response.get_json()) == (200, {"names": []}), path
    assert client.post("/api//workspace//mnist").status_code == 201
    assert client.get("/api//workspace").get_json() == {"names": ["mnist"]}
    assert assert_error(client.get("/api//no-such-route"), 404, "NOT_FOUND") == "Not found: GET /api/no-such-route"


def test_unexpected_error_is_json_without_traceback(client, caplog):
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/test-boom")
    message = assert_error(response, 500, "INTERNAL_ERROR")
    assert "secret detail" not in response.get_data(as_text=True) and "backend log" in message
    assert "secret detail of a bug" in caplog.text and "Traceback" in caplog.text


def test_workspace_routes(client):
    assert client.post("/api/workspace/mnist?user=me").status_code == 201
    assert client.get("/api/workspace").get_json() == {"names": ["mnist"]}
    assert client.get("/api/workspace/mnist").get_json()["response"]["name"] == "mnist"
    assert_error(client.post("/api/workspace/mnist"), 409, "WORKSPACE_EXISTS")
    assert_error(client.post("/api/workspace/Bad_Name"), 400, "INVALID_WORKSPACE_NAME")
    response = client.delete("/api/workspace/mnist")
    assert response.status_code == 200 and response.get_json() is None and response.data.strip() == b"null"
    assert_error(client.get("/api/workspace/mnist"), 404, "WORKSPACE_NOT_FOUND")


def test_upload_body_forms(client):
    client.post("/api/workspace/ws")
    raw = client.post("/api/data/ws/features", data=features_zip(), content_type="application/zip")
    multipart = client.post("/api/data/ws/features", data={"data": (io.BytesIO(features_zip()), "f.zip")})
    urlencoded = client.post("/api/data/ws/features", data=features_zip(),
                             content_type="application/x-www-form-urlencoded")
    assert raw.status_code == 200, raw.get_json()
    assert raw.get_json() == multipart.get_json() == urlencoded.get_json()
    assert_error(client.post("/api/data/ws/features", data={"other": (io.BytesIO(b"x"), "f.zip")}), 400,
                 "BAD_REQUEST")
    text_field = client.post("/api/data/ws/params", data={"data": '{"a": [1, 2]}'},
                             content_type="multipart/form-data")
    assert text_field.get_json()["params"] == [{"a": 1}, {"a": 2}]


def test_payload_too_large(client):
    client.post("/api/workspace/ws")
    too_big = b"x" * (3 * 1024 * 1024)
    assert_error(client.post("/api/data/ws/features", data=too_big, content_type="application/zip"), 413,
                 "PAYLOAD_TOO_LARGE")
    assert_error(client.post("/api/data/ws/features", data={"data": (io.BytesIO(too_big), "f.zip")}), 413,
                 "PAYLOAD_TOO_LARGE")
    # just above the limit, inside the multipart slack: the part itself is limited exactly
    assert_error(client.post("/api/data/ws/features", data={"data": (io.BytesIO(b"x" * (1024 * 1024 + 1)), "f")}),
                 413, "PAYLOAD_TOO_LARGE")


def test_resource_errors_are_400(tmp_path):
    config = Config.from_env({}, data_dir=tmp_path / "data", token=TOKEN, max_cpu=1, max_memory=1, max_gpu=0)
    app = create_app(config)
    client = app.test_client()
    client.environ_base["HTTP_X_TOKEN"] = TOKEN
    client.post("/api/workspace/ws")
    for query, code in (("cpu=2", "CPU_REQUEST_ERROR"), ("memory=2Gi", "MEMORY_REQUEST_ERROR"),
                        ("memory=lots", "MEMORY_REQUEST_ERROR"), ("gpu=1", "GPU_REQUEST_ERROR"),
                        ("cpu=0.0001", "CPU_REQUEST_ERROR"), ("memory=1", "MEMORY_REQUEST_ERROR")):
        assert_error(client.post(f"/api/data/ws/features?{query}", data=features_zip()), 400, code)
    assert "Minimum allowed is 6Mi" in assert_error(client.post("/api/data/ws/features?memory=500k",
                                                                data=features_zip()), 400, "MEMORY_REQUEST_ERROR")
    assert client.post("/api/data/ws/features?cpu=0.5&memory=64Mi&gpu=0", data=features_zip()).status_code == 200
    app.extensions["kaos"].dispose()


@pytest.mark.parametrize("route", ["/api/data/ws/features", "/api/data/ws/manifest", "/api/train/ws",
                                   "/api/inference/ws/None", "/api/notebook/ws"])
def test_resources_beyond_any_platform_are_400_whatever_the_configured_maxima(tmp_path, route):
    # no configured maximum (0: no check; KAOS_MAX_CPU 1e6 was nothing either): `cpu=1e308` was taken, and its train
    # job failed in the scheduler with an OverflowError (cgroups' quota of infinite cores)
    config = Config.from_env({}, data_dir=tmp_path / "data", token=TOKEN, max_cpu=1e6, max_memory=0, max_gpu=1000)
    app = create_app(config)
    client = app.test_client()
    client.environ_base["HTTP_X_TOKEN"] = TOKEN
    client.post("/api/workspace/ws")
    for query, code, message in (
            ("cpu=1e308", "CPU_REQUEST_ERROR", "CPU request 1e308 too high. Maximum allowed is 1024."),
            ("cpu=1025", "CPU_REQUEST_ERROR", "CPU request 1025 too high. Maximum allowed is 1024."),
            ("memory=99999999999999999999Gi", "MEMORY_REQUEST_ERROR",
             "Memory request 99999999999999999999Gi too high. Maximum allowed is 1Pi."),
            ("memory=1025Ti", "MEMORY_REQUEST_ERROR", "Memory request 1025Ti too high. Maximum allowed is 1Pi."),
            ("gpu=65", "GPU_REQUEST_ERROR", "GPU request 65 too high. Maximum allowed is 64.")):
        assert assert_error(client.post(f"{route}?{query}", data=features_zip()), 400, code) == message
    app.extensions["kaos"].dispose()
