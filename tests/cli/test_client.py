"""KaosClient against a real HTTP server on 127.0.0.1 (no kaos_backend involved)."""
import hashlib

import pytest

from kaos_cli.client import KaosClient, join_url
from kaos_cli.errors import ConnectionProblem, KaosError, RequestError, UnauthorizedError, UnexpectedAnswer
from kaos_model.wire import BundleUpload, HealthInfo, ParamsUpload, WorkspaceCreated, WorkspaceInfo


def test_join_url_never_doubles_slashes():
    assert join_url("http://h/api/", "/workspace") == "http://h/api/workspace"
    assert join_url("http://h/api", "workspace") == "http://h/api/workspace"
    assert join_url("http://h/api//", "health") == "http://h/api/health"


def test_token_user_and_path(server):
    server.route("GET", "workspace", body={"names": ["a", "b"]})
    client = KaosClient(server.url, "secret", "alice")
    assert client.list_workspaces() == ["a", "b"]
    request, = server.requests
    assert request.path == "/api/workspace"
    assert request.headers["x-token"] == "secret"
    assert request.query == {"user": ["alice"]}


@pytest.mark.parametrize("body, field", [
    ({"response": {"name": "mnist", "pipelines": "p", "repos": []}}, "pipelines: expected a JSON array"),
    ({"response": {"name": "mnist", "repos": []}}, "pipelines: missing, and WorkspaceInfo requires it"),
    ({"name": "mnist", "pipelines": [], "repos": []}, "expected a JSON object with `response`"),
    (["mnist"], "expected a JSON object with `response`"),
])
def test_an_answer_that_does_not_fit_its_wire_class_is_an_unexpected_answer(server, body, field):
    server.route("GET", "workspace/mnist", body=body)
    with pytest.raises(UnexpectedAnswer) as problem:
        KaosClient(server.url, "t").workspace_info("mnist")
    assert "answered GET workspace/mnist with something that is not a WorkspaceInfo" in str(problem.value)
    assert field in str(problem.value) and "\n" not in str(problem.value)


def test_workspace_routes(server):
    server.route("POST", "workspace/mnist", 201, {"build_train": "build-train-mnist", "build_serve": None,
                                                  "response": {"name": "mnist", "pipelines": [], "repos": []}})
    server.route("GET", "workspace/mnist", body={"response": {"name": "mnist", "pipelines": ["p"], "repos": []}})
    server.route("DELETE", "workspace/mnist", body=None)
    server.route("DELETE", "internal/resources", body=None)
    server.route("GET", "health", body={"status": "ok"})
    client = KaosClient(server.url, "secret", "alice")
    assert client.health() == HealthInfo(status="ok")
    created = client.create_workspace("mnist")
    assert isinstance(created, WorkspaceCreated) and created.build_train == "build-train-mnist"
    assert created.info == WorkspaceInfo(name="mnist", pipelines=[], repos=[])
    assert client.workspace_info("mnist").pipelines == ["p"]
    assert client.kill_workspace("mnist") is None
    assert client.delete_all_resources() is None
    assert [(r.method, r.path) for r in server.requests][-2:] == [
        ("DELETE", "/api/workspace/mnist"), ("DELETE", "/api/internal/resources")]


def test_unreachable(unused_port):
    url = f"http://127.0.0.1:{unused_port}/api/"
    with pytest.raises(ConnectionProblem) as problem:
        KaosClient(url, "t").health()
    assert problem.value.level == "Warning"
    assert str(problem.value) == f"Please ensure the endpoint is available - {url} is unreachable!"


def test_a_backend_that_accepts_and_never_answers_is_not_called_unreachable():
    """A stopped (SIGSTOP) or wedged backend: the connection is made, no answer comes. Found by a newcomer: the
    CLI waited 120 s, then said the endpoint was unreachable."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/"
    try:
        with pytest.raises(KaosError) as problem:
            KaosClient(url, "tok", timeout=1, unhealthy_advice="see the log").list_workspaces()
        assert not isinstance(problem.value, ConnectionProblem)
        assert str(problem.value) == (f"The backend at {url} accepted the connection but did not answer within 1 s: "
                                      "is it stopped or overloaded? See the log")
    finally:
        listener.close()


def test_a_backend_that_closes_the_connection_unanswered_is_not_called_unreachable():
    """The front door drops connections unanswered far past its connection cap: the CLI said "unreachable ... is
    its backend running?", wrong advice there (found by a newcomer)."""
    import socket
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/"

    def close_each():
        for _ in range(4):  # requests may retry once on a closed connection
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()
    threading.Thread(target=close_each, daemon=True).start()
    try:
        with pytest.raises(KaosError) as problem:
            KaosClient(url, "tok", timeout=5).list_workspaces()
        assert not isinstance(problem.value, ConnectionProblem)
        assert str(problem.value) == (f"The backend at {url} closed the connection without answering: it may have "
                                      "too many open connections; try again")
    finally:
        listener.close()


