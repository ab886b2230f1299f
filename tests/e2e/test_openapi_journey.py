"""Issue 8, item 2: a user's whole journey over HTTP, as a 1.x client or a generated one makes it, with every
request and every answer checked against the OpenAPI description (closed: an undescribed route, method,
status, field or type fails): workspaces, every kind of upload, a training with a small grid and a training
killed, logs, train info, bundles, provenance, a tiny endpoint served and killed, and the errors on the way.
At the end every operation the description has was exercised."""
import hashlib
import io
import json
import zipfile

import pytest
import requests

from kaos_backend.openapi import openapi_description
from tests.support.backend import BackendProcess, free_port
from tests.support.openapi import ContractSession, ContractViolation, error_body, operations
from tests.support.platform import wait_for

WS = "journey"
TERMINAL = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED")

TRAIN = """#!/usr/bin/env python3
import glob, json, os, sys, time
params = {}
for path in glob.glob(os.path.join(os.environ["KAOS_TRAIN_HYPER"], "**", "*.json"), recursive=True):
    params.update(json.load(open(path)))
print("training with", params, flush=True)
time.sleep(params.get("sleep", 0))
out = sys.argv[1]
os.makedirs(os.path.join(out, "model"))
os.makedirs(os.path.join(out, "metrics"))
open(os.path.join(out, "model", "model.txt"), "w").write(json.dumps(params))
json.dump({"accuracy": params.get("lr", 0.5), "note": "text"}, open(os.path.join(out, "metrics", "metrics.json"), "w"))
"""

SERVE = """#!/usr/bin/env python3
import http.server, os
MODEL = open("model.txt").read() if os.path.exists("model.txt") else "none"
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.reply(200 if self.path == "/ping" else 404, b"{}")
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(200, ('{"result": %s}' % MODEL).encode())
    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
print("serving", flush=True)
http.server.HTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Answer).serve_forever()
"""


def _zip(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name.endswith(("/train", "/serve")) else 0o100644) << 16
            archive.writestr(info, text)
    return buffer.getvalue()


TRAIN_ZIP = _zip({"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": "",
                  "tiny/model/requirements.txt": "", "tiny/model/train": TRAIN})
SERVE_ZIP = _zip({"tinyserve/Dockerfile": "FROM python:3.11-slim\n", "tinyserve/model/__init__.py": "",
                  "tinyserve/model/requirements.txt": "", "tinyserve/model/web-requirements.txt": "",
                  "tinyserve/model/serve": SERVE})
DATA_ZIP = _zip({"features/training/data.csv": "1,0,0\n", "features/validation/data.csv": "0,1,1\n"})


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    server = BackendProcess(tmp_path_factory.mktemp("openapi-journey") / "data").start()
    yield server
    server.stop()


def _multipart(content: bytes):
    """The 1.x CLI's upload: one part named `data`, file name `data`, text/plain."""
    return {"files": {"data": ("data", content, "text/plain")}}


def _raw(content: bytes, content_type="application/zip"):
    return {"data": content, "headers": {"Content-Type": content_type}}


def _code(response) -> str:
    return response.json()["error_code"]


def _job(api, job_id):
    return api.call("GET", f"job/{WS}/{job_id}", expect=200).json()["response"]


def _wait_job(api, job_id, what):
    return wait_for(lambda: (lambda job: job if job["state"] in TERMINAL else None)(_job(api, job_id)),
                    timeout=600, what=what)


def _newest_training(api, count):
    return wait_for(lambda: (lambda jobs: jobs[0] if len(jobs) >= count else None)(
        api.call("GET", f"train/{WS}", expect=200).json()["response"]["training"]), timeout=600,
        what=f"{count} train job(s)")


def _endpoints(api):
    return api.call("GET", f"inference/{WS}", expect=200).json()["response"]["endpoints"]


