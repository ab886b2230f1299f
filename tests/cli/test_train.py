"""`kaos train …` against the scripted HTTP server (the real backend's flows are the lead's end-to-end tests)."""
import io
import json
import zipfile

import pytest

from kaos_cli import state
from tests.support import answers
from tests.cli.conftest import one_line

JSON = "application/json"
JOB = "8811746e3f6343d1bd6f3d520f7a54d0"
BUILD_JOB = "7a74b6974ba346238baf0a5f397774df"
NOTHING = ("Warning - --source_bundle and/or --data_bundle or --data_manifest and/or --hyperparams need to be "
           "defined for training")


def posts(server):
    """(method, path) of every request except the guards' workspace listing, the deploy's health check and the
    blob checks."""
    return [(r.method, r.path[len("/api/"):]) for r in server.requests
            if r.path not in ("/api/workspace", "/api/health") and not r.path.startswith("/api/blobs/")]


@pytest.fixture
def source_dir(tmp_path):
    root = tmp_path / "model-train"
    (root / "mnist" / "model").mkdir(parents=True)
    (root / "mnist" / "Dockerfile").write_text("FROM python:3.11\n")
    (root / "mnist" / "model" / "train").write_text("#!/usr/bin/env python\n")
    return root


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "features" / "training").mkdir(parents=True)
    (root / "features" / "training" / "x.csv").write_text("1,2\n")
    return root


def inspect_reply(image_state="building", image=None, data_glob="/features:9fd9d", hyper_glob="/params.null"):
    return answers.inspect_answer(image_state, image, data_glob or "/data:null", hyper_glob)


# -- deploy ----------------------------------------------------------------------------------------------------
def test_deploy_source_only(kaos, ws, source_dir, terminal):
    ws.route("POST", "train/mnist", body={"glob_name": "mnist:17127", "job_id": BUILD_JOB})
    ws.route("GET", "train/mnist/inspect", body=inspect_reply(data_glob="/features:9fd9d"))
    result = kaos("train", "deploy", "-s", str(source_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"""Info - Submitting source bundle: {source_dir}
 \u2714 Setting source bundle: /mnist:17127
 \u2714 Building image: job {BUILD_JOB}

CURRENT TRAINING INPUTS

+------------+-----------------+-------------+
|   Image    |       Data      | Hyperparams |
+------------+-----------------+-------------+
|     \u2a02      |        \u2714        |      \u2717      |
| <building> | /features:9fd9d |             |
+------------+-----------------+-------------+
"""
    assert "Compressing source bundle" in result.stderr and "Uploading source bundle" in result.stderr
    assert posts(ws) == [("POST", "train/mnist"), ("GET", "train/mnist/inspect")]  # no `{}` params post
    upload, = ws.requests_to("POST", "train/mnist")
    assert upload.query == {"gpu": ["0"], "user": ["tester"]}
    assert sorted(zipfile.ZipFile(io.BytesIO(upload.body)).namelist()) == [
        "mnist/", "mnist/Dockerfile", "mnist/model/", "mnist/model/train"]


def test_deploy_source_data_and_hyperparams(kaos, ws, source_dir, data_dir, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"kernel": ["poly", "rbf"], "degree": [3, 5]}))
    grid = [{"kernel": k, "degree": d} for k in ("poly", "rbf") for d in (3, 5)]
    ws.route("POST", "train/mnist", body={"glob_name": "mnist:1909d", "job_id": None})
    ws.route("POST", "data/mnist/features", body={"glob_name": "features:9fd9d"})
    ws.route("POST", "data/mnist/params", body={"glob_name": "3fbf2", "params": grid})
    ws.route("GET", "train/mnist/inspect", body=inspect_reply("ready", "build-train-mnist:1909d",
                                                              hyper_glob="/3fbf2/*"))
    result = kaos("train", "deploy", "-s", str(source_dir), "-d", str(data_dir), "-h", str(params), "-p", "2",
                  "--cpu", "0.5", "--memory", "1Gi")
    assert result.exit_code == 0, result.output
    assert posts(ws) == [("POST", "train/mnist"), ("POST", "data/mnist/features"), ("POST", "data/mnist/params"),
                         ("GET", "train/mnist/inspect")]
    resources = {"cpu": ["0.5"], "memory": ["1Gi"], "gpu": ["0"], "user": ["tester"]}
    follows = dict(resources, inputs_follow=["true"])  # every upload but the last: more inputs of this deploy follow
    assert ws.requests_to("POST", "train/mnist")[0].query == follows
    assert ws.requests_to("POST", "data/mnist/features")[0].query == follows
    hyper, = ws.requests_to("POST", "data/mnist/params")
    assert hyper.query == dict(resources, parallelism=["2"]) and hyper.body == params.read_bytes()
    assert result.stdout == f"""Info - Submitting source bundle: {source_dir}
 \u2714 Setting source bundle: /mnist:1909d

Info - Submitting data bundle: {data_dir}
 \u2714 Setting data bundle: /features:9fd9d

Info - Submitting hyperparams bundle: {params}
 \u2714 Setting hyperparameters bundle: /3fbf2/*

CURRENT HYPERPARAMETERS (4)

+-----+--------+--------+
| ind | kernel | degree |
+-----+--------+--------+
|  0  |  poly  |   3    |
|  1  |  poly  |   5    |
|  2  |  rbf   |   3    |
|  3  |  rbf   |   5    |
+-----+--------+--------+

CURRENT TRAINING INPUTS

+-------------------------+-----------------+-------------+
|          Image          |       Data      | Hyperparams |
+-------------------------+-----------------+-------------+
|            \u2714            |        \u2714        |      \u2714      |
| build-train-mnist:1909d | /features:9fd9d |   /3fbf2/*  |
+-------------------------+-----------------+-------------+
"""


