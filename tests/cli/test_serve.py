"""`kaos serve …` against the scripted HTTP server (the real backend's flows are the lead's end-to-end tests)."""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from kaos_cli import state
from kaos_cli.bundles import zip_directory
from tests.cli.conftest import one_line
from tests.support import answers

REPO = Path(__file__).resolve().parents[2]
ENDPOINT = "serve-mnist-0c9718"
MODEL = "e23a2_9fd9d:134639"
BUILD_JOB = "4f1d0e2c9b8a47e6a1c3d5e7f9a0b2c4"
NO_ENDPOINTS = "Warning - There are currently no running endpoints - first run kaos serve deploy"


@pytest.fixture
def serve_dir(tmp_path):
    root = tmp_path / "model-serve"
    (root / "mnist" / "model").mkdir(parents=True)
    (root / "mnist" / "Dockerfile").write_text("FROM python:3.11\n")
    (root / "mnist" / "model" / "serve").write_text("#!/usr/bin/env python\n")
    (root / "mnist" / "model" / "web-requirements.txt").write_text("flask\n")
    return root


def stderr_last(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    return result.stderr.splitlines()[-1]


# -- deploy ----------------------------------------------------------------------------------------------------
def test_deploy_with_a_model_as_in_the_seed(kaos, ws, serve_dir, terminal):
    model_path = "inference/mnist/e23a2_9fd9d%3A134639"  # the model id in the path (Flask decodes %3A)
    ws.route("POST", model_path, body={"glob_name": "mnist:93168", "endpoint": ENDPOINT, "job_id": BUILD_JOB})
    result = kaos("serve", "deploy", "-s", str(serve_dir), "-m", MODEL)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"""Info - Submitting source bundle: {serve_dir}
 \u2714 Adding trained model_id: {MODEL}
 \u2714 Setting source bundle: /mnist:93168
 \u2714 Building image: job {BUILD_JOB}
 \u2714 Endpoint: {ENDPOINT}

Info - Check its state and url with kaos serve list
"""
    assert "Compressing source bundle" in result.stderr and "Uploading source bundle" in result.stderr
    upload, = ws.requests_to("POST", model_path)
    assert upload.query == {"gpu": ["0"], "user": ["tester"]}
    assert upload.headers["content-type"] == "application/zip"
    assert sorted(zipfile.ZipFile(io.BytesIO(upload.body)).namelist()) == [
        "mnist/", "mnist/Dockerfile", "mnist/model/", "mnist/model/serve", "mnist/model/web-requirements.txt"]


def test_deploy_while_the_scheduler_is_down_warns_once_and_goes_on(kaos, ws, serve_dir):
    ws.route("GET", "health", 503, {
        "error_code": "PLATFORM_UNHEALTHY", "part": "scheduler", "status": "degraded", "version": "2.0.0",
        "message": "The kaos backend's scheduler is down (no heartbeat for 31 s)", "executor": "local",
        "parts": {"front": {"state": "up"}, "api": {"state": "up"}, "scheduler": {"state": "down"}}})
    ws.route("POST", "inference/mnist/None", body={"glob_name": "mnist:e39c0", "endpoint": "serve-mnist-53d3da",
                                                   "job_id": BUILD_JOB})
    result = kaos("serve", "deploy", "-s", str(serve_dir))
    assert result.exit_code == 0, result.output
    warning = ("Warning - The kaos backend's scheduler is down (no heartbeat for 31 s): see the kaos backend's log "
               "- the deploy goes on, and the job will start once the scheduler is back")
    assert [line for line in result.output.splitlines() if line.startswith("Warning - ")] == [warning]
    assert warning in result.stderr.splitlines()
    assert result.output.splitlines()[0] == warning  # before the upload
    paths = [(r.method, r.path) for r in ws.requests]
    assert paths.count(("GET", "/api/health")) == 1
    assert paths.index(("GET", "/api/health")) < paths.index(("POST", "/api/inference/mnist/None"))
    assert " \u2714 Endpoint: serve-mnist-53d3da" in result.stdout.splitlines()


def test_deploy_without_a_model_posts_none(kaos, ws, serve_dir):
    ws.route("POST", "inference/mnist/None", body={"glob_name": "mnist:e39c0", "endpoint": "serve-mnist-53d3da",
                                                   "job_id": None, "url": "localhost/serve-mnist-53d3da/invocations"})
    result = kaos("serve", "deploy", "-s", str(serve_dir), "--cpu", "0.5", "--memory", "1Gi", "--gpu", "1")
    assert result.exit_code == 0, result.output
    assert "Adding trained model_id" not in result.stdout and "Building image" not in result.stdout
    assert result.stdout.splitlines()[1:] == [
        " \u2714 Setting source bundle: /mnist:e39c0", " \u2714 Endpoint: serve-mnist-53d3da", "",
        "Info - Check its state with kaos serve list; it answers at localhost/serve-mnist-53d3da/invocations"]
    upload, = ws.requests_to("POST", "inference/mnist/None")
    assert upload.query == {"cpu": ["0.5"], "memory": ["1Gi"], "gpu": ["1"], "user": ["tester"]}


def test_deploy_skips_an_upload_the_backend_has(kaos, ws, serve_dir, tmp_path):
    digest = hashlib.sha256(zip_directory(serve_dir, tmp_path / "same.zip", progress=False).read_bytes()).hexdigest()
    ws.route("GET", f"blobs/{digest}", body={"digest": digest, "size": 1})
    ws.route("POST", "inference/mnist/None", body={"glob_name": "mnist:e39c0", "endpoint": "serve-mnist-53d3da"})
    result = kaos("serve", "deploy", "-s", str(serve_dir))
    assert result.exit_code == 0, result.output
    upload, = ws.requests_to("POST", "inference/mnist/None")
    assert upload.body == b"" and upload.query == {"digest": [digest], "gpu": ["0"], "user": ["tester"]}
    assert "Uploading source bundle" not in result.stderr


@pytest.mark.parametrize("status, code, message", [
    (404, "MODEL_NOT_FOUND", f"There is no model with id: {MODEL}"),
    (400, "INVALID_BUNDLE", "Missing file serve in model directory of source-code bundle"),
    (400, "MEMORY_REQUEST_ERROR", "Memory request 9Ti too high. Maximum allowed is 8Gi."),
])
def test_deploy_errors_are_one_line(kaos, ws, serve_dir, status, code, message):
    ws.route("POST", "inference/mnist/e23a2_9fd9d%3A134639", status, {"error_code": code, "message": message})
    result = kaos("serve", "deploy", "-s", str(serve_dir), "-m", MODEL)
    assert stderr_last(result) == f"Error - {message}"
    assert "\u2714" not in result.stdout


@pytest.mark.parametrize("typed", [MODEL + " ", f" {MODEL}", f"{MODEL}\t"])
def test_a_model_id_pasted_with_surrounding_whitespace_is_the_model_id(kaos, ws, serve_dir, typed):
    # `-m 'e23a2_9fd9d:134639 '` asked for the id with its space: "There is no model with id: e23a2_9fd9d:134639 "
    ws.route("POST", "inference/mnist/e23a2_9fd9d%3A134639",
             body={"glob_name": "mnist:93168", "job_id": BUILD_JOB, "endpoint": ENDPOINT})
    result = kaos("serve", "deploy", "-s", str(serve_dir), "-m", typed)
    assert result.exit_code == 0, result.output
    assert f"Adding trained model_id: {MODEL}\n" in result.stdout
    assert len(ws.requests_to("POST", "inference/mnist/e23a2_9fd9d%3A134639")) == 1


def test_names_given_with_surrounding_whitespace_are_the_names(kaos, ws):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/logs", body=json.dumps("[t] served"))
    ws.route("GET", f"inference/mnist/build/{BUILD_JOB}/logs", body=json.dumps("[t] built"))
    assert kaos("serve", "logs", "-e", f" {ENDPOINT} ").stdout == "[t] served\n"
    assert kaos("serve", "build-logs", "-j", f"{BUILD_JOB} ").stdout == "[t] built\n"


def test_deploy_usage(kaos, ws, tmp_path, serve_dir):
    missing = kaos("serve", "deploy")
    assert missing.exit_code == 2 and "Missing option '-s' / '--source_bundle'" in missing.output
    nowhere = kaos("serve", "deploy", "-s", str(tmp_path / "nowhere"))
    assert nowhere.exit_code == 2 and "does not exist" in nowhere.output
    assert one_line(kaos("serve", "deploy", "-s", str(serve_dir), "-m", " ")) == "Error - --model_id must not be empty"
    assert not [r for r in ws.requests if r.path.startswith("/api/inference")]


# -- list ------------------------------------------------------------------------------------------------------
def endpoint(name, state_="PIPELINE_RUNNING", created_at="Mon, 29 Jul 2019 15:45:39 GMT", user="jfriedman"):
    return {"name": name, "url": f"localhost/{name}/invocations", "user": user, "state": state_,
            "created_at": created_at, "code": answers.descriptor("/mnist:93168"), "image": "build-serve-mnist:93168",
            "model": answers.model_info(MODEL), "restarts": 0}


def test_list_as_in_the_seed(kaos, ws, project):
    ws.route("GET", "inference/mnist", body={"response": {"endpoints": [endpoint(ENDPOINT)], "building": []}})
    result = kaos("serve", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout == """\
+------------------------------------------------------------------------------------------------------------------------------------+
|                                                              RUNNING                                                               |
+-----+-------------------------------+--------------------+------------------+------------------------------------------+-----------+
| ind |           created_at          |        name        |      state       |                   url                    |    user   |
+-----+-------------------------------+--------------------+------------------+------------------------------------------+-----------+
|  0  | Mon, 29 Jul 2019 15:45:39 GMT | serve-mnist-0c9718 | PIPELINE_RUNNING | localhost/serve-mnist-0c9718/invocations | jfriedman |
+-----+-------------------------------+--------------------+------------------+------------------------------------------+-----------+
"""  # noqa: E501
    assert json.loads((project / ".kaos" / ".serve.cache").read_text()) == [ENDPOINT]
    assert json.loads((project / ".kaos" / ".build-serve.cache").read_text()) == []


def _header(table):
    return [cell.strip() for cell in table.splitlines()[3].split("|")[1:-1]]


def _column(table, name):
    rows = [line for line in table.splitlines()[5:] if line.startswith("|")]
    position = _header(table).index(name)
    return [row.split("|")[1:-1][position].strip() for row in rows]


def test_list_building_and_every_endpoint_newest_first(kaos, ws):
    endpoints = [endpoint("serve-mnist-aaaaaa", "PIPELINE_STARTING", "2024-01-03 10:00:00"),
                 endpoint("serve-mnist-bbbbbb", "PIPELINE_FAILURE", "2024-01-02 10:00:00"),
                 endpoint("serve-mnist-cccccc", "PIPELINE_RESTARTING", "2024-01-01 10:00:00")]
    building = [{"job_id": "b0", "state": "JOB_RUNNING", "started": "2024-01-03 10:00:00", "duration": 7,
                 "progress": "Progress: 0 / 1 (0%)"},
                {"job_id": "b1", "state": "JOB_FAILURE", "started": "2024-01-02 10:00:00", "duration": 3,
                 "progress": "Progress: 1 / 1 (100%)"}]
    ws.route("GET", "inference/mnist", body={"response": {"endpoints": endpoints, "building": building}})
    result = kaos("serve", "list")
    assert result.exit_code == 0, result.output
    building_table, running_table = result.stdout.rstrip("\n").split("\n\n")
    assert building_table.splitlines()[1].strip("| ") == "BUILDING"
    assert _header(building_table) == ["ind", "duration", "job_id", "started", "state"]
    assert _column(building_table, "job_id") == ["b0", "b1"] and "Progress" not in building_table
    assert running_table.splitlines()[1].strip("| ") == "RUNNING"
    assert _header(running_table) == ["ind", "created_at", "name", "state", "url", "user"]
    assert _column(running_table, "name") == ["serve-mnist-aaaaaa", "serve-mnist-bbbbbb", "serve-mnist-cccccc"]
    assert _column(running_table, "state") == ["PIPELINE_STARTING", "PIPELINE_FAILURE", "PIPELINE_RESTARTING"]
    assert _column(running_table, "ind") == ["0", "1", "2"]
    assert "build-serve-mnist" not in running_table and "restarts" not in running_table
    assert state.read_cache("serve") == ["serve-mnist-aaaaaa", "serve-mnist-bbbbbb", "serve-mnist-cccccc"]
    assert state.read_cache("build-serve") == ["b0", "b1"]


def test_list_empty(kaos, ws):
    state.write_cache("serve", ["stale"])
    ws.route("GET", "inference/mnist", body={"response": {"endpoints": [], "building": []}})
    result = kaos("serve", "list")
    assert result.exit_code == 0
    assert result.output.strip() == NO_ENDPOINTS
    assert state.read_cache("serve") == [] and state.read_cache("build-serve") == []


def test_list_error_and_guards(kaos, connected, project):
    assert one_line(kaos("serve", "list")) == "Warning - workspace not defined - first run kaos workspace set"
    with open(project / ".kaos" / "config", "a") as config:
        config.write("\n[workspace]\nname = mnist\n")
    connected.route("GET", "workspace", body={"names": ["mnist"]})
    connected.route("GET", "inference/mnist", 500, {"error_code": "STORE_ERROR", "message": "The store is locked"})
    assert one_line(kaos("serve", "list")) == "Error - The store is locked"


def test_requires_init(kaos, project):
    assert one_line(kaos("serve", "list")) == "Warning - .kaos directory does not exist - first run kaos init"


# -- indices and names -----------------------------------------------------------------------------------------
def test_index_messages_and_exclusive_options(kaos, ws):
    assert one_line(kaos("serve", "logs", "-i", "0")) == "Error - Index not available until running `kaos serve list`"
    assert one_line(kaos("serve", "build-logs", "-i", "0")) == \
        "Error - Index not available until running `kaos serve list`"
    ws.route("GET", "inference/mnist", body={"response": {"endpoints": [endpoint(ENDPOINT)],
                                                          "building": [answers.submission(BUILD_JOB)]}})
    kaos("serve", "list")
    assert one_line(kaos("serve", "get", "-i", "1")) == "Error - Index 1 does not exist... Run `kaos serve list` again"
    ws.route("GET", f"inference/mnist/{ENDPOINT}/logs", body=json.dumps("[t] served"))
    ws.route("GET", f"inference/mnist/build/{BUILD_JOB}/logs", body=json.dumps("[t] built"))
    assert kaos("serve", "logs", "-i", "0").stdout == "[t] served\n"
    assert kaos("serve", "build-logs", "-i", "0").stdout == "[t] built\n"
    assert one_line(kaos("serve", "kill")) == "Error - Missing either --endpoint or --ind as arguments"
    assert one_line(kaos("serve", "build-logs")) == "Error - Missing either --job_id or --ind as arguments"
    both = kaos("serve", "provenance", "-e", ENDPOINT, "-i", "0")
    assert both.exit_code == 2 and "Illegal usage: --endpoint is mutually exclusive with --ind" in both.output


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "a\\b"])
def test_endpoint_names_that_are_not_file_names(kaos, ws, name):
    for command in ("get", "logs", "provenance"):
        assert one_line(kaos("serve", command, "-e", name)) == f"Error - Invalid endpoint name {name!r}"
    assert not [r for r in ws.requests if r.path.startswith("/api/inference")]


