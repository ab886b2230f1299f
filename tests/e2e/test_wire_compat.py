"""Issue 8, part 1: the REST API as kaos 1.x clients know it (reference §5). A real backend, driven over raw HTTP
the way a 1.x client does it: paths joined to the endpoint URL `http://host/api/` with one more slash, the
X-Token header, uploads as a multipart part named `data`. Every JSON answer is decoded with the §5.1
dataclasses of tests/support/wire_1x.py (written from the reference, not from kaos_model), strictly."""
import io
import json
import zipfile
from pathlib import Path

import requests

from tests.support.cli import kaos
from tests.support.platform import tiny_data_bundle, tiny_train_bundle, wait_for
from tests.support.wire_1x import (DataDescriptor, EndpointListing, Error, GlobName, JobInfo, ModelInfo, ParamsGlob,
                                   PipelineDefinition, ServeInfo, TrainJobListing, WorkspaceCreated, WorkspaceInfo,
                                   WorkspaceNames, decode, decode_paged, decode_response)

USER = "tester"
TRAIN = """import json, os, pathlib, sys
out = pathlib.Path(sys.argv[1])
params = {}
for path in sorted(pathlib.Path(os.environ.get("KAOS_TRAIN_HYPER", "/nonexistent")).rglob("*.json")):
    params.update(json.loads(path.read_text()))
(out / "model").mkdir(parents=True)
(out / "model" / "model.txt").write_text(json.dumps(params))
(out / "metrics").mkdir()
score = params.get("a", 1) * 10 + params.get("b", 0)
(out / "metrics" / "metrics.json").write_text(json.dumps({"score": score, "loss": 1.0 / score}))
print("trained", params, flush=True)
"""
SERVE = """#!/usr/bin/env python3
import http.server, os
MODEL = open("model.txt", "rb").read() if os.path.exists("model.txt") else b"{}"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = MODEL if self.path.startswith("/invocations") else b"pong"
        self.send_response(200 if self.path in ("/ping", "/invocations") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""
GRID = {"a": [1, 2, 3], "b": [1, 2, 3, 4]}  # 12 combinations: two pages of `train info`


class Client1x:
    """A 1.x client: `<endpoint>/<path>` with the endpoint's trailing slash (so `/api//workspace`), the token in
    X-Token, `user` in the query of uploads, bundles as the multipart part `data` (file name `data`)."""

    def __init__(self, server, token=None):
        self.endpoint = server.url  # http://127.0.0.1:<port>/api/
        self.token = server.token if token is None else token
        self.answers = 0

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {} if self.token == "" else {"X-Token": self.token}
        return requests.request(method, f"{self.endpoint}/{path}", headers=headers, timeout=60,
                                allow_redirects=False, **kwargs)

    def json(self, method: str, path: str, status: int = 200, **kwargs):
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text)
        assert response.headers["Content-Type"] == "application/json", (method, path, response.headers)
        self.answers += 1
        return response.json()

    def upload(self, path: str, data: bytes, status: int = 200, **params):
        return self.json("POST", path, status, params={"user": USER, **params},
                         files={"data": ("data", data, "text/plain")})

    def error(self, method: str, path: str, status: int, code: str, **kwargs) -> Error:
        error = decode(Error, self.json(method, path, status, **kwargs))
        assert error.error_code == code, error
        return error


def zipped(root: Path) -> bytes:
    """A bundle as 1.x's CLI made it: the folder's contents, deflated, paths relative to the folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def train_zip(tmp_path: Path) -> bytes:
    return zipped(tiny_train_bundle(tmp_path / "train-code", TRAIN))


def data_zip(tmp_path: Path, marker: str = "1") -> bytes:
    return zipped(tiny_data_bundle(tmp_path / f"data-{marker}", marker))


def serve_zip(tmp_path: Path) -> bytes:
    model = tmp_path / "serve-code" / "tiny" / "model"
    model.mkdir(parents=True)
    (model.parent / "Dockerfile").write_text("FROM python:3.11-slim\n")
    for name, text in (("__init__.py", ""), ("web-requirements.txt", ""), ("requirements.txt", ""),
                       ("serve", SERVE)):
        (model / name).write_text(text)
    (model / "serve").chmod(0o755)
    return zipped(tmp_path / "serve-code")