@pytest.mark.parametrize("image_state", ["none", "failed"])
def test_inputs_without_an_image_or_data(kaos, ws, tmp_path, image_state):
    params = tmp_path / "params.json"
    params.write_text('{"lr": [0.1]}')
    ws.route("POST", "data/mnist/params", body={"glob_name": "abcde", "params": [{"lr": 0.1}]})
    ws.route("GET", "train/mnist/inspect", body=inspect_reply(image_state, "build-train-mnist:1909d",
                                                              data_glob=None, hyper_glob="/abcde/*"))
    result = kaos("train", "deploy", "-h", str(params))
    assert result.exit_code == 0, result.output
    table = result.stdout.split("CURRENT TRAINING INPUTS\n\n")[1]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert [cell.strip() for cell in rows[1].split("|")[1:-1]] == ["\u2717", "\u2717", "\u2714"]
    assert "/abcde/*" in rows[2] and "build-train" not in table


def test_deploy_manifest(kaos, ws, tmp_path):
    manifest = tmp_path / "data.mf"
    manifest.write_text('{"url": "https://example.com/a.csv", "path": "training/a.csv"}\n\n')
    ws.route("POST", "data/mnist/manifest", body={"glob_name": "manifest:ab12c"})
    ws.route("GET", "train/mnist/inspect", body=inspect_reply("none", data_glob="/manifest:ab12c"))
    result = kaos("train", "deploy", "-m", str(manifest))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Info - Submitting data manifest bundle: {manifest}\n"
                                    " \u2714 Setting data manifest bundle: /manifest:ab12c\n\n")
    upload, = ws.requests_to("POST", "data/mnist/manifest")
    assert upload.body == manifest.read_bytes() and upload.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("text", ['{"url": "https://e.com/a"}\n', "not json\n", '["url", "path"]\n',
                                  pytest.param("[" * 100000 + "]" * 100000 + "\n", id="nested too deeply")])
def test_invalid_manifest_is_refused_before_any_upload(kaos, ws, tmp_path, source_dir, text):
    manifest = tmp_path / "data.mf"
    manifest.write_text('{"url": "https://e.com/a", "path": "a"}\n' + text)
    assert one_line(kaos("train", "deploy", "-s", str(source_dir), "-m", str(manifest))) == (
        "Error - The manifest file is invalid: line 2 is not a JSON object with `url` and `path`")
    assert ws.requests == []


@pytest.mark.parametrize("text, problem", [
    ("{not json", "is not valid JSON"),
    ('["lr"]', "must hold a JSON object of non-empty lists"),
    ('{"lr": []}', "must hold a JSON object of non-empty lists"),
    pytest.param("[" * 100000 + "]" * 100000, "is not valid JSON: nested too deeply", id="nested too deeply"),
])
def test_bad_hyperparams_file_is_refused_before_any_upload(kaos, ws, tmp_path, source_dir, text, problem):
    params = tmp_path / "params.json"
    params.write_text(text)
    message = one_line(kaos("train", "deploy", "-s", str(source_dir), "-h", str(params)))
    assert message.startswith(f"Error - The hyperparameters file {params} ") and problem in message
    assert ws.requests == []


def test_empty_hyperparams_clear_them(kaos, ws, tmp_path):
    params = tmp_path / "params.json"
    params.write_text("{}")
    ws.route("POST", "data/mnist/params", body={"glob_name": "params.null", "params": []})
    ws.route("GET", "train/mnist/inspect", body=inspect_reply("none", data_glob=None))
    result = kaos("train", "deploy", "-h", str(params))
    assert result.exit_code == 0, result.output
    assert " \u2714 Setting hyperparameters bundle: /params.null (no hyperparameters)" in result.stdout
    assert "CURRENT HYPERPARAMETERS" not in result.stdout


def test_data_bundle_and_manifest_are_exclusive(kaos, ws, data_dir, tmp_path):
    manifest = tmp_path / "data.mf"
    manifest.write_text("")
    result = kaos("train", "deploy", "-d", str(data_dir), "-m", str(manifest))
    assert result.exit_code == 2
    assert "Illegal usage: `data_bundle` is mutually exclusive with arguments `data_manifest`." in result.output
    assert ws.requests == []


def test_nothing_to_deploy(kaos, ws):
    assert one_line(kaos("train", "deploy")) == NOTHING
    assert one_line(kaos("train", "deploy", "-p", "2", "--cpu", "1")) == NOTHING
    assert ws.requests == []


def test_parallelism_without_hyperparams_is_ignored(kaos, ws, data_dir):
    ws.route("POST", "data/mnist/features", body={"glob_name": "features:9fd9d"})
    ws.route("GET", "train/mnist/inspect", body=inspect_reply("none"))
    result = kaos("train", "deploy", "-d", str(data_dir), "-p", "3")
    assert result.exit_code == 0, result.output
    assert "Warning - --parallelism applies to --hyperparams only; ignored" in result.stderr
    assert not ws.requests_to("POST", "data/mnist/params")