# -- logs ------------------------------------------------------------------------------------------------------
LOG = ("[2019-07-29 15:45:49] ****** Start inference server (3 workers) ******\n"
       "[2019-07-29 15:45:55] FileNotFoundError: [Errno 2] No such file or directory: 'model.docx'")


def test_logs_printed_and_saved(kaos, ws, project):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/logs", body=json.dumps(LOG))
    result = kaos("serve", "logs", "-e", ENDPOINT)
    assert result.exit_code == 0
    assert result.stdout == LOG + "\n"
    assert result.stderr.splitlines() == [f"Info - Retrieving logs from {ENDPOINT}",
                                          f"Info - Log saved to mnist/logs/{ENDPOINT}.log"]
    assert (project / "mnist" / "logs" / f"{ENDPOINT}.log").read_text() == LOG + "\n"
    request, = ws.requests_to("GET", f"inference/mnist/{ENDPOINT}/logs")
    assert "follow" not in request.query


def test_logs_into_out_dir_which_must_exist(kaos, ws, tmp_path):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/logs", body=json.dumps("[t] a"))
    result = kaos("serve", "logs", "-e", ENDPOINT, "-o", str(tmp_path))
    assert result.exit_code == 0 and (tmp_path / "mnist" / "logs" / f"{ENDPOINT}.log").read_text() == "[t] a\n"
    missing = kaos("serve", "logs", "-e", ENDPOINT, "-o", str(tmp_path / "missing"))
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_logs_of_an_unknown_endpoint(kaos, ws, project):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/logs", 404,
             {"error_code": "PIPELINE_NOT_FOUND", "message": f"Pipeline {ENDPOINT} not found"})
    for follow in ((), ("-f",)):
        assert stderr_last(kaos("serve", "logs", "-e", ENDPOINT, *follow)) == \
            f"Error - Pipeline {ENDPOINT} not found"
    assert not (project / "mnist").exists()