def create_workspace(client: Client1x, name: str) -> WorkspaceInfo:
    created = client.json("POST", f"workspace/{name}", 201, params={"user": USER})
    decode(WorkspaceCreated, created)
    return decode_response(WorkspaceInfo, created)


def listing(client: Client1x, workspace: str) -> TrainJobListing:
    return decode_response(TrainJobListing, client.json("GET", f"train/{workspace}"))


def finished_training(client: Client1x, workspace: str, hyperopt: str = "False", timeout: float = 600):
    """The newest training (of a grid with hyperopt "True") once it ended, every listing on the way decoded. (A
    grid's source and data may start a training of their own before the grid arrives: uploads are one by one.)"""
    def ended():
        jobs = [job for job in listing(client, workspace).training if job.hyperopt == hyperopt]
        return jobs[0] if jobs and jobs[0].state in ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED") else None
    return wait_for(ended, timeout, interval=0.5, what=f"the training of {workspace}")


def running_endpoint(client: Client1x, workspace: str, timeout: float = 600) -> ServeInfo:
    def running():
        endpoints = decode_response(EndpointListing, client.json("GET", f"inference/{workspace}")).endpoints
        return endpoints[0] if endpoints and endpoints[0].state == "PIPELINE_RUNNING" else None
    return wait_for(running, timeout, interval=0.5, what=f"the endpoint of {workspace}")


def check_descriptor(descriptor: DataDescriptor, repo: str, path: str, branch: str = "master") -> None:
    assert (descriptor.repo, descriptor.path, descriptor.branch) == (repo, path, branch), descriptor
    assert descriptor.commit and descriptor.commit.strip() == descriptor.commit, descriptor


# -- input 1: the endpoint URL with its trailing slash -------------------------------------------------------------
def test_input_1_repeated_slashes_reach_the_api_without_a_redirect(module_backend, tmp_path):
    root, headers = module_backend.root, {"X-Token": module_backend.token}
    for path in ("/api//workspace", "//api/workspace", "/api///workspace//"):
        response = requests.get(root + path, headers=headers, timeout=30, allow_redirects=False)
        assert response.status_code == 200, (path, response.status_code, response.text)
        decode(WorkspaceNames, response.json())
    assert requests.post(f"{root}/api//workspace//slashes", headers=headers, timeout=30,
                         allow_redirects=False).status_code == 201
    data = data_zip(tmp_path)
    multipart = requests.post(f"{root}/api//data/slashes//features", headers=headers, timeout=30,
                              files={"data": ("data", data, "text/plain")}, allow_redirects=False)
    assert multipart.status_code == 200, multipart.text
    glob_name = decode(GlobName, multipart.json()).glob_name
    chunks = (data[start:start + 100] for start in range(0, len(data), 100))  # streamed: chunked encoding
    streamed = requests.post(f"{root}/api//data/slashes//features", headers=headers, timeout=30, data=chunks,
                             allow_redirects=False)
    assert streamed.status_code == 200 and decode(GlobName, streamed.json()).glob_name == glob_name
    inspect = requests.get(f"{root}/api//train//slashes//inspect", headers=headers, timeout=30).json()
    assert decode(PipelineDefinition, inspect).data_glob == f"/{glob_name}"
    missing = requests.get(f"{root}/api//no-such-route", headers=headers, timeout=30)
    assert missing.status_code == 404 and decode(Error, missing.json()).error_code == "NOT_FOUND"


def test_input_1_the_cli_works_with_the_url_build_deploy_prints(module_backend, tmp_path):
    """`kaos init -e http://127.0.0.1:<port>/api/`, then commands (our CLI joins its paths without doubling the
    slash: the raw requests above are what a 1.x client sends)."""
    endpoint = module_backend.url
    assert endpoint.endswith("/api/")
    initialised = kaos(tmp_path, "init", "-e", endpoint, "-t", module_backend.token)
    assert initialised.code == 0, initialised
    workspace = "cli"
    created = kaos(tmp_path, "workspace", "create", "-n", workspace)
    assert created.code == 0, created
    listed = kaos(tmp_path, "workspace", "list")
    assert listed.code == 0 and f" {workspace} " in listed.out, listed
    info = kaos(tmp_path, "workspace", "info")
    assert info.code == 0 and f"--- Workspace {workspace} ---" in info.out, info
    assert f"- source-train-{workspace}\n" in info.out, info