UNHEALTHY = {"error_code": "PLATFORM_UNHEALTHY", "part": "scheduler", "status": "degraded", "version": "2.0.0",
             "message": "The kaos backend's scheduler is down (killed by signal 9 (SIGKILL), restarting)",
             "executor": "local", "parts": {"front": {"state": "up"}, "api": {"state": "up"},
                                            "scheduler": {"state": "down", "heartbeat_age": 42.0}}}
SCHEDULER_DOWN = ("Warning - The kaos backend's scheduler is down (killed by signal 9 (SIGKILL), restarting): see "
                  "the kaos backend's log - the deploy goes on, and the job will start once the scheduler is back")


def test_deploy_while_the_scheduler_is_down_warns_once_and_goes_on(kaos, ws, source_dir, data_dir):
    ws.route("GET", "health", 503, UNHEALTHY)
    ws.route("POST", "train/mnist", body={"glob_name": "mnist:17127", "job_id": BUILD_JOB})
    ws.route("POST", "data/mnist/features", body={"glob_name": "features:9fd9d"})
    ws.route("GET", "train/mnist/inspect", body=inspect_reply())
    result = kaos("train", "deploy", "-s", str(source_dir), "-d", str(data_dir))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning - ")]
    assert warnings == [SCHEDULER_DOWN]
    assert SCHEDULER_DOWN in result.stderr.splitlines()
    assert result.output.splitlines()[0] == SCHEDULER_DOWN  # before the first upload
    paths = [(r.method, r.path) for r in ws.requests if not r.path.startswith("/api/blobs/")]
    assert paths.count(("GET", "/api/health")) == 1
    assert paths.index(("GET", "/api/health")) < paths.index(("POST", "/api/train/mnist"))
    assert posts(ws) == [("POST", "train/mnist"), ("POST", "data/mnist/features"), ("GET", "train/mnist/inspect")]


@pytest.mark.parametrize("status, body", [(200, {"status": "ok", "version": "2.0.0", "executor": "local",
                                                 "parts": {}}),
                                          (404, {"error_code": "NOT_FOUND", "message": "No route /api/health"})])
def test_deploy_with_a_healthy_backend_or_one_without_health_says_nothing_more(kaos, ws, source_dir, status, body):
    ws.route("GET", "health", status, body)
    ws.route("POST", "train/mnist", body={"glob_name": "mnist:17127", "job_id": None})
    ws.route("GET", "train/mnist/inspect", body=inspect_reply())
    result = kaos("train", "deploy", "-s", str(source_dir))
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output and len(ws.requests_to("GET", "health")) == 1


def test_upload_refused_is_one_line(kaos, ws, source_dir):
    ws.route("POST", "train/mnist", 400, {"error_code": "INVALID_BUNDLE",
                                          "message": "Missing file requirements.txt in model directory"})
    result = kaos("train", "deploy", "-s", str(source_dir))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == "Error - Missing file requirements.txt in model directory"
    assert not ws.requests_to("GET", "train/mnist/inspect")