def test_logs_of_an_endpoint_whose_build_failed_say_it_never_ran_and_where_to_look(kaos, ws, project):
    # it printed nothing and exited 0: the reason `kaos serve list` shows is the one line, exit 0 as for an empty list
    reason = f"the serve image could not be built: see kaos serve build-logs -j {BUILD_JOB}"
    ws.route("GET", "inference/mnist", body={"response": {"endpoints": [
        dict(endpoint(ENDPOINT, "PIPELINE_FAILURE"), reason=reason)], "building": []}})
    kaos("serve", "list")
    ws.route("GET", f"inference/mnist/{ENDPOINT}/logs", body=json.dumps(""))
    result = kaos("serve", "logs", "-i", "0")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.splitlines() == [f"Info - Retrieving logs from {ENDPOINT}",
                                          f"Warning - Endpoint {ENDPOINT} never ran: {reason}",
                                          f"Info - Log saved to mnist/logs/{ENDPOINT}.log"]


def test_an_empty_log_of_a_starting_endpoint_says_so(kaos, ws):
    ws.route("GET", "inference/mnist", body={"response": {"endpoints": [endpoint(ENDPOINT, "PIPELINE_STARTING")],
                                                          "building": []}})
    ws.route("GET", f"inference/mnist/{ENDPOINT}/logs", body=json.dumps(""))
    result = kaos("serve", "logs", "-e", ENDPOINT)
    assert result.exit_code == 0 and result.stdout == ""
    assert f"Warning - Endpoint {ENDPOINT} has written no log yet (PIPELINE_STARTING)" in result.stderr.splitlines()