# -- input 2: inspect answers 1.x's strings ------------------------------------------------------------------------
def test_input_2_inspect_names_missing_inputs_with_strings(module_backend, tmp_path):
    client = Client1x(module_backend)
    create_workspace(client, "inspected")
    empty = decode(PipelineDefinition, client.json("GET", "train/inspected/inspect"))
    assert (empty.image, empty.data_glob, empty.hyper_glob, empty.output_branch) == \
        ("image:null", "/data:null", "/params.null", "null")
    assert empty.image_glob == "/image:null" and empty.image_repo == "build-train-inspected"
    glob_name = decode(GlobName, client.upload("data/inspected/features", data_zip(tmp_path))).glob_name
    inspect = decode(PipelineDefinition, client.json("GET", "train/inspected/inspect"))
    # what a 1.x client (and 1.x's CLI) does with these values: look for "null" in them
    assert ["null" in value for value in (inspect.image, inspect.data_glob, inspect.hyper_glob)] == \
        [True, False, True]
    assert inspect.data_glob == f"/{glob_name}" and inspect.data_repo == "ingestion-inspected"
    assert json.loads(inspect.description) == {"user": USER, "workspace": "inspected"}

    # our CLI reads the same answer: Image ✗, Data ✔, Hyperparams ✗
    assert kaos(tmp_path, "init", "-e", module_backend.url, "-t", module_backend.token).code == 0
    assert kaos(tmp_path, "workspace", "set", "-n", "inspected").code == 0
    deployed = kaos(tmp_path, "train", "deploy", "-d", str(tiny_data_bundle(tmp_path / "cli-data", "2")))
    assert deployed.code == 0, deployed
    table = deployed.out.split("CURRENT TRAINING INPUTS")[1]
    marks, values = [[cell.strip() for cell in line.split("|")[1:-1]]
                     for line in table.splitlines() if line.startswith("|")][1:3]
    assert marks == ["\u2717", "\u2714", "\u2717"], deployed.out
    assert values[1].startswith("/features:") and "null" not in deployed.out, deployed.out


# -- input 3: train info, listings and endpoints decode with §5.1 --------------------------------------------------
def test_input_3_train_info_listings_and_endpoints_decode(module_backend, tmp_path):
    client = Client1x(module_backend)
    create_workspace(client, "decoded")
    code = decode(GlobName, client.upload("train/decoded", train_zip(tmp_path))).glob_name
    data = decode(GlobName, client.upload("data/decoded/features", data_zip(tmp_path))).glob_name
    job = finished_training(client, "decoded")
    assert job.state == "JOB_SUCCESS" and job.hyperopt == "False"
    assert job.progress.startswith("Progress: 1 / 1 (100%)")
    build = listing(client, "decoded").building[0]
    assert (build.state, build.hyperopt) == ("JOB_SUCCESS", None) and build.progress.startswith("Progress: 1 / 1")

    page_id, page_count, info = decode_paged(JobInfo, client.json("GET", f"train/decoded/{job.job_id}"))
    assert (page_id, page_count, info.job_id, info.available_metrics) == (0, 1, job.job_id, ["loss", "score"])
    partition, = info.partitions
    branch = f"{code.split(':')[1]}_{data.split(':')[1]}"
    model_id = partition.output.path
    assert model_id.startswith(branch + ":") and len(model_id) == len(branch) + 7
    check_descriptor(partition.output, "train-decoded", model_id, branch)
    assert partition.output.commit == job.job_id
    check_descriptor(partition.code, "source-train-decoded", f"/{code}")
    check_descriptor(partition.data, "ingestion-decoded", f"/{data}")
    check_descriptor(partition.image, "build-train-decoded", f"/build-train-decoded:{code.split(':')[1]}")
    assert partition.image.commit == build.job_id and partition.code.author == USER
    assert (partition.hyperparams, partition.score) == (None, None)

    deployed = decode(GlobName, client.upload(f"inference/decoded/{model_id}", serve_zip(tmp_path)))
    endpoint = running_endpoint(client, "decoded")
    assert endpoint.name.startswith("serve-decoded-") and endpoint.url.endswith(f"/{endpoint.name}/invocations")
    assert endpoint.image == f"build-serve-decoded:{deployed.glob_name.split(':')[1]}" and endpoint.user == USER
    check_descriptor(endpoint.code, "source-serve-decoded", f"/{deployed.glob_name}")
    hex6 = model_id.split(":")[1]
    assert endpoint.model == ModelInfo(user=USER, commit_id=job.job_id, size=len(json.dumps({})),
                                       path=f"/{hex6}/model/model.txt", base_path=f"/{hex6}", model_id=model_id,
                                       created_at=endpoint.model.created_at)
    serve_builds = decode_response(EndpointListing, client.json("GET", "inference/decoded")).building
    assert serve_builds and all(build.progress.startswith("Progress: ") for build in serve_builds)
    assert client.json("DELETE", f"inference/{endpoint.name}") is None