def test_missing_directories_are_usage_errors(kaos, ws, tmp_path):
    result = kaos("train", "deploy", "-s", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "does not exist" in result.output


# -- guards ----------------------------------------------------------------------------------------------------
def test_guards(kaos, connected, project):
    assert one_line(kaos("train", "list")) == "Warning - workspace not defined - first run kaos workspace set"
    with open(project / ".kaos" / "config", "a") as config:
        config.write("\n[workspace]\nname = gone\n")
    connected.route("GET", "workspace", body={"names": ["mnist"]})
    assert one_line(kaos("train", "info", "-j", JOB)).startswith("Warning - Workspace gone has been deleted/killed.")


def test_requires_init(kaos, project):
    assert one_line(kaos("train", "kill", "-j", JOB)) == \
        "Warning - .kaos directory does not exist - first run kaos init"


# -- list ------------------------------------------------------------------------------------------------------
def submission(job_id, state="JOB_SUCCESS", started="2019-07-29 15:25:45", duration=1, **extra):
    return answers.submission(job_id, state, started, duration, **extra)


def test_list_empty(kaos, ws, project):
    state.write_cache("train", ["stale"])
    ws.route("GET", "train/mnist", body={"response": {"training": [], "building": [], "ingesting": []}})
    result = kaos("train", "list")
    assert result.exit_code == 0
    assert result.output.strip() == "Warning - There are currently no training jobs - first run kaos train deploy"
    assert state.read_cache("train") == [] and state.read_cache("build-train") == []


def test_list_training_table_as_in_the_docs(kaos, ws):
    ws.route("GET", "train/mnist", body={"response": {
        "training": [submission(JOB, "JOB_FAILURE", "Mon, 29 Jul 2019 15:25:45 GMT", 1, hyperopt="False",
                                progress="Progress: 0 / 1 (0%)\n1 failed")],
        "building": [], "ingesting": []}})
    result = kaos("train", "list")
    assert result.exit_code == 0
    assert result.stdout == """\
+------------------------------------------------------------------------------------------------------------+
|                                                  TRAINING                                                  |
+-----+----------+----------+----------------------------------+-------------------------------+-------------+
| ind | duration | hyperopt |              job_id              |            started            |    state    |
+-----+----------+----------+----------------------------------+-------------------------------+-------------+
|  0  |    1     |  False   | 8811746e3f6343d1bd6f3d520f7a54d0 | Mon, 29 Jul 2019 15:25:45 GMT | JOB_FAILURE |
+-----+----------+----------+----------------------------------+-------------------------------+-------------+
"""


def test_list_all_tables_with_indices_and_caches(kaos, ws, project):
    training = [submission(f"t{n}", "JOB_RUNNING" if n == 0 else "JOB_SUCCESS", f"2024-01-0{3 - n} 10:00:00",
                           hyperopt="True", progress="Progress: 1 / 2 (50%)\n0 failed") for n in range(3)]
    building = [submission("b0", "JOB_STARTING"), submission("b1", "JOB_FAILURE"), submission("b2")]
    ingesting = [submission("i0", "JOB_RUNNING", progress="Progress: 1 / 4 (25%)\n0 failed")]
    ws.route("GET", "train/mnist", body={"response": {"training": training, "building": building,
                                                      "ingesting": ingesting}})
    result = kaos("train", "list")
    assert result.exit_code == 0, result.output
    out = result.stdout
    titles = [line.strip("| ") for line in out.splitlines() if line.strip("| ") in ("INGESTING", "BUILDING",
                                                                                     "TRAINING")]
    assert titles == ["INGESTING", "BUILDING", "TRAINING"]
    ingesting_table, building_table, training_table = out.split("\n\n")

    def header(table):
        return [cell.strip() for cell in table.splitlines()[3].split("|")[1:-1]]

    def column(table, name):
        rows = [line for line in table.splitlines()[5:] if line.startswith("|")]
        position = header(table).index(name)
        return [cell for cell in (row.split("|")[1:-1][position].strip() for row in rows)]

    assert header(ingesting_table) == ["ind", "duration", "job_id", "progress", "started", "state"]
    assert "Progress: 1 / 4 (25%)" in ingesting_table and "0 failed" in ingesting_table
    assert header(building_table) == ["ind", "duration", "job_id", "started", "state"]
    assert column(building_table, "job_id") == ["b0", "b1", "b2"]
    assert column(building_table, "ind") == ["0", "1", "2"]
    assert column(building_table, "state") == ["JOB_STARTING", "JOB_FAILURE", "JOB_SUCCESS"]
    assert header(training_table) == ["ind", "duration", "hyperopt", "job_id", "started", "state"]
    assert column(training_table, "job_id") == ["t0", "t1", "t2"]  # newest first, as the backend sent them
    assert "Progress" not in training_table
    assert state.read_cache("train") == ["t0", "t1", "t2"]
    assert state.read_cache("build-train") == ["b0", "b1", "b2"]
    assert json.loads((project / ".kaos" / ".build-train.cache").read_text()) == ["b0", "b1", "b2"]
    assert json.loads((project / ".kaos" / ".train.cache").read_text()) == ["t0", "t1", "t2"]


def test_list_backend_error_is_one_line(kaos, ws):
    ws.route("GET", "train/mnist", 404, {"error_code": "WORKSPACE_NOT_FOUND", "message": "Workspace mnist not found"})
    assert one_line(kaos("train", "list")) == "Error - Workspace mnist not found"


# -- info ------------------------------------------------------------------------------------------------------
def partition(n, hyperparams=None, score=None):
    return {"datum_id": f"d{n}", "code": answers.descriptor("/mnist:e23a2", "jfriedman"),
            "data": answers.descriptor("/features:9fd9d", "jfriedman"),
            "image": answers.descriptor("build-train-mnist:e23a2"),
            "output": answers.descriptor(f"e23a2_9fd9d:13463{n}", model_id=f"e23a2_9fd9d:13463{n}",
                                         model_path=f"/13463{n}/model/"),
            "hyperparams": hyperparams, "score": score, "metrics": {}, "state": "JOB_SUCCESS"}


METRICS = ["accuracy_train", "accuracy_test", "metrics_train", "accuracy_validation", "metrics_validation",
           "metrics_test"]


def test_info_as_in_the_docs(kaos, ws):
    ws.route("GET", f"train/mnist/{JOB}", body={"page_id": 0, "page_count": 1, "response": {
        "job_id": JOB, "state": "JOB_SUCCESS", "available_metrics": METRICS, "process_time": 49,
        "partitions": [partition(9)]}})
    result = kaos("train", "info", "-j", JOB)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"""Info - Retrieving info from {JOB}

    Job ID: {JOB}
    Process time: 49s
    State: JOB_SUCCESS
    Available metrics: {METRICS}

    Page count: 1
    Page ID: 0
+-----+--------------------+-----------------------+--------------------+-------------+
| ind |        Code        |          Data         |      Model ID      | Hyperparams |
+-----+--------------------+-----------------------+--------------------+-------------+
|  0  | Author: jfriedman  |   Author: jfriedman   | e23a2_9fd9d:134639 |     None    |
|     | Path: /mnist:e23a2 | Path: /features:9fd9d |                    |             |
+-----+--------------------+-----------------------+--------------------+-------------+
"""
    request, = ws.requests_to("GET", f"train/mnist/{JOB}")
    assert request.query == {"page_id": ["0"], "user": ["tester"]}


def test_info_sorted_page_with_score_and_index(kaos, ws):
    hyper = answers.descriptor("/3fbf2/degree=5_kernel=poly.json", "tester", values={"degree": 5})
    ws.route("GET", f"train/mnist/{JOB}", body={"page_id": 2, "page_count": 3, "response": {
        "job_id": JOB, "state": "JOB_RUNNING", "available_metrics": ["loss"], "process_time": 130,
        "partitions": [partition(0, hyper, "0.1234"), partition(1, hyper, None)]}})
    state.write_cache("train", ["other", JOB])
    result = kaos("train", "info", "-i", "1", "-s", "loss", "-p", "2", "--ascending")
    assert result.exit_code == 0, result.output
    request, = ws.requests_to("GET", f"train/mnist/{JOB}")
    assert request.query == {"sort_by": ["loss"], "page_id": ["2"], "ascending": ["true"], "user": ["tester"]}
    lines = result.stdout.splitlines()
    assert "    Process time: 130s" in lines and "    Page ID: 2" in lines and "    Page count: 3" in lines
    header = [cell.strip() for cell in lines[10].split("|")[1:-1]]
    assert header == ["ind", "Code", "Data", "Model ID", "Hyperparams", "Score"]
    assert lines[12].split("|")[1].strip() == "20" and lines[12].split("|")[6].strip() == "0.1234"
    assert "Path: /3fbf2/degree=5_kernel=poly.json" in lines[13] and "Author: tester" in lines[12]
    assert any(line.split("|")[1].strip() == "21" and line.split("|")[6].strip() == "None" for line in lines[12:])


def test_info_without_sort_has_no_score(kaos, ws):
    ws.route("GET", f"train/mnist/{JOB}", body={"page_id": 0, "page_count": 1, "response": {
        "job_id": JOB, "state": "JOB_SUCCESS", "available_metrics": [], "process_time": 0, "partitions": []}})
    result = kaos("train", "info", "-j", JOB)
    assert "Score" not in result.stdout and "    Available metrics: []" in result.stdout


def failed_partition(n, state="JOB_FAILURE"):
    return dict(partition(n), datum_id=f"{JOB}-{n}", state=state, reason=f"exit code 1 (last output: n={n})")


def failed_table_rows(stdout):
    """The partition numbers in the failed partitions' table."""
    table = stdout.split("    Failed partitions: ", 1)[1]
    return [line.split("|")[1].strip() for line in table.splitlines()
            if line.startswith("|") and line.split("|")[1].strip().isdigit()]


def test_info_of_a_killed_big_grid_shows_twenty_failed_partitions_and_how_many_more(kaos, ws):
    failed = [failed_partition(n) for n in range(5, 24)] + [failed_partition(24, "JOB_KILLED")]
    ws.route("GET", f"train/mnist/{JOB}", body={"page_id": 0, "page_count": 1, "response": {
        "job_id": JOB, "state": "JOB_KILLED", "reason": "killed on request", "available_metrics": [],
        "process_time": 60, "partitions": [partition(n) for n in range(5)], "failed_partitions": failed,
        "failed_count": 9_995}})
    result = kaos("train", "info", "-j", JOB)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "    Failed partitions: 9995" in lines
    assert failed_table_rows(result.stdout) == [str(n) for n in range(5, 25)]
    assert "JOB_KILLED" in result.stdout and "exit code 1 (last output: n=23)" in result.stdout
    assert lines[-1] == "    ... and 9975 more failed partitions"


def test_info_shows_at_most_twenty_failed_rows_even_from_a_backend_that_sends_more(kaos, ws):
    ws.route("GET", f"train/mnist/{JOB}", body={"page_id": 0, "page_count": 1, "response": {
        "job_id": JOB, "state": "JOB_FAILURE", "available_metrics": [], "process_time": 60, "partitions": [],
        "failed_partitions": [failed_partition(n) for n in range(25)]}})  # no failed_count
    result = kaos("train", "info", "-j", JOB)
    assert result.exit_code == 0, result.output
    assert "    Failed partitions: 25" in result.stdout.splitlines()
    assert failed_table_rows(result.stdout) == [str(n) for n in range(20)]
    assert result.stdout.splitlines()[-1] == "    ... and 5 more failed partitions"


def test_info_lists_every_failed_partition_when_all_are_shown(kaos, ws):
    ws.route("GET", f"train/mnist/{JOB}", body={"page_id": 0, "page_count": 1, "response": {
        "job_id": JOB, "state": "JOB_FAILURE", "available_metrics": [], "process_time": 60, "partitions": [],
        "failed_partitions": [failed_partition(n) for n in (1, 3)], "failed_count": 2}})
    result = kaos("train", "info", "-j", JOB)
    assert "    Failed partitions: 2" in result.stdout.splitlines()
    assert failed_table_rows(result.stdout) == ["1", "3"] and "more failed" not in result.stdout


def test_info_failed_partition_without_a_reason_has_an_empty_reason_cell(kaos, ws):
    ws.route("GET", f"train/mnist/{JOB}", body={"page_id": 0, "page_count": 1, "response": {
        "job_id": JOB, "state": "JOB_KILLED", "available_metrics": [], "process_time": 60, "partitions": [],
        "failed_partitions": [dict(failed_partition(2, "JOB_KILLED"), reason=None)], "failed_count": 1}})
    result = kaos("train", "info", "-j", JOB)
    table = result.stdout.split("    Failed partitions: ", 1)[1]
    row, = [line for line in table.splitlines() if line.startswith("|") and line.split("|")[1].strip() == "2"]
    assert row.split("|")[4].strip() == ""


def test_info_of_a_grid_killed_before_any_partition_started_counts_them(kaos, ws):
    ws.route("GET", f"train/mnist/{JOB}", body={"page_id": 0, "page_count": 1, "response": {
        "job_id": JOB, "state": "JOB_KILLED", "available_metrics": [], "process_time": 0, "partitions": [],
        "failed_partitions": [], "failed_count": 300}})
    result = kaos("train", "info", "-j", JOB)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == ["    Failed partitions: 300", "    ... and 300 more failed partitions"]


def test_info_errors(kaos, ws):
    ws.route("GET", f"train/mnist/{JOB}", 404, {"error_code": "METRIC_NOT_FOUND", "message": "Metric nope not found"})
    unknown = kaos("train", "info", "-j", JOB, "-s", "nope")
    assert unknown.exit_code == 1 and unknown.stderr == "Error - Metric nope not found\n"
    negative = kaos("train", "info", "-j", JOB, "-p", "-1")
    assert negative.exit_code == 2 and "-1 is not in the range x>=0" in negative.output
    assert one_line(kaos("train", "info")) == "Error - Missing either --job_id or --ind as arguments"
    both = kaos("train", "info", "-j", JOB, "-i", "0")
    assert both.exit_code == 2 and "Illegal usage: --job_id is mutually exclusive with --ind" in both.output


# -- index resolution ------------------------------------------------------------------------------------------
def test_index_messages(kaos, ws):
    assert one_line(kaos("train", "logs", "-i", "0")) == \
        "Error - Index not available until running `kaos train list`"
    ws.route("GET", "train/mnist", body={"response": {"training": [submission(JOB, hyperopt="False")],
                                                      "building": [submission(BUILD_JOB)], "ingesting": []}})
    kaos("train", "list")
    assert one_line(kaos("train", "kill", "-i", "1")) == "Error - Index 1 does not exist... Run `kaos train list` again"
    assert one_line(kaos("train", "build-logs", "-i", "1")) == \
        "Error - Index 1 does not exist... Run `kaos train list` again"
    ws.route("GET", f"train/mnist/build/{BUILD_JOB}/logs", body=json.dumps("[t] built"))
    ws.route("GET", f"train/mnist/{JOB}/logs", body=json.dumps("[t] trained"))
    assert kaos("train", "build-logs", "-i", "0").stdout == "[t] built\n"
    assert kaos("train", "logs", "-i", "0").stdout == "[t] trained\n"


# -- logs ------------------------------------------------------------------------------------------------------
LOG = ("[2019-07-29 15:25:45] processing job 8811746e3f6343d1bd6f3d520f7a54d0\n"
       "[2019-07-29 15:25:46] SyntaxError: invalid syntax")


def test_logs_printed_and_saved(kaos, ws, project):
    ws.route("GET", f"train/mnist/{JOB}/logs", body=json.dumps(LOG))
    result = kaos("train", "logs", "-j", JOB)
    assert result.exit_code == 0
    assert result.stdout == LOG + "\n"
    saved = project / "mnist" / "logs" / f"train-{JOB}.log"
    assert result.stderr.splitlines() == [f"Info - Retrieving logs from {JOB}",
                                          f"Info - Log saved to mnist/logs/train-{JOB}.log"]
    assert saved.read_text() == LOG + "\n"
    request, = ws.requests_to("GET", f"train/mnist/{JOB}/logs")
    assert "follow" not in request.query


def test_logs_of_a_training_that_never_started_say_why(kaos, ws):
    # the same as `kaos serve logs` of an endpoint whose build failed: one Warning line with the job's reason, exit 0
    reason = "kaos: the scheduler could not advance this train job: OSError: no space left"
    record = answers.job_record(JOB, "JOB_FAILURE")
    record["response"]["reason"] = reason
    ws.route("GET", f"job/mnist/{JOB}", body=record)
    ws.route("GET", f"train/mnist/{JOB}/logs", body=json.dumps(""))
    result = kaos("train", "logs", "-j", JOB)
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.splitlines()[1] == f"Warning - Job {JOB} never ran: {reason}"
    ws.route("GET", f"job/mnist/{JOB}", body=answers.job_record(JOB, "JOB_STARTING"))
    assert kaos("train", "logs", "-j", JOB).stderr.splitlines()[1] == \
        f"Warning - Job {JOB} has written no log yet (JOB_STARTING)"


def test_build_logs_into_out_dir(kaos, ws, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ws.route("GET", f"train/mnist/build/{BUILD_JOB}/logs", body=json.dumps("[t] returned a non-zero code: 1\n"))
    result = kaos("train", "build-logs", "-j", BUILD_JOB, "-o", str(out))
    assert result.exit_code == 0
    assert result.stdout == "[t] returned a non-zero code: 1\n"
    assert "Info - Retrieving build logs from" in result.stderr
    assert (out / "mnist" / "logs" / f"build-train-{BUILD_JOB}.log").read_text() == "[t] returned a non-zero code: 1\n"


def test_logs_out_dir_must_exist(kaos, ws, tmp_path):
    result = kaos("train", "logs", "-j", JOB, "-o", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_logs_of_an_unknown_job(kaos, ws, project):
    ws.route("GET", f"train/mnist/{JOB}/logs", 404,
             {"error_code": "JOB_NOT_FOUND", "message": f"There is no job with id: {JOB}"})
    result = kaos("train", "logs", "-j", JOB, "-f")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"Error - There is no job with id: {JOB}"
    assert not (project / "mnist").exists()


def _streamed(chunks):
    def answer(request):
        assert request.query.get("follow") == ["true"]
        return 200, iter(chunks), "text/plain"
    return answer


@pytest.mark.parametrize("final, code", [("JOB_SUCCESS", 0), ("JOB_FAILURE", 1), ("JOB_KILLED", 1)])
def test_follow_streams_saves_and_exits_by_state(kaos, ws, project, final, code):
    ws.handle("GET", f"train/mnist/{JOB}/logs", _streamed(["[t] one\n[t] t", "wo\n", "[t] three\n"]))
    ws.route("GET", f"job/mnist/{JOB}", body=answers.job_record(JOB, final, "train"))
    result = kaos("train", "logs", "-j", JOB, "-f")
    assert result.exit_code == code
    assert result.stdout == "[t] one\n[t] two\n[t] three\n"
    assert (project / "mnist" / "logs" / f"train-{JOB}.log").read_text() == "[t] one\n[t] two\n[t] three\n"
    if code:
        assert result.stderr.splitlines()[-1] == f"Error - Job {JOB} ended in state {final}"
        assert "Traceback" not in result.output
    # the state is asked once the stream has ended
    paths = [r.path for r in ws.requests]
    assert paths.index(f"/api/job/mnist/{JOB}") > paths.index(f"/api/train/mnist/{JOB}/logs")


def test_follow_build_logs(kaos, ws, project):
    ws.handle("GET", f"train/mnist/build/{BUILD_JOB}/logs", _streamed(["[t] building\n", "[t] done\n"]))
    ws.route("GET", f"job/mnist/{BUILD_JOB}", body=answers.job_record(BUILD_JOB, "JOB_SUCCESS", "build-train"))
    result = kaos("train", "build-logs", "-j", BUILD_JOB, "--follow")
    assert result.exit_code == 0 and result.stdout == "[t] building\n[t] done\n"
    assert (project / "mnist" / "logs" / f"build-train-{BUILD_JOB}.log").exists()


def test_follow_stream_ending_early(kaos, ws):
    ws.handle("GET", f"train/mnist/{JOB}/logs", _streamed(["[t] one\n"]))
    ws.route("GET", f"job/mnist/{JOB}", body=answers.job_record(JOB, "JOB_RUNNING"))
    result = kaos("train", "logs", "-j", JOB, "-f")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"Error - The log stream of job {JOB} ended while the job is JOB_RUNNING"


# -- kill ------------------------------------------------------------------------------------------------------
def test_kill(kaos, ws):
    ws.route("DELETE", f"train/mnist/{JOB}", body=None)
    result = kaos("train", "kill", "-j", JOB)
    assert result.exit_code == 0 and result.output.strip() == f"Info - Job {JOB} successfully killed"
    state.write_cache("train", [JOB])
    assert kaos("train", "kill", "-i", "0").exit_code == 0
    assert len(ws.requests_to("DELETE", f"train/mnist/{JOB}")) == 2


@pytest.mark.parametrize("status, code, message", [
    (400, "JOB_NOT_RUNNING", "Job is not running, id: {}"),
    (404, "JOB_NOT_FOUND", "There is no job with id: {}"),
])
def test_kill_errors(kaos, ws, status, code, message):
    ws.route("DELETE", f"train/mnist/{JOB}", status, {"error_code": code, "message": message.format(JOB)})
    assert one_line(kaos("train", "kill", "-j", JOB)) == "Error - " + message.format(JOB)


def test_an_answer_that_does_not_fit_its_wire_class_is_one_error_line(kaos, ws):
    ws.route("GET", "train/mnist", body={"response": {"training": [{"job_id": JOB}], "building": [], "ingesting": []}})
    line = one_line(kaos("train", "list"))
    assert line.startswith("Error - The backend at http://127.0.0.1:") and line.endswith(
        "answered GET train/mnist with something that is not a TrainJobListing: training[0].state: missing, and "
        "SubmissionInfo requires it")


def _cut_then(monkeypatch, reopenings):
    """train_logs that yields one record and is cut off, then answers each reopening from `reopenings` (an
    exception to raise, or the records of a whole log)."""
    from kaos_cli import log_follow
    from kaos_cli.client import KaosClient
    from kaos_cli.errors import StreamInterrupted
    calls = []
    monkeypatch.setattr(log_follow, "RECONNECT_INTERVAL", 0.01)

    def train_logs(self, workspace, job_id, follow=False):
        calls.append(follow)
        if len(calls) == 1:
            def cut():
                yield "[t] one"
                raise StreamInterrupted("The log stream from http://x/api/ was interrupted (ChunkedEncodingError)")
            return cut()
        answer = reopenings[min(len(calls) - 2, len(reopenings) - 1)]
        if isinstance(answer, Exception):
            raise answer
        return iter(answer)
    monkeypatch.setattr(KaosClient, "train_logs", train_logs)
    return calls


def test_a_cut_follow_is_opened_again_and_prints_no_record_twice(kaos, ws, project, monkeypatch):
    from kaos_cli.errors import ConnectionDropped, ConnectionProblem
    calls = _cut_then(monkeypatch, [ConnectionProblem("unreachable"), ConnectionDropped("closed unanswered"),
                                    ["[t] one", "[t] two"]])  # the front down, then coming up (an attacker's case)
    ws.route("GET", f"job/mnist/{JOB}", body=answers.job_record(JOB, "JOB_SUCCESS", "train"))
    result = kaos("train", "logs", "-j", JOB, "-f")
    assert result.exit_code == 0, result.output
    assert result.stdout == "[t] one\n[t] two\n" and calls == [True, True, True, True]
    assert (project / "mnist" / "logs" / f"train-{JOB}.log").read_text() == "[t] one\n[t] two\n"
    assert "Info - The log stream from http://x/api/ was interrupted (ChunkedEncodingError): opening it again" \
        in result.stderr


def test_a_follow_that_cannot_be_opened_again_says_it_was_cut_within_its_bound(kaos, ws, monkeypatch):
    from kaos_cli import log_follow
    from kaos_cli.errors import ConnectionProblem, RequestError
    monkeypatch.setattr(log_follow, "RECONNECT_SECONDS", 0.2)
    _cut_then(monkeypatch, [ConnectionProblem("unreachable")])
    result = kaos("train", "logs", "-j", JOB, "-f")
    assert result.exit_code == 1 and result.stdout == "[t] one\n"
    assert result.stderr.splitlines()[-1] == \
        "Error - The log stream from http://x/api/ was interrupted (ChunkedEncodingError)"
    _cut_then(monkeypatch, [RequestError("There is no job with id: x", status=404, error_code="JOB_NOT_FOUND")])
    result = kaos("train", "logs", "-j", JOB, "-f")  # an answer is not a cut: said at once
    assert result.exit_code == 1 and result.stderr.splitlines()[-1] == "Error - There is no job with id: x"


def test_a_deploy_interrupted_after_an_upload_says_what_the_backend_does_with_it(kaos, ws, source_dir, data_dir,
                                                                                   monkeypatch):
    """A newcomer's finding: Ctrl-C during the data upload of `train deploy -s -d` printed only "Aborted!", and a
    training of the new code on the old data started ten minutes later (the backend's wait for the rest)."""
    from kaos_cli.commands import train_deploy

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_deploy, "_submit_data", interrupted)
    ws.route("POST", "train/mnist", body={"glob_name": "mnist:17127", "job_id": BUILD_JOB})
    result = kaos("train", "deploy", "-s", str(source_dir), "-d", str(data_dir))
    assert result.exit_code == 1
    assert [line for line in result.stderr.splitlines() if line][-2:] == [
        "Warning - Interrupted after uploading the source: no training starts for 10 minutes while the rest of this "
        "deploy is awaited, then one trains on the workspace's inputs as they are - kaos train deploy again to give "
        "them", "Aborted!"]
    monkeypatch.setattr(train_deploy, "_submit_source", interrupted)
    result = kaos("train", "deploy", "-s", str(source_dir), "-d", str(data_dir))  # nothing uploaded: nothing said
    assert result.exit_code == 1 and result.stderr.splitlines()[-1] == "Aborted!"
    assert "Interrupted after" not in result.stderr


def test_list_reason_is_empty_for_the_jobs_without_one(kaos, ws):
    # a literal `None` stood in the reason cell of every healthy job once one had a reason
    ws.route("GET", "train/mnist", body={"response": {
        "training": [submission("t0", "JOB_FAILURE", reason="killed on request", hyperopt="False"),
                     submission("t1", hyperopt="False"), submission("t2", reason=None, hyperopt="False")],
        "building": [], "ingesting": []}})
    result = kaos("train", "list")
    assert result.exit_code == 0, result.output
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines()[5:] if line.startswith("|")]
    header = [cell.strip() for cell in result.stdout.splitlines()[3].split("|")[1:-1]]
    assert [row[header.index("reason")].strip() for row in rows] == ["killed on request", "", ""]
    assert "None" not in result.stdout


@pytest.mark.parametrize("args, what", [
    (("train", "logs", "-j"), "job id"), (("train", "build-logs", "-j"), "job id"), (("train", "info", "-j"), "job id"),
    (("train", "kill", "-j"), "job id"), (("serve", "build-logs", "-j"), "job id"),
    (("serve", "logs", "-e"), "endpoint name")])
def test_an_id_of_whitespace_only_is_refused_in_one_line(kaos, ws, args, what):
    """An attacker's finding: `-j ' '` (stripped to nothing) made URLs such as train/ws//logs: 'There is no job with
    id: logs', 'Method DELETE is not allowed on /api/train/w3/'."""
    result = kaos(*args, "  ")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [f"Error - Invalid {what} ''"]
    assert not [request for request in ws.requests if "/api/health" not in request.path]