def _streamed(chunks):
    def answer(request):
        assert request.query.get("follow") == ["true"]
        return 200, iter(chunks), "text/plain"
    return answer


def test_follow_until_the_endpoint_is_killed(kaos, ws, project):
    ws.handle("GET", f"inference/mnist/{ENDPOINT}/logs", _streamed(["[t] one\n[t] t", "wo\n", "[t] killed\n"]))
    result = kaos("serve", "logs", "-e", ENDPOINT, "-f")
    assert result.exit_code == 0, result.output
    assert result.stdout == "[t] one\n[t] two\n[t] killed\n"
    assert (project / "mnist" / "logs" / f"{ENDPOINT}.log").read_text() == "[t] one\n[t] two\n[t] killed\n"
    assert not [r for r in ws.requests if r.path.startswith("/api/job/")]  # an endpoint has no final state


def test_follow_ends_quietly_on_ctrl_c(ws, project):
    """A real `kaos serve logs -f` process, interrupted with SIGINT while the stream is open."""
    release = threading.Event()

    def endless(request):
        def chunks():
            yield "[t] listening\n"
            release.wait(60)
        return 200, chunks(), "text/plain"

    ws.handle("GET", f"inference/mnist/{ENDPOINT}/logs", endless)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, "-m", "kaos_cli", "serve", "logs", "-e", ENDPOINT, "-f"],
                               cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "[t] listening\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out == "" and "Aborted" not in err and "Traceback" not in err
    assert err.splitlines()[-1] == f"Info - Log saved to mnist/logs/{ENDPOINT}.log"
    assert (project / "mnist" / "logs" / f"{ENDPOINT}.log").read_text() == "[t] listening\n"