@pytest.mark.parametrize("url", ["nothttp://host/api/", "http://", "host:8080/api/", "notaurl"])
def test_invalid_url(url):
    with pytest.raises(ConnectionProblem) as problem:
        KaosClient(url, "t").health()
    assert str(problem.value) == f"Please run kaos init with a valid URL - {url} is invalid!"


@pytest.mark.parametrize("url", ["", None, "  "])
def test_missing_endpoint(url):
    with pytest.raises(ConnectionProblem) as problem:
        KaosClient(url, "t").health()
    assert str(problem.value) == "Missing endpoint! Please set with - kaos init"


def test_401_is_one_line(server):
    server.route("GET", "health", 401, {"error_code": "AUTHORIZATION_FAILURE", "message": "Unauthorized Token"})
    with pytest.raises(UnauthorizedError) as problem:
        KaosClient(server.url, "wrong").health()
    assert str(problem.value) == f"Unauthorized token - the backend at {server.url} rejected it"
    assert problem.value.status == 401


def _token_checked(token: str):
    def answer(request):
        if request.headers.get("x-token") != token:
            return 401, {"error_code": "AUTHORIZATION_FAILURE", "message": "Unauthorized Token"}, "application/json"
        return 200, {"status": "ok"}, "application/json"
    return answer


def test_a_401_goes_again_once_with_the_credentials_renewed_meanwhile(server, tmp_path):
    """`credentials` (the project's config read again) gives a new token after the client was made (a `kaos build
    deploy -f` since): a 401 sends the request once more with it; a 401 with credentials unchanged, or from the
    new ones, is raised; a body being streamed (read already) is not sent again."""
    server.handle("GET", "health", _token_checked("new"))
    server.handle("POST", "workspace/w", _token_checked("new"))
    given = [("ignored", "old")]
    client = KaosClient(server.url, "old", credentials=lambda: given[0])
    given[0] = (server.url, "new")
    assert client.health() == HealthInfo(status="ok")
    assert client.token == "new" and [r.headers["x-token"] for r in server.requests] == ["old", "new"]

    stale = KaosClient(server.url, "old", credentials=lambda: (server.url, "old"))
    with pytest.raises(UnauthorizedError):
        stale.health()
    wrong = KaosClient(server.url, "old", credentials=lambda: (server.url, "other"))
    with pytest.raises(UnauthorizedError):
        wrong.health()
    assert [r.headers["x-token"] for r in server.requests][2:] == ["old", "old", "other"]

    body = tmp_path / "body"
    body.write_bytes(b"x" * 10)
    streamed = KaosClient(server.url, "old", credentials=lambda: (server.url, "new"))
    with open(body, "rb") as stream, pytest.raises(UnauthorizedError):
        streamed._request("POST", "workspace/w", data=stream)
    assert streamed.token == "old"


def test_4xx_json_message(server):
    server.route("POST", "workspace/x", 409,
                 {"error_code": "WORKSPACE_EXISTS", "message": "Workspace x already exists"})
    with pytest.raises(RequestError) as problem:
        KaosClient(server.url, "t").create_workspace("x")
    assert str(problem.value) == "Workspace x already exists"
    assert (problem.value.status, problem.value.error_code) == (409, "WORKSPACE_EXISTS")


def test_500_html_is_a_short_excerpt(server):
    page = "<html><head><title>500</title><style>body{}</style></head><body><h1>Internal Server Error</h1>" \
           "<p>The server\nencountered an error." + "x" * 500 + "</p></body></html>"
    server.route("GET", "workspace", 500, page, "text/html")
    with pytest.raises(RequestError) as problem:
        KaosClient(server.url, "t").list_workspaces()
    message = str(problem.value)
    assert message.startswith("HTTP 500 Internal Server Error: 500 Internal Server Error The server encountered")
    assert "\n" not in message and "<" not in message and len(message) < 250
    assert problem.value.status == 500