def test_a_user_journey_keeps_to_the_description(backend, tmp_path):
    api = ContractSession(backend.url, backend.token)

    # -- the platform -----------------------------------------------------------------------------------------
    anonymous = ContractSession(backend.url, None)
    assert anonymous.call("GET", "openapi.json", expect=200).json()["openapi"].startswith("3.1")
    assert _code(anonymous.call("GET", "workspace", expect=401, outside=True)) == "AUTHORIZATION_FAILURE"
    assert _code(ContractSession(backend.url, "wrong").call("GET", "health", expect=401)) == "AUTHORIZATION_FAILURE"
    assert api.call("GET", "health", expect=200).json()["status"] == "ok"

    # -- workspaces -------------------------------------------------------------------------------------------
    assert api.call("GET", "workspace", expect=200).json() == {"names": []}
    created = api.call("POST", f"workspace/{WS}", params={"user": "tester"}, expect=201).json()["response"]
    assert created["name"] == WS
    assert _code(api.call("POST", f"workspace/{WS}", expect=409)) == "WORKSPACE_EXISTS"
    assert _code(api.call("POST", "workspace/Not_Valid", expect=400)) == "INVALID_WORKSPACE_NAME"
    assert api.call("GET", f"workspace/{WS}", expect=200).json()["response"]["repos"]
    assert _code(api.call("GET", "workspace/nowhere", expect=404)) == "WORKSPACE_NOT_FOUND"
    assert api.call("GET", "workspace", expect=200).json() == {"names": [WS]}
    listing = api.call("GET", f"train/{WS}", expect=200).json()["response"]
    assert listing == {"training": [], "building": [], "ingesting": []}
    assert api.call("GET", f"train/{WS}/inspect", expect=200).json()["image_state"] == "none"

    # -- uploads: the 1.x multipart part, the raw body, a digest of stored bytes; and their refusals -----------
    source = api.call("POST", f"train/{WS}", params={"user": "tester", "cpu": "1", "memory": "256Mi"},
                      expect=200, **_multipart(TRAIN_ZIP)).json()
    assert source["glob_name"].startswith("tiny:") and source["job_id"]
    build_id = source["job_id"]
    data = api.call("POST", f"data/{WS}/features", params={"user": "tester"}, expect=200, **_raw(DATA_ZIP)).json()
    digest = hashlib.sha256(DATA_ZIP).hexdigest()
    assert api.call("GET", f"blobs/{digest}", expect=200).json() == {"digest": digest, "size": len(DATA_ZIP)}
    again = api.call("POST", f"data/{WS}/features", params={"digest": digest}, expect=200).json()
    assert again["glob_name"] == data["glob_name"]
    assert _code(api.call("GET", "blobs/not-a-digest", expect=400, outside=True)) == "BAD_REQUEST"
    assert _code(api.call("GET", f"blobs/{'0' * 64}", expect=404)) == "BLOB_NOT_FOUND"
    assert _code(api.call("POST", f"data/{WS}/features", params={"digest": "0" * 64}, expect=404)) == \
        "BLOB_NOT_FOUND"
    assert _code(api.call("POST", f"data/{WS}/features", expect=400, **_raw(b"not a zip"))) == "INVALID_BUNDLE"
    assert _code(api.call("POST", f"train/{WS}", params={"cpu": "lots"}, expect=400, **_raw(TRAIN_ZIP))) == \
        "CPU_REQUEST_ERROR"
    assert _code(api.call("POST", f"train/{WS}", params={"memory": "1Q"}, expect=400, **_raw(TRAIN_ZIP))) == \
        "MEMORY_REQUEST_ERROR"
    assert _code(api.call("POST", f"train/{WS}", params={"gpu": "-1"}, expect=400, **_raw(TRAIN_ZIP))) == \
        "GPU_REQUEST_ERROR"
    assert _code(api.call("POST", "data/nowhere/features", expect=404, **_raw(DATA_ZIP))) == "WORKSPACE_NOT_FOUND"
    assert _code(api.call("POST", f"data/{WS}/features", expect=400, outside=True,
                          files={"other": ("x", b"1", "text/plain")})) == "BAD_REQUEST"
    assert _code(api.call("POST", f"data/{WS}/params", expect=400, json=[1, 2], outside=True)) == "INVALID_HYPERPARAMS"
    assert _code(api.call("POST", f"data/{WS}/params", params={"parallelism": "0"}, expect=400, outside=True,
                          json={"lr": [1]})) == "BAD_REQUEST"
    assert _code(api.call("POST", f"data/{WS}/manifest", expect=400, **_raw(b"{nonsense}\n", "text/plain"))) == \
        "INVALID_MANIFEST"
    assert api.call("POST", f"data/{WS}/notebook", params={"user": "tester"}, expect=200,
                    **_raw(DATA_ZIP)).json() is None
    grid = api.call("POST", f"data/{WS}/params", params={"parallelism": "2"}, expect=200,
                    **_multipart(json.dumps({"lr": [0.25, 0.75]}).encode())).json()
    assert grid["params"] == [{"lr": 0.25}, {"lr": 0.75}]
    inspected = api.call("GET", f"train/{WS}/inspect", expect=200).json()
    assert inspected["hyper_glob"] == f"/{grid['glob_name']}/*" and inspected["parallelism"] == 2

    # -- the build and the training of the grid ---------------------------------------------------------------
    assert _wait_job(api, build_id, "the build")["state"] == "JOB_SUCCESS"
    assert "[" in api.call("GET", f"train/{WS}/build/{build_id}/logs", expect=200).json()
    train_id = _newest_training(api, 1)["job_id"]
    assert _wait_job(api, train_id, "the grid's training")["state"] == "JOB_SUCCESS"
    assert "training with" in api.call("GET", f"train/{WS}/{train_id}/logs", expect=200).json()
    followed = api.call("GET", f"train/{WS}/{train_id}/logs", params={"follow": "true"}, expect=200)
    assert followed.headers["Content-Type"].startswith("text/plain") and "training with" in followed.text
    assert _code(api.call("GET", f"train/{WS}/{train_id}/logs", params={"follow": "maybe"}, expect=400,
                          outside=True)) == \
        "BAD_REQUEST"
    assert _code(api.call("GET", f"train/{WS}/{'f' * 32}/logs", expect=404)) == "JOB_NOT_FOUND"
    listing = api.call("GET", f"train/{WS}", expect=200).json()["response"]
    assert [job["job_id"] for job in listing["building"]] == [build_id]
    assert listing["training"][0]["hyperopt"] == "True"

    info = api.call("GET", f"train/{WS}/{train_id}", params={"sort_by": "accuracy", "ascending": "true"},
                    expect=200).json()
    partitions = info["response"]["partitions"]
    assert [partition["score"] for partition in partitions] == ["0.2500", "0.7500"]
    model_id = partitions[-1]["output"]["model_id"]
    assert _code(api.call("GET", f"train/{WS}/{train_id}", params={"page_id": "3"}, expect=400)) == "PAGE_ERROR"
    assert _code(api.call("GET", f"train/{WS}/{train_id}", params={"sort_by": "note"}, expect=400)) == \
        "BAD_REQUEST"
    assert _code(api.call("GET", f"train/{WS}/{train_id}", params={"sort_by": "loss"}, expect=404)) == \
        "METRIC_NOT_FOUND"
    assert _code(api.call("GET", f"train/{WS}/{build_id}", expect=404)) == "JOB_NOT_FOUND"

    # -- bundles and provenance -------------------------------------------------------------------------------
    bundle = api.call("GET", f"train/{WS}/{train_id}/bundle",
                      params={"include_code": "True", "include_data": "True", "include_model": "True"}, expect=200)
    names = zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
    assert any(name.startswith("code/tiny:") for name in names) and any(name.startswith("data/") for name in names)
    one = api.call("GET", f"train/{WS}/{train_id}/bundle", params={"model_id": model_id}, expect=200)
    assert any(name.endswith("model/model.txt") for name in zipfile.ZipFile(io.BytesIO(one.content)).namelist())
    assert _code(api.call("GET", f"train/{WS}/{train_id}/bundle", params={"model_id": "abcdef"}, expect=404)) == \
        "MODEL_NOT_FOUND"
    assert api.call("GET", f"train/{WS}/{model_id}/provenance", expect=200).json().startswith("digraph")
    assert _code(api.call("GET", f"train/{WS}/00000_00000:000000/provenance", expect=404)) == "MODEL_NOT_FOUND"

    # -- a training killed while it runs ----------------------------------------------------------------------
    api.call("POST", f"data/{WS}/params", expect=200, **_raw(json.dumps({"sleep": [600]}).encode(),
                                                               "application/octet-stream"))
    sleeping = _newest_training(api, 2)["job_id"]
    wait_for(lambda: _job(api, sleeping)["state"] == "JOB_RUNNING", timeout=600, what="the sleeper to run")
    assert api.call("DELETE", f"train/{WS}/{sleeping}", expect=200).json() is None
    assert _job(api, sleeping)["state"] == "JOB_KILLED"
    assert _code(api.call("DELETE", f"train/{WS}/{sleeping}", expect=400)) == "JOB_NOT_RUNNING"
    assert _code(api.call("DELETE", f"train/{WS}/{'e' * 32}", expect=404)) == "JOB_NOT_FOUND"
    killed = api.call("GET", f"train/{WS}/{sleeping}", expect=200).json()["response"]
    assert killed["state"] == "JOB_KILLED" and killed["failed_count"] == 1
    assert _code(api.call("GET", f"train/{WS}/{sleeping}/bundle", params={"model_id": model_id}, expect=404)) == \
        "MODEL_NOT_FOUND"

    # -- an endpoint serving the model, and one without a model -----------------------------------------------
    deployed = api.call("POST", f"inference/{WS}/{model_id}", params={"user": "tester"}, expect=200,
                        **_multipart(SERVE_ZIP)).json()
    endpoint = deployed["endpoint"]
    assert _code(api.call("POST", f"inference/{WS}/00000_00000:000000", expect=404, **_raw(SERVE_ZIP))) == \
        "MODEL_NOT_FOUND"
    assert _code(api.call("POST", f"inference/{WS}/None", expect=400, **_raw(TRAIN_ZIP))) == "INVALID_BUNDLE"
    bare = api.call("POST", f"inference/{WS}/None", expect=200, **_raw(SERVE_ZIP)).json()["endpoint"]
    wait_for(lambda: {e["name"]: e["state"] for e in _endpoints(api)}.get(endpoint) == "PIPELINE_RUNNING",
             timeout=600, what="the endpoint to run")
    answer = requests.post(f"{backend.root}/{endpoint}/invocations", data=b"{}", timeout=60)
    assert answer.status_code == 200 and answer.json() == {"result": {"lr": 0.75}}
    build_serve = api.call("GET", f"inference/{WS}", expect=200).json()["response"]["building"][-1]["job_id"]
    assert api.call("GET", f"inference/{WS}/build/{build_serve}/logs", expect=200).json() is not None
    assert "serving" in api.call("GET", f"inference/{WS}/{endpoint}/logs", expect=200).json()
    assert "serving" in api.call("GET", f"inference/{endpoint}/logs", expect=200).json()
    assert _code(api.call("GET", f"inference/{WS}/serve-{WS}-000000/logs", expect=404)) == "PIPELINE_NOT_FOUND"
    served = api.call("GET", f"inference/{WS}/{endpoint}/bundle", expect=200)
    assert any(name.endswith("model/model.txt") for name in zipfile.ZipFile(io.BytesIO(served.content)).namelist())
    assert api.call("GET", f"inference/{WS}/{endpoint}/provenance", expect=200).json().startswith("digraph")
    assert _code(api.call("GET", f"inference/{WS}/{bare}/provenance", expect=404)) == "ALIEN_PROVENANCE_ERROR"
    assert api.call("DELETE", f"inference/{WS}/{endpoint}", expect=200).json() is None
    assert api.call("DELETE", f"inference/{bare}", expect=200).json() is None
    assert _code(api.call("DELETE", f"inference/{bare}", expect=404)) == "PIPELINE_NOT_FOUND"
    assert _code(api.call("DELETE", f"inference/{WS}/{bare}", expect=404)) == "PIPELINE_NOT_FOUND"

    # -- a notebook (a bundle without jupyterlab: the routes, not Jupyter, are what this journey checks) --------
    notebook_zip = _zip({"nb/Dockerfile": "FROM python:3.11-slim\n", "nb/model/requirements.txt": ""})
    answer = api.call("POST", f"notebook/{WS}", params={"user": "tester"}, expect=200, **_raw(notebook_zip)).json()
    notebook = answer["notebook"]
    assert notebook == f"notebook-{WS}-tester" and answer["token"] and answer["url"].endswith(f"/{notebook}/lab")
    assert _code(api.call("POST", f"notebook/{WS}", params={"user": "tester"}, expect=409,
                          **_raw(notebook_zip))) == "NOTEBOOK_EXISTS"
    listing = api.call("GET", f"notebook/{WS}", expect=200).json()["response"]
    assert [item["name"] for item in listing["notebooks"]] == [notebook]
    build_notebook = listing["building"][0]["job_id"]
    assert _wait_job(api, build_notebook, "the notebook's build")["state"] == "JOB_SUCCESS"
    assert api.call("GET", f"notebook/{WS}/build/{build_notebook}/logs", expect=200).json() is not None
    assert isinstance(api.call("GET", f"notebook/{WS}/{notebook}/logs", expect=200).json(), str)
    assert api.call("DELETE", f"notebook/{WS}/{notebook}", expect=200).json() is None
    assert _code(api.call("DELETE", f"notebook/{notebook}", expect=404)) == "PIPELINE_NOT_FOUND"
    api.call("POST", f"notebook/{WS}", params={"user": "tester"}, expect=200, **_raw(notebook_zip))
    assert api.call("DELETE", f"notebook/{notebook}", expect=200).json() is None

    # -- a manifest whose ingestion fails (nothing listens at its URL) ----------------------------------------
    url = f"http://127.0.0.1:{free_port()}/data.csv"
    manifest = json.dumps({"url": url, "path": "training/data.csv"}).encode() + b"\n"
    assert api.call("POST", f"data/{WS}/manifest", expect=200, **_raw(manifest, "application/octet-stream")).json()[
        "glob_name"].startswith("manifest:")
    ingestion = wait_for(lambda: api.call("GET", f"train/{WS}", expect=200).json()["response"]["ingesting"],
                         timeout=600, what="an ingestion job")[0]["job_id"]
    assert _wait_job(api, ingestion, "the ingestion")["state"] == "JOB_FAILURE"
    assert url in api.call("GET", f"train/{WS}/{ingestion}/logs", expect=200).json()
    assert api.call("GET", f"train/{WS}", expect=200).json()["response"]["ingesting"][0]["reason"]

    # -- outside every operation: still the error shape -------------------------------------------------------
    unknown = requests.get(backend.url + "no/such/route", headers={"X-Token": backend.token}, timeout=30)
    assert unknown.status_code == 404 and error_body(unknown)["error_code"] == "NOT_FOUND"
    wrong = requests.put(backend.url + "workspace", headers={"X-Token": backend.token}, timeout=30)
    assert wrong.status_code == 405 and error_body(wrong)["error_code"] == "BAD_REQUEST"
    with pytest.raises(ContractViolation):  # the session itself refuses what the description does not have
        api.call("PUT", "workspace")

    # -- the end ----------------------------------------------------------------------------------------------
    assert api.call("DELETE", f"workspace/{WS}", expect=200).json() is None
    assert _code(api.call("DELETE", f"workspace/{WS}", expect=404)) == "WORKSPACE_NOT_FOUND"
    api.call("POST", "workspace/another", expect=201)
    assert api.call("DELETE", "internal/resources", expect=200).json() is None
    assert api.call("GET", "workspace", expect=200).json() == {"names": []}

    exercised = api.exercised | anonymous.exercised
    assert operations(openapi_description()) - exercised == set(), "operations the journey never exercised"