def test_ctrl_c_while_following_a_train_job_still_aborts(kaos, ws, monkeypatch):
    """Only an endpoint's follow treats Ctrl-C as the normal way out."""
    from kaos_cli.client import KaosClient

    def interrupted(self, workspace, job_id, follow=False):
        yield "[t] one"
        raise KeyboardInterrupt

    monkeypatch.setattr(KaosClient, "train_logs", interrupted)
    monkeypatch.setattr(KaosClient, "serve_logs", interrupted)
    train = kaos("train", "logs", "-j", BUILD_JOB, "-f")
    assert train.exit_code == 1 and train.stderr.splitlines()[-1] == "Aborted!"
    served = kaos("serve", "logs", "-e", ENDPOINT, "-f")
    assert served.exit_code == 0 and served.stdout == "[t] one\n" and "Aborted" not in served.output


# -- build-logs ------------------------------------------------------------------------------------------------
def test_build_logs_saved(kaos, ws, project):
    ws.route("GET", f"inference/mnist/build/{BUILD_JOB}/logs", body=json.dumps("[t] returned a non-zero code: 1"))
    result = kaos("serve", "build-logs", "-j", BUILD_JOB)
    assert result.exit_code == 0
    assert result.stdout == "[t] returned a non-zero code: 1\n"
    assert f"Info - Retrieving build logs from {BUILD_JOB}" in result.stderr
    assert (project / "mnist" / "logs" / f"build-serve-{BUILD_JOB}.log").read_text() == \
        "[t] returned a non-zero code: 1\n"