def test_non_json_success_is_a_kaos_error(server):
    server.route("GET", "workspace", 200, "<html>proxy page</html>", "text/html")
    with pytest.raises(Exception) as problem:
        KaosClient(server.url, "t").list_workspaces()
    assert "not JSON" in str(problem.value)


# -- uploads ---------------------------------------------------------------------------------------------------
@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK fake zip bytes" * 1000)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_streams_when_blob_unknown(server, bundle, capsys):
    path, digest = bundle
    server.route("GET", f"blobs/{digest}", 404, {"error_code": "BLOB_NOT_FOUND", "message": "nope"})
    server.route("POST", "data/ws/features", 200, {"glob_name": "features:9fd9d"})
    result = KaosClient(server.url, "t", "alice").upload_features("ws", path, cpu=1.5, memory=None)
    assert result == BundleUpload(glob_name="features:9fd9d")
    upload, = server.requests_to("POST", "data/ws/features")
    assert upload.body == path.read_bytes()
    assert upload.headers["content-type"] == "application/zip"
    assert upload.headers["content-length"] == str(path.stat().st_size)
    assert "transfer-encoding" not in upload.headers
    assert upload.query == {"cpu": ["1.5"], "user": ["alice"]}
    assert "Uploading data bundle" in capsys.readouterr().err


def test_upload_by_digest_when_blob_known(server, bundle, capsys):
    path, digest = bundle
    server.route("GET", f"blobs/{digest}", 200, {"digest": digest, "size": path.stat().st_size})
    server.route("POST", "data/ws/notebook", 200, {"glob_name": "notebook:abcde"})
    assert KaosClient(server.url, "t").upload_notebook_data("ws", path).glob_name == "notebook:abcde"
    upload, = server.requests_to("POST", "data/ws/notebook")
    assert upload.body == b""
    assert upload.query["digest"] == [digest]
    assert "Uploading" not in capsys.readouterr().err


def test_digest_refused_falls_back_to_upload(server, bundle):
    path, digest = bundle
    server.route("GET", f"blobs/{digest}", 200, {"digest": digest, "size": 1})

    def features(request):
        if "digest" in request.query:
            return 404, {"error_code": "BLOB_NOT_FOUND", "message": "gone"}, "application/json"
        return 200, {"glob_name": "features:abcde"}, "application/json"

    server.handle("POST", "data/ws/features", features)
    assert KaosClient(server.url, "t").upload_features("ws", path).glob_name == "features:abcde"
    by_digest, by_body = server.requests_to("POST", "data/ws/features")
    assert by_digest.body == b"" and by_body.body == path.read_bytes()


def test_digest_post_other_errors_propagate(server, bundle):
    path, digest = bundle
    server.route("GET", f"blobs/{digest}", 200, {"digest": digest, "size": 1})
    server.route("POST", "data/ws/features", 400, {"error_code": "INVALID_BUNDLE", "message": "Bundle is malformed"})
    with pytest.raises(RequestError, match="Bundle is malformed"):
        KaosClient(server.url, "t").upload_features("ws", path)
    assert len(server.requests_to("POST", "data/ws/features")) == 1


def test_params_upload_carries_parallelism(server, tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{"lr": [0.1, 0.2]}')
    server.handle("GET", "blobs/" + hashlib.sha256(params.read_bytes()).hexdigest(),
                  lambda r: (404, {"error_code": "BLOB_NOT_FOUND", "message": "no"}, "application/json"))
    server.route("POST", "data/ws/params", 200, {"glob_name": "3fbf2", "params": [{"lr": 0.1}, {"lr": 0.2}]})
    result = KaosClient(server.url, "t").upload_params("ws", params, parallelism=2)
    assert isinstance(result, ParamsUpload) and result.glob_name == "3fbf2" and len(result.params) == 2
    upload, = server.requests_to("POST", "data/ws/params")
    assert upload.query["parallelism"] == ["2"] and upload.body == params.read_bytes()


def test_empty_file_upload_has_a_length(server, tmp_path):
    empty = tmp_path / "manifest.jsonl"
    empty.write_bytes(b"")
    server.route("POST", "data/ws/manifest", 400, {"error_code": "INVALID_MANIFEST", "message": "empty manifest"})
    with pytest.raises(RequestError, match="empty manifest"):
        KaosClient(server.url, "t").upload_manifest("ws", empty)
    upload, = server.requests_to("POST", "data/ws/manifest")
    assert upload.headers["content-length"] == "0" and "transfer-encoding" not in upload.headers
    assert upload.headers["content-type"] == "application/octet-stream"
