"""KaosClient's inference routes against a real HTTP server on 127.0.0.1 (streams and downloads included)."""
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from kaos_cli.client import KILL_READ_TIMEOUT, KaosClient
from kaos_cli.errors import KaosError, RequestError
from kaos_model.wire import BundleUpload, EndpointListing, ModelInfo, ServeInfo
from tests.support import answers

JSON = "application/json"
ENDPOINT = "serve-ws-53d3da"
JOB = "4f1d0e2c9b8a47e6a1c3d5e7f9a0b2c4"


@pytest.fixture
def source_zip(tmp_path):
    path = tmp_path / "source.zip"
    path.write_bytes(b"PK serve source" * 100)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_serve_source_with_a_model(server, source_zip):
    path, digest = source_zip
    answer = {"glob_name": "mnist:e39c0", "endpoint": ENDPOINT, "job_id": JOB}
    server.route("POST", "inference/ws/1909d_5c3ca%3A828c4e", body=answer)
    client = KaosClient(server.url, "t", "alice")
    uploaded = client.upload_serve_source("ws", path, "1909d_5c3ca:828c4e", cpu=0.5, memory="1Gi", gpu=0)
    assert isinstance(uploaded, BundleUpload) and uploaded.to_dict() == answer
    assert (uploaded.glob_name, uploaded.endpoint, uploaded.job_id) == ("mnist:e39c0", ENDPOINT, JOB)
    blob, upload = server.requests
    assert blob.path == f"/api/blobs/{digest}"
    assert upload.body == path.read_bytes() and upload.headers["content-type"] == "application/zip"
    assert upload.query == {"cpu": ["0.5"], "memory": ["1Gi"], "gpu": ["0"], "user": ["alice"]}


@pytest.mark.parametrize("model_id", [None, ""])
def test_upload_serve_source_without_a_model_posts_none(server, source_zip, model_id):
    path, digest = source_zip
    server.route("GET", f"blobs/{digest}", body={"digest": digest, "size": 1})
    server.route("POST", "inference/ws/None", body={"glob_name": "mnist:e39c0", "endpoint": ENDPOINT})
    assert KaosClient(server.url, "t").upload_serve_source("ws", path, model_id).endpoint == ENDPOINT
    upload, = server.requests_to("POST", "inference/ws/None")
    assert upload.body == b"" and upload.query == {"digest": [digest]}  # by digest: the backend has the bytes


def test_upload_serve_source_model_not_found(server, source_zip):
    path, _ = source_zip
    server.route("POST", "inference/ws/nope", 404, {"error_code": "MODEL_NOT_FOUND",
                                                    "message": "There is no model with id: nope"})
    with pytest.raises(RequestError) as problem:
        KaosClient(server.url, "t").upload_serve_source("ws", path, "nope")
    assert (str(problem.value), problem.value.error_code) == ("There is no model with id: nope", "MODEL_NOT_FOUND")


def test_serve_list(server):
    endpoint = {"name": ENDPOINT, "url": f"h/{ENDPOINT}/invocations", "user": "u", "state": "PIPELINE_RUNNING",
                "created_at": "2019-07-29 15:25:45", "code": answers.descriptor("/mnist:e39c0"), "image": "i",
                "model": answers.model_info("1909d_5c3ca:828c4e"), "restarts": 2, "reason": None}
    server.route("GET", "inference/ws", body={"response": {"endpoints": [endpoint], "building": []}})
    listing = KaosClient(server.url, "t").serve_list("ws")
    assert isinstance(listing, EndpointListing) and listing.building == [] and listing.continue_token is None
    served, = listing.endpoints
    assert isinstance(served, ServeInfo) and isinstance(served.model, ModelInfo) and served.restarts == 2
    assert served.to_dict() == endpoint


def test_logs_paths_and_follow(server):
    server.route("GET", f"inference/ws/{ENDPOINT}/logs", body=json.dumps("[t] a\n[t] b"))
    server.handle("GET", f"inference/ws/build/{JOB}/logs",
                  lambda request: (200, iter(["[t] build", "ing\n[t] done\n"]), "text/plain"))
    client = KaosClient(server.url, "t")
    assert client.serve_logs("ws", ENDPOINT) == "[t] a\n[t] b"
    assert list(client.serve_logs("ws", ENDPOINT, follow=True)) == ["[t] a", "[t] b"]  # a JSON answer is split
    assert list(client.serve_build_logs("ws", JOB, follow=True)) == ["[t] building", "[t] done"]
    followed = server.requests_to("GET", f"inference/ws/build/{JOB}/logs")[0]
    assert followed.query == {"follow": ["true"]}


def test_serve_bundle_to_a_temporary_file(server):
    payload = os.urandom(300_000)
    server.route("GET", f"inference/ws/{ENDPOINT}/bundle", body=payload, content_type="application/zip")
    path = Path(KaosClient(server.url, "t", progress=False).serve_bundle("ws", ENDPOINT))
    try:
        assert path.suffix == ".zip" and path.read_bytes() == payload
    finally:
        path.unlink()


def test_serve_bundle_to_a_given_file(server, tmp_path):
    server.route("GET", f"inference/ws/{ENDPOINT}/bundle", body=b"PK bytes", content_type="application/zip")
    dest = tmp_path / "bundle.zip"
    assert KaosClient(server.url, "t").serve_bundle("ws", ENDPOINT, dest) == str(dest)
    assert dest.read_bytes() == b"PK bytes"


def test_serve_bundle_errors(server, tmp_path):
    server.route("GET", f"inference/ws/{ENDPOINT}/bundle", 404,
                 {"error_code": "PIPELINE_NOT_FOUND", "message": f"Pipeline {ENDPOINT} not found"})
    with pytest.raises(RequestError, match=f"Pipeline {ENDPOINT} not found"):
        KaosClient(server.url, "t").serve_bundle("ws", ENDPOINT, tmp_path / "bundle.zip")
    assert not (tmp_path / "bundle.zip").exists()


def test_serve_bundle_interrupted_leaves_no_partial_file(server, tmp_path):
    def broken(request):
        def chunks():
            yield b"PK first part"
            raise ConnectionAbortedError("backend went away")  # no terminating chunk
        return 200, chunks(), "application/zip"

    server.handle("GET", f"inference/ws/{ENDPOINT}/bundle", broken)
    dest = tmp_path / "bundle.zip"
    with pytest.raises(KaosError, match="The download of the serve bundle .* was interrupted"):
        KaosClient(server.url, "t", progress=False).serve_bundle("ws", ENDPOINT, dest)
    assert not dest.exists()


def test_serve_provenance_is_the_dot_source(server):
    dot = 'digraph { "a" -> "b"; }'
    server.route("GET", f"inference/ws/{ENDPOINT}/provenance", body=json.dumps(dot))
    assert KaosClient(server.url, "t").serve_provenance("ws", ENDPOINT) == dot


def test_serve_kill_waits_longer_than_the_read_timeout(server):
    assert KILL_READ_TIMEOUT >= 60

    def slow_kill(request):
        time.sleep(0.5)
        return 200, None, JSON

    server.handle("DELETE", f"inference/ws/{ENDPOINT}", slow_kill)
    assert KaosClient(server.url, "t", timeout=0.2).serve_kill("ws", ENDPOINT) is None
    request, = server.requests
    assert request.path == f"/api/inference/ws/{ENDPOINT}"