@pytest.mark.parametrize("final, code", [("JOB_SUCCESS", 0), ("JOB_FAILURE", 1), ("JOB_KILLED", 1),
                                         ("JOB_RUNNING", 1)])
def test_build_logs_follow_exits_by_the_build_state(kaos, ws, project, final, code):
    ws.handle("GET", f"inference/mnist/build/{BUILD_JOB}/logs", _streamed(["[t] building\n", "[t] done\n"]))
    ws.route("GET", f"job/mnist/{BUILD_JOB}", body=answers.job_record(BUILD_JOB, final, "build-serve"))
    result = kaos("serve", "build-logs", "-j", BUILD_JOB, "-f")
    assert result.exit_code == code
    assert result.stdout == "[t] building\n[t] done\n"
    assert (project / "mnist" / "logs" / f"build-serve-{BUILD_JOB}.log").read_text() == "[t] building\n[t] done\n"
    if final in ("JOB_FAILURE", "JOB_KILLED"):
        assert stderr_last(result) == f"Error - Job {BUILD_JOB} ended in state {final}"
    elif code:
        assert stderr_last(result) == \
            f"Error - The log stream of job {BUILD_JOB} ended while the job is JOB_RUNNING"


# -- get -------------------------------------------------------------------------------------------------------
def zip_bytes(members) -> bytes:
    """A zip of `{name: bytes}` (names ending in / are directories); `serve` files are executable."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            entry = zipfile.ZipInfo(name)
            entry.create_system = 3
            mode = 0o40755 if name.endswith("/") else 0o100755 if name.endswith("/serve") else 0o100644
            entry.external_attr = mode << 16
            archive.writestr(entry, content)
    return buffer.getvalue()


BUNDLE = {
    "code/": b"",
    "code/mnist:93168/": b"",
    "code/mnist:93168/Dockerfile": b"FROM python:3.11\n",
    "code/mnist:93168/model/serve": b"#!/usr/bin/env python\n",
    "code/mnist:93168/model/model.pkl": b"\x80\x04pickled model" * 1000,
}


def test_get_extracts_the_bundle(kaos, ws, project, terminal):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/bundle", body=zip_bytes(BUNDLE), content_type="application/zip")
    result = kaos("serve", "get", "-e", ENDPOINT)
    assert result.exit_code == 0, result.output
    target = Path("mnist") / ENDPOINT
    assert result.stdout == f"Info - Extracting serve bundle: {target}\n"
    assert "Downloading serve bundle" in result.stderr
    code = project / target / "code" / "mnist:93168"
    assert (code / "model" / "model.pkl").read_bytes() == BUNDLE["code/mnist:93168/model/model.pkl"]
    assert (code / "Dockerfile").read_text() == "FROM python:3.11\n"
    assert os.access(code / "model" / "serve", os.X_OK) and not os.access(code / "Dockerfile", os.X_OK)


def test_get_into_out_dir_by_index(kaos, ws, tmp_path):
    state.write_cache("serve", ["other", ENDPOINT])
    ws.route("GET", f"inference/mnist/{ENDPOINT}/bundle", body=zip_bytes(BUNDLE), content_type="application/zip")
    result = kaos("serve", "get", "-i", "1", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mnist" / ENDPOINT / "code" / "mnist:93168" / "model" / "model.pkl").is_file()
    missing = kaos("serve", "get", "-e", ENDPOINT, "-o", str(tmp_path / "missing"))
    assert missing.exit_code == 2 and "does not exist" in missing.output


@pytest.mark.parametrize("evil", ["../x", "code/../../x", "/tmp/kaos-evil-x", "..\\x"])
def test_get_refuses_a_member_outside_the_target(kaos, ws, project, evil):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/bundle", body=zip_bytes(dict(BUNDLE, **{evil: b"gotcha"})),
             content_type="application/zip")
    result = kaos("serve", "get", "-e", ENDPOINT)
    assert stderr_last(result) == (f"Error - Refused the serve bundle of {ENDPOINT}: its member {evil!r} would be "
                                   f"written outside {Path('mnist') / ENDPOINT} (nothing was extracted)")
    assert not (project / "mnist" / ENDPOINT).exists()
    assert not (project / "mnist" / "x").exists() and not (project / "x").exists()
    assert not Path("/tmp/kaos-evil-x").exists()


def test_get_of_a_damaged_zip(kaos, ws, project):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/bundle", body=b"not a zip", content_type="application/zip")
    assert stderr_last(kaos("serve", "get", "-e", ENDPOINT)).startswith(
        f"Error - The serve bundle of {ENDPOINT} is not a valid zip archive")
    assert not (project / "mnist" / ENDPOINT).exists()


def test_get_of_an_unknown_endpoint(kaos, ws):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/bundle", 404,
             {"error_code": "PIPELINE_NOT_FOUND", "message": f"Pipeline {ENDPOINT} not found"})
    assert one_line(kaos("serve", "get", "-e", ENDPOINT)) == f"Error - Pipeline {ENDPOINT} not found"


# -- provenance ------------------------------------------------------------------------------------------------
DOT = 'digraph provenance {\n  "source-serve-mnist" -> "build-serve-mnist";\n}'
FAKE_DOT = r"""#!/bin/sh
# a stand-in for graphviz: dot -Tpdf <in> -o <out>
echo "$@" > "$(dirname "$0")/args"
[ -n "$FAIL" ] && { echo "Error: <stdin>: syntax error in line 1" >&2; exit 1; }
out=""; src=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    -T*) shift ;;
    *) src="$1"; shift ;;
  esac