# -- the journey ---------------------------------------------------------------------------------------------------
def test_a_1x_client_journey_decodes_every_answer(module_backend, tmp_path):
    client = Client1x(module_backend)
    ws = "journey"

    # workspaces
    info = create_workspace(client, ws)
    assert info.name == ws and f"source-train-{ws}" in info.repos and f"build-train-{ws}" in info.pipelines
    assert ws in decode(WorkspaceNames, client.json("GET", "workspace")).names
    assert decode_response(WorkspaceInfo, client.json("GET", f"workspace/{ws}")).name == ws
    client.error("POST", f"workspace/{ws}", 409, "WORKSPACE_EXISTS")
    assert listing(client, ws) == TrainJobListing([], [], [])

    # train with a grid: source, data, hyperparameters (the order of `kaos train deploy -s -d -h`)
    code = decode(GlobName, client.upload(f"train/{ws}", train_zip(tmp_path))).glob_name
    data = decode(GlobName, client.upload(f"data/{ws}/features", data_zip(tmp_path))).glob_name
    params = decode(ParamsGlob, client.upload(f"data/{ws}/params", json.dumps(GRID).encode(), parallelism=4))
    assert len(params.params) == 12 and params.params[0] == {"a": 1, "b": 1}
    inspect = decode(PipelineDefinition, client.json("GET", f"train/{ws}/inspect"))
    assert inspect.hyper_glob == f"/{params.glob_name}/*" and inspect.parallelism == 4
    assert inspect.output_branch == f"{code.split(':')[1]}_{data.split(':')[1]}_{params.glob_name}"

    job = finished_training(client, ws, hyperopt="True")
    assert job.state == "JOB_SUCCESS" and job.progress.startswith("Progress: 12 / 12")
    jobs = listing(client, ws)
    build_id = jobs.building[0].job_id

    # train info: pages of ten, sorted by a metric
    page_id, page_count, first = decode_paged(JobInfo, client.json("GET", f"train/{ws}/{job.job_id}",
                                                                   params={"sort_by": "score"}))
    assert (page_id, page_count, len(first.partitions)) == (0, 2, 10)
    assert [partition.score for partition in first.partitions[:2]] == ["34.0000", "33.0000"]
    _, _, second = decode_paged(JobInfo, client.json("GET", f"train/{ws}/{job.job_id}",
                                                     params={"sort_by": "score", "page_id": 1}))
    assert [partition.score for partition in second.partitions] == ["12.0000", "11.0000"]
    best = first.partitions[0]
    check_descriptor(best.hyperparams, f"hyper-{ws}", f"/{params.glob_name}/a=3_b=4.json")
    assert best.hyperparams.author == USER
    model_id = best.output.path
    client.error("GET", f"train/{ws}/{job.job_id}", 404, "METRIC_NOT_FOUND", params={"sort_by": "nothing"})
    client.error("GET", f"train/{ws}/{job.job_id}", 400, "PAGE_ERROR", params={"page_id": 2})
    client.error("GET", f"train/{ws}/{'0' * 32}", 404, "JOB_NOT_FOUND")

    # logs, bundle, provenance, kill of a finished job
    assert "trained" in decode(str, client.json("GET", f"train/{ws}/{job.job_id}/logs"))
    assert isinstance(decode(str, client.json("GET", f"train/{ws}/build/{build_id}/logs")), str)
    bundle = client.call("GET", f"train/{ws}/{job.job_id}/bundle",
                         params={"include_code": "True", "include_data": "False", "include_model": "True",
                                 "model_id": model_id})
    assert bundle.status_code == 200 and bundle.headers["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
    assert f"models/{model_id.split(':')[1]}/model/model.txt" in names and f"code/{code}/model/train" in names
    assert decode(str, client.json("GET", f"train/{ws}/{model_id}/provenance")).startswith("digraph")
    client.error("DELETE", f"train/{ws}/{job.job_id}", 400, "JOB_NOT_RUNNING")

    # serve: deploy with a model, list, logs, provenance, kill
    client.error("POST", f"inference/{ws}/{'1' * 5}_{'2' * 5}:abcdef", 404, "MODEL_NOT_FOUND",
                 files={"data": ("data", serve_zip(tmp_path / "unknown-model"), "text/plain")})
    serve = decode(GlobName, client.upload(f"inference/{ws}/{model_id}", serve_zip(tmp_path)))
    endpoint = running_endpoint(client, ws)
    assert endpoint.model.model_id == model_id and endpoint.model.size == len(json.dumps({"a": 3, "b": 4}))
    assert endpoint.code.path == f"/{serve.glob_name}"
    served = requests.get(f"{module_backend.root}/{endpoint.name}/invocations", timeout=30)
    assert served.json() == {"a": 3, "b": 4}
    serve_listing = decode_response(EndpointListing, client.json("GET", f"inference/{ws}"))
    serve_build = serve_listing.building[0].job_id
    assert isinstance(decode(str, client.json("GET", f"inference/{endpoint.name}/logs")), str)
    assert isinstance(decode(str, client.json("GET", f"inference/{ws}/{endpoint.name}/logs")), str)
    assert isinstance(decode(str, client.json("GET", f"inference/{ws}/build/{serve_build}/logs")), str)
    assert decode(str, client.json("GET", f"inference/{ws}/{endpoint.name}/provenance")).startswith("digraph")
    served_bundle = client.call("GET", f"inference/{ws}/{endpoint.name}/bundle")
    assert served_bundle.status_code == 200 and served_bundle.headers["Content-Type"] == "application/zip"
    assert client.json("DELETE", f"inference/{endpoint.name}") is None
    client.error("DELETE", f"inference/{endpoint.name}", 404, "PIPELINE_NOT_FOUND")
    assert decode_response(EndpointListing, client.json("GET", f"inference/{ws}")).endpoints == []

    # errors: 400, 401, 404
    client.error("POST", f"data/{ws}/features", 400, "INVALID_BUNDLE", params={"user": USER},
                 files={"data": ("data", b"not a zip", "text/plain")})
    client.error("POST", f"train/{ws}", 400, "INVALID_BUNDLE", params={"user": USER},
                 files={"data": ("data", data_zip(tmp_path / "not-source"), "text/plain")})
    assert Client1x(module_backend, token="").error("GET", "workspace", 401, "AUTHORIZATION_FAILURE").message == \
        "Authorization header not present in the request"
    assert Client1x(module_backend, token="wrong").error("GET", "workspace", 401, "AUTHORIZATION_FAILURE") \
        .message == "Unauthorized Token"

    # the workspace goes
    assert client.json("DELETE", f"workspace/{ws}") is None
    client.error("GET", f"workspace/{ws}", 404, "WORKSPACE_NOT_FOUND")
    client.error("GET", f"train/{ws}", 404, "WORKSPACE_NOT_FOUND")
    assert ws not in decode(WorkspaceNames, client.json("GET", "workspace")).names
    # every step above decoded at least one answer; waits add polls (how many depends on the machine's speed)
    assert client.answers >= 35, client.answers
