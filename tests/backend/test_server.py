"""The real backend (`python -m kaos_backend serve`, gunicorn, workers, scheduler) over HTTP on 127.0.0.1."""
import hashlib
import os
import re
import uuid
from pathlib import Path

import pytest
import requests

from kaos_backend.app import create_app
from kaos_backend.config import Config
from tests.backend.helpers import features_zip, source_zip, symlink_entry, zip_bytes
from tests.support.backend import BackendProcess

DUMMY = "dummy-value"


def api_routes(tmp_path):
    """(method, path) of every /api route, path variables filled with a dummy."""
    app = create_app(Config.from_env({}, data_dir=tmp_path / "route-walk", token="x"))
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", DUMMY, rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, path, rule.arguments - set(rule.defaults or ())))  # path variables only
    app.extensions["kaos"].dispose()
    assert len(routes) >= 10
    return routes


def call(server, method, path, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["X-Token"] = token
    return requests.request(method, server.root + path, headers=headers, timeout=30, **kwargs)


def api(server, method, path, **kwargs):
    return call(server, method, "/api/" + path, token=server.token, **kwargs)


def assert_error(response, status, code):
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json", response.headers
    assert response.json()["error_code"] == code, response.text
    return response.json()["message"]


def new_name(prefix="ws"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def blob_files(server):
    return sorted(path.name for path in (server.data_dir / "blobs").glob("??/*"))


def test_every_route_needs_the_token(module_backend, tmp_path):
    for method, path, _ in api_routes(tmp_path):
        if path == "/api/openapi.json":
            continue  # the one public route, the API's description (tests/backend/test_openapi.py)
        for token in (None, "wrong-token"):
            response = call(module_backend, method, path, token=token)
            message = assert_error(response, 401, "AUTHORIZATION_FAILURE")
            expected = "Authorization header not present in the request" if token is None else "Unauthorized Token"
            assert message == expected, (method, path)


def test_unknown_workspace_is_404_on_every_workspace_route(module_backend, tmp_path):
    for method, path, arguments in api_routes(tmp_path):
        if "workspace" not in arguments or (method, path) == ("POST", f"/api/workspace/{DUMMY}"):
            continue
        response = call(module_backend, method, path, token=module_backend.token, data=features_zip())
        assert assert_error(response, 404, "WORKSPACE_NOT_FOUND") == f"Workspace {DUMMY} not found", (method, path)


def test_options_on_every_route_is_json_with_allow(module_backend, tmp_path):
    """`curl -X OPTIONS .../api/workspace` through the front door: 200 JSON naming the methods it has."""
    for path in sorted({path for _, path, _ in api_routes(tmp_path)}):
        response = call(module_backend, "OPTIONS", path, token=module_backend.token)
        assert (response.status_code, response.headers["Content-Type"]) == (200, "application/json"), path
        allowed = response.json()["allow"]
        assert set(allowed) == set(response.headers["Allow"].split(", ")) and "OPTIONS" in allowed, path


def test_unknown_route_is_json_404(module_backend):
    assert_error(api(module_backend, "GET", "no/such/route"), 404, "NOT_FOUND")
    assert_error(call(module_backend, "GET", "/not-api"), 404, "NOT_FOUND")
    assert_error(api(module_backend, "PATCH", "workspace"), 405, "BAD_REQUEST")


@pytest.mark.parametrize("raw", ["+1", "%201", "1%20", "%2B1", "01", "1%0A", "%091"])
def test_whole_numbers_in_a_query_string_are_plain_decimal(module_backend, raw):
    """`page_id`, `parallelism` and `gpu` as written in a URL (`+` decodes to a space): each form int() would
    take but plain digits are not is a 400 with its error code, where plain digits go on to the next check."""
    ws = new_name()
    assert api(module_backend, "POST", f"workspace/{ws}").status_code == 201
    job = "0" * 32
    assert_error(api(module_backend, "GET", f"train/{ws}/{job}?page_id={raw}"), 400, "PAGE_ERROR")
    assert_error(api(module_backend, "GET", f"train/{ws}/{job}?page_id=1"), 404, "JOB_NOT_FOUND")
    params = {"data": b'{"a": [1, 2]}'}
    assert_error(api(module_backend, "POST", f"data/{ws}/params?parallelism={raw}", **params), 400, "BAD_REQUEST")
    assert api(module_backend, "POST", f"data/{ws}/params?parallelism=2", **params).status_code == 200
    features = {"data": features_zip()}
    assert_error(api(module_backend, "POST", f"data/{ws}/features?gpu={raw}", **features), 400, "GPU_REQUEST_ERROR")
    assert api(module_backend, "POST", f"data/{ws}/features?gpu=0", **features).status_code == 200


def test_health(module_backend):
    body = module_backend.get("health").json()
    assert {key: body[key] for key in ("status", "version", "executor")} == \
        {"status": "ok", "version": "2.0.0.dev0", "executor": "local"}
    assert {name: part["state"] for name, part in body["parts"].items()} == \
        {"front": "up", "api": "up", "scheduler": "up"}


def test_no_input_gives_a_500_or_html(module_backend):
    ws = new_name()
    assert api(module_backend, "POST", f"workspace/{ws}").status_code == 201
    long_name = "a" * 5000
    attempts = [
        ("POST", "workspace/" + long_name, {}), ("GET", "workspace/" + long_name, {}),
        ("GET", "workspace", {"headers": {"X-Bad": "x" * 9000}}),
        ("POST", "workspace/%00", {}), ("POST", "workspace/%C3%BC", {}), ("POST", "workspace/..", {}),
        ("POST", "workspace/a%2Fb", {}), ("DELETE", "workspace/%20", {}), ("POST", "workspace/UPPER", {}),
        ("GET", "blobs/xyz", {}), ("GET", "blobs/" + "0" * 64, {}), ("GET", "blobs/" + "A" * 64, {}),
        ("GET", "blobs/..%2F..%2Fetc%2Fpasswd", {}),
        ("POST", f"data/{ws}/features", {}), ("POST", f"data/{ws}/features", {"data": b"garbage"}),
        ("POST", f"data/{ws}/features", {"data": b"\0" * 100, "headers": {"Content-Type": "multipart/form-data"}}),
        ("POST", f"data/{ws}/features", {"data": b"--x\r\n", "headers": {
            "Content-Type": "multipart/form-data; boundary=x"}}),
        ("POST", f"data/{ws}/features", {"data": b"{}", "headers": {"Content-Type": "application/json"}}),
        ("POST", f"data/{ws}/features?digest=nothex", {}), ("POST", f"data/{ws}/features?digest=" + "f" * 64, {}),
        ("POST", f"data/{ws}/features?cpu=abc", {"data": features_zip()}),
        ("POST", f"data/{ws}/features?cpu=1e999", {"data": features_zip()}),
        ("POST", f"data/{ws}/features?memory=1e999999999", {"data": features_zip()}),
        ("POST", f"data/{ws}/features?memory=%00", {"data": features_zip()}),
        ("POST", f"data/{ws}/features?gpu=-1", {"data": features_zip()}),
        ("POST", f"data/{ws}/features?gpu=99999999999999999999", {"data": features_zip()}),
        ("POST", f"data/{ws}/features?user=%00%FF..", {"data": zip_bytes({"a/../../x": "1"})}),
        ("POST", f"data/{ws}/manifest", {"data": b"\xff\xfe"}), ("POST", f"data/{ws}/manifest", {"data": b"[]"}),
        ("POST", f"data/{ws}/manifest", {"data": b'{"url": "http://h/a", "path": "../x"}'}),
        ("POST", f"data/{ws}/manifest", {"data": b"[" * 100000}),
        ("POST", f"data/{ws}/params", {"data": b"[" * 100000}), ("POST", f"data/{ws}/params", {"data": b"1e999"}),
        ("POST", f"data/{ws}/params?parallelism=-3", {"data": b"{}"}),
        ("POST", f"data/{ws}/params?parallelism=abc", {"data": b"{}"}),
        ("POST", f"data/{ws}/params", {"data": b'{"a": [' + b"1," * 20000 + b"1]}"}),
        ("POST", f"data/{ws}/notebook", {}), ("POST", f"data/{ws}/notebook", {"data": source_zip()[:50]}),
        ("PUT", f"data/{ws}/features", {}), ("GET", f"data/{ws}/features", {}),
        ("DELETE", "internal/resources/extra", {}), ("POST", "internal/resources", {}),
    ]
    for method, path, kwargs in attempts:
        response = api(module_backend, method, path, **kwargs)
        assert response.status_code < 500, (method, path, response.status_code, response.text)
        assert response.headers["Content-Type"] == "application/json", (method, path, response.headers)
        if response.status_code >= 400:
            assert set(response.json()) == {"error_code", "message"}
    assert "Traceback" not in module_backend.log()


def test_kill_is_exact(module_backend):
    suffix = uuid.uuid4().hex[:6]
    names = [f"a{suffix}", f"a{suffix}b", f"train-a{suffix}"]
    for name in names:
        assert api(module_backend, "POST", f"workspace/{name}").status_code == 201
    assert api(module_backend, "DELETE", f"workspace/{names[0]}").json() is None
    remaining = api(module_backend, "GET", "workspace").json()["names"]
    assert names[0] not in remaining and names[1] in remaining and names[2] in remaining
    assert_error(api(module_backend, "DELETE", f"workspace/{names[0]}"), 404, "WORKSPACE_NOT_FOUND")


def snapshot(root: Path):
    return {path for path in root.rglob("*") if not path.name.startswith(("kaos.db", "backend-"))}


@pytest.mark.parametrize("evil", [
    {"entries": {"features/a.csv": "1", "../evil.txt": "x"}},
    {"entries": {"features/a.csv": "1", "/tmp/kaos-evil-abs.txt": "x"}},
    {"entries": {"features/a.csv": "1"}, "special": [symlink_entry("features/link", "/etc/passwd")]},
])
def test_unsafe_bundles_are_refused_and_write_nothing(module_backend, evil):
    ws = new_name()
    api(module_backend, "POST", f"workspace/{ws}")
    before = snapshot(module_backend.data_dir.parent)
    data = zip_bytes(evil["entries"], special=evil.get("special", ()))
    for route in ("features", "notebook"):
        message = assert_error(api(module_backend, "POST", f"data/{ws}/{route}", data=data), 400, "INVALID_BUNDLE")
        assert "is not allowed" in message
    assert snapshot(module_backend.data_dir.parent) == before
    assert not os.path.exists("/tmp/kaos-evil-abs.txt")


def test_same_bytes_twice_is_one_blob(backend):
    ws = new_name()
    api(backend, "POST", f"workspace/{ws}")
    first = api(backend, "POST", f"data/{ws}/features", data=features_zip())
    second = api(backend, "POST", f"data/{ws}/features", data=features_zip())
    assert first.status_code == 200 and first.json() == second.json()
    assert first.json()["glob_name"].startswith("features:")
    assert blob_files(backend) == [hashlib.sha256(features_zip()).hexdigest()]


def test_digest_upload_without_a_body(backend):
    ws, other = new_name(), new_name()
    for name in (ws, other):
        api(backend, "POST", f"workspace/{name}")
    data = features_zip("mydata")
    digest = hashlib.sha256(data).hexdigest()
    assert_error(api(backend, "GET", f"blobs/{digest}"), 404, "BLOB_NOT_FOUND")
    assert_error(api(backend, "POST", f"data/{ws}/features?digest={digest}"), 404, "BLOB_NOT_FOUND")
    uploaded = api(backend, "POST", f"data/{ws}/features", data=data).json()
    assert api(backend, "GET", f"blobs/{digest}").json() == {"digest": digest, "size": len(data)}
    by_digest = api(backend, "POST", f"data/{other}/features?digest={digest}")
    assert by_digest.status_code == 200 and by_digest.json() == uploaded
    assert blob_files(backend) == [digest]
    # once every workspace using it is gone, the blob is gone too
    api(backend, "DELETE", f"workspace/{ws}")
    assert api(backend, "GET", f"blobs/{digest}").status_code == 200
    api(backend, "DELETE", f"workspace/{other}")
    assert_error(api(backend, "GET", f"blobs/{digest}"), 404, "BLOB_NOT_FOUND")
    assert blob_files(backend) == []


def test_multipart_upload_like_the_original_cli(module_backend, tmp_path):
    ws = new_name()
    api(module_backend, "POST", f"workspace/{ws}")
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(features_zip())
    with open(bundle, "rb") as handle:
        response = api(module_backend, "POST", f"data/{ws}/features", params={"user": "jo.doe", "memory": "512Mi"},
                       files={"data": handle})
    assert response.status_code == 200, response.text
    raw = api(module_backend, "POST", f"data/{ws}/features", data=features_zip())
    assert response.json() == raw.json()
    manifest = b'{"url": "https://example.com/a.csv", "path": "training/a.csv"}\n'
    response = api(module_backend, "POST", f"data/{ws}/manifest", files={"data": manifest})
    assert response.json() == {"glob_name": f"manifest:{hashlib.sha256(manifest).hexdigest()[:5]}"}
    params = b'{"degree": [3, 5], "kernel": ["linear", "poly"], "gamma": [10, 0.1, 0.01]}'
    response = api(module_backend, "POST", f"data/{ws}/params", params={"parallelism": 2}, files={"data": params})
    assert len(response.json()["params"]) == 12
    assert response.json()["params"][0] == {"degree": 3, "kernel": "linear", "gamma": 10}
    assert list(response.json()["params"][0]) == ["degree", "kernel", "gamma"]  # key order kept on the wire
    response = api(module_backend, "POST", f"data/{ws}/notebook", data=features_zip("notebook-data"),
                   headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200 and response.json() is None
    info = api(module_backend, "GET", f"workspace/{ws}").json()["response"]
    assert f"train-{ws}" in info["pipelines"]


def test_upload_over_the_limit(tmp_path):
    server = BackendProcess(tmp_path / "data", env={"KAOS_MAX_UPLOAD_MB": "1"}).start()
    try:
        ws = new_name()
        api(server, "POST", f"workspace/{ws}")
        too_big = os.urandom(2 * 1024 * 1024)
        chunks = (too_big[start:start + 65536] for start in range(0, len(too_big), 65536))
        for kwargs in ({"data": too_big}, {"files": {"data": too_big}}, {"data": chunks}):
            message = assert_error(api(server, "POST", f"data/{ws}/features", **kwargs), 413, "PAYLOAD_TOO_LARGE")
            assert "1 MB" in message
        assert blob_files(server) == []
        assert list((server.data_dir / "blobs" / ".tmp").iterdir()) == []
        assert api(server, "POST", f"data/{ws}/features", data=features_zip()).status_code == 200
    finally:
        server.stop()


def test_restart_keeps_the_workspaces(tmp_path):
    server = BackendProcess(tmp_path / "data").start()
    try:
        api(server, "POST", "workspace/kept")
        glob = api(server, "POST", "data/kept/features", data=features_zip()).json()["glob_name"]
    finally:
        server.stop()
    again = BackendProcess(tmp_path / "data").start()
    try:
        assert api(again, "GET", "workspace").json() == {"names": ["kept"]}
        assert api(again, "POST", "data/kept/features", data=features_zip()).json()["glob_name"] == glob
        assert_error(api(again, "POST", "workspace/kept"), 409, "WORKSPACE_EXISTS")
    finally:
        again.stop()


def test_internal_resources_wipes_everything(backend):
    for name in ("one", "two"):
        api(backend, "POST", f"workspace/{name}")
        api(backend, "POST", f"data/{name}/features", data=features_zip(name))
    assert len(blob_files(backend)) == 2
    response = api(backend, "DELETE", "internal/resources")
    assert response.status_code == 200 and response.json() is None
    assert api(backend, "GET", "workspace").json() == {"names": []}
    assert blob_files(backend) == []