done
{ printf '%%PDF-1.4 fake\n'; cat "$src"; } > "$out"
"""


@pytest.fixture
def fake_dot(tmp_path, monkeypatch):
    """A `dot` program first on PATH; returns its directory (it writes its arguments to `args` there)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "dot"
    program.write_text(FAKE_DOT)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.delenv("FAIL", raising=False)
    return bin_dir


@pytest.fixture
def no_dot(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_provenance_without_graphviz_keeps_the_dot_file(kaos, ws, project, no_dot):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/provenance", body=json.dumps(DOT))
    result = kaos("serve", "provenance", "-e", ENDPOINT)
    assert result.exit_code == 0, result.output
    dot_file = Path("mnist") / "provenance" / f"{ENDPOINT}.dot"
    assert result.stdout.splitlines() == [
        f"Info - Retrieving provenance from {ENDPOINT}",
        f"Info - Provenance saved to {dot_file} (install graphviz to render it as PDF)"]
    assert (project / dot_file).read_text() == DOT + "\n"
    assert not (project / "mnist" / "provenance" / f"{ENDPOINT}.pdf").exists()


def test_provenance_rendered_by_dot(kaos, ws, project, fake_dot, tmp_path):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/provenance", body=json.dumps(DOT))
    out = tmp_path / "not-yet" / "there"
    state.write_cache("serve", [ENDPOINT])
    result = kaos("serve", "provenance", "-i", "0", "-o", str(out))
    assert result.exit_code == 0, result.output
    directory = out / "mnist" / "provenance"
    assert result.stdout.splitlines()[-1] == f"Info - Provenance saved to {directory / (ENDPOINT + '.pdf')}"
    assert (directory / f"{ENDPOINT}.dot").read_text() == DOT + "\n"
    assert (directory / f"{ENDPOINT}.pdf").read_text() == "%PDF-1.4 fake\n" + DOT + "\n"
    assert (fake_dot / "args").read_text().split() == [
        "-Tpdf", str(directory / f"{ENDPOINT}.dot"), "-o", str(directory / f"{ENDPOINT}.pdf")]


def test_provenance_when_dot_fails(kaos, ws, project, fake_dot, monkeypatch):
    (project / "mnist" / "provenance").mkdir(parents=True)
    stale_pdf = project / "mnist" / "provenance" / f"{ENDPOINT}.pdf"
    stale_pdf.write_text("an older graph")
    monkeypatch.setenv("FAIL", "1")
    ws.route("GET", f"inference/mnist/{ENDPOINT}/provenance", body=json.dumps(DOT))
    result = kaos("serve", "provenance", "-e", ENDPOINT)
    assert result.exit_code == 0, result.output
    assert result.stderr == "Warning - dot could not render it: Error: <stdin>: syntax error in line 1\n"
    assert result.stdout.splitlines()[-1] == \
        f"Info - Provenance saved to {Path('mnist') / 'provenance' / (ENDPOINT + '.dot')}"
    assert not stale_pdf.exists()


def test_provenance_of_a_model_less_endpoint(kaos, ws, project, no_dot):
    ws.route("GET", f"inference/mnist/{ENDPOINT}/provenance", 404,
             {"error_code": "ALIEN_PROVENANCE_ERROR", "message": "Unable to determine provenance with external model"})
    result = kaos("serve", "provenance", "-e", ENDPOINT)
    assert stderr_last(result) == "Error - Unable to determine provenance with external model"
    assert not (project / "mnist").exists()


# -- kill ------------------------------------------------------------------------------------------------------
def test_kill_after_confirmation(kaos, ws):
    ws.route("DELETE", f"inference/mnist/{ENDPOINT}", body=None)
    state.write_cache("serve", [ENDPOINT])
    state.write_cache("build-serve", [BUILD_JOB])
    result = kaos("serve", "kill", "-e", ENDPOINT, input="y\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"Warning - Are you sure about killing endpoint {ENDPOINT}? [y/N]: y\n"
                             f"Info - Successfully killed endpoint {ENDPOINT}\n")
    assert len(ws.requests_to("DELETE", f"inference/mnist/{ENDPOINT}")) == 1
    assert state.read_cache("serve") is None and state.read_cache("build-serve") == [BUILD_JOB]


def test_kill_aborted(kaos, ws):
    result = kaos("serve", "kill", "-e", ENDPOINT, input="n\n")
    assert result.exit_code == 1
    assert result.stderr == f"Info - Kill of endpoint {ENDPOINT} aborted\n"
    assert not ws.requests_to("DELETE", f"inference/mnist/{ENDPOINT}")


def test_kill_by_index_without_prompt(kaos, ws):
    ws.route("DELETE", f"inference/mnist/{ENDPOINT}", body=None)
    state.write_cache("serve", [ENDPOINT])
    result = kaos("serve", "kill", "-i", "0", "-y")
    assert result.exit_code == 0 and result.output == f"Info - Successfully killed endpoint {ENDPOINT}\n"


def test_kill_of_an_unknown_endpoint(kaos, ws):
    ws.route("DELETE", f"inference/mnist/{ENDPOINT}", 404,
             {"error_code": "PIPELINE_NOT_FOUND", "message": f"Pipeline {ENDPOINT} not found"})
    assert one_line(kaos("serve", "kill", "-e", ENDPOINT, "--yes")) == f"Error - Pipeline {ENDPOINT} not found"


def test_list_reason_is_empty_for_the_endpoints_without_one(kaos, ws):
    # a literal `None` stood in the reason cell of every healthy endpoint once one had a reason
    endpoints = [endpoint("serve-mnist-aaaaaa"),
                 dict(endpoint("serve-mnist-bbbbbb", "PIPELINE_FAILURE"), reason="the image build failed"),
                 dict(endpoint("serve-mnist-cccccc"), reason=None)]
    ws.route("GET", "inference/mnist", body={"response": {"endpoints": endpoints, "building": [
        {"job_id": "b0", "state": "JOB_FAILURE", "started": "2024-01-02 10:00:00", "duration": 3, "reason": "exit 1",
         "progress": "Progress: 1 / 1 (100%)"},
        {"job_id": "b1", "state": "JOB_SUCCESS", "started": "2024-01-01 10:00:00", "duration": 3,
         "progress": "Progress: 1 / 1 (100%)"}]}})
    result = kaos("serve", "list")
    assert result.exit_code == 0, result.output
    building_table, running_table = result.stdout.rstrip("\n").split("\n\n")
    assert _column(running_table, "reason") == ["", "the image build failed", ""]
    assert _column(building_table, "reason") == ["exit 1", ""]
    assert "None" not in result.stdout
