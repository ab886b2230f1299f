"""`-o/--output table|json|yaml` (issue 8, item 4): the real `kaos` CLI against a real backend. For every list,
info and deploy command, `-o json` is the API's own answer (compared with the route's JSON, fetched directly),
`-o yaml` parses to the same value, neither has an escape code or a carriage return, and nothing else reaches
stdout; errors stay one line and exit 1; progress bars are drawn only on a terminal."""
import json

import pytest
import requests
import yaml

from tests.support.backend import BackendProcess
from tests.support.cli import assert_one_line_failure, kaos
from tests.support.platform import wait_for
from tests.support.tiny_bundles import data_folder, serve_source, train_source

WS = "out"
TERMINAL = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED")


class Project:
    def __init__(self, directory, backend: BackendProcess):
        self.directory = directory
        self.backend = backend

    def kaos(self, *args, **kwargs):
        return kaos(self.directory, *args, raw=True, **kwargs)  # a `\r` (a progress bar's redraw) stays one

    def api(self, path: str, **params):
        response = requests.get(self.backend.url + path, params=params, headers={"X-Token": self.backend.token},
                                timeout=60)
        assert response.ok, response.text
        return response.json()

    def machine(self, *args) -> dict:
        """`kaos *args -o json` and `-o yaml` (for commands that change nothing): the one value both print."""
        as_json, as_yaml = self.kaos(*args, "-o", "json"), self.kaos(*args, "-o", "yaml")
        value = parsed(as_json, "json")
        assert parsed(as_yaml, "yaml") == value
        return value


def parsed(result, fmt: str):
    """The value a successful `-o json|yaml` run printed; its stdout holds it alone, with no escape code and no
    carriage return (no colours, no bars) in stdout or stderr."""
    assert result.code == 0, result
    for text in (result.out, result.err):
        assert "\x1b" not in text and "\r" not in text, result
    return json.loads(result.out) if fmt == "json" else yaml.safe_load(result.out)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project initialised against a real backend, workspace `out` created with `-o json`, a trained job and
    a running endpoint; `created` is what `workspace create -o json` printed."""
    root = tmp_path_factory.mktemp("output")
    backend = BackendProcess(root / "backend-data").start()
    try:
        project = Project(root / "project", backend)
        project.directory.mkdir()
        assert project.kaos("init", "-e", backend.url, "-t", backend.token).code == 0
        project.created = parsed(project.kaos("workspace", "create", "-n", WS, "-o", "json"), "json")
        train_source(project.directory / "train")
        data_folder(project.directory / "data")
        serve_source(project.directory / "serve")
        (project.directory / "params.json").write_text(json.dumps({"scale": [2, 3]}))
        project.deployed = parsed(project.kaos("train", "deploy", "-s", "train", "-d", "data", "-h", "params.json",
                                               "-o", "json"), "json")
        job = wait_for(lambda: project.api(f"train/{WS}")["response"]["training"], 300, what="a train job")[0]
        project.job_id = job["job_id"]
        wait_for(lambda: project.api(f"job/{WS}/{project.job_id}")["response"]["state"] in TERMINAL, 300,
                 what="the training to end")
        info = project.api(f"train/{WS}/{project.job_id}")["response"]
        project.model_id = info["partitions"][0]["output"]["model_id"]
        project.served = parsed(project.kaos("serve", "deploy", "-s", "serve", "-m", project.model_id, "-o",
                                             "json"), "json")
        wait_for(lambda: [e for e in project.api(f"inference/{WS}")["response"]["endpoints"]
                          if e["name"] == project.served["endpoint"] and e["state"] == "PIPELINE_RUNNING"], 300,
                 what="the endpoint to run")
        wait_for(lambda: all(job["state"] in TERMINAL
                             for job in project.api(f"inference/{WS}")["response"]["building"]), 300,
                 what="the serve build to end")
        yield project
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def other(project):
    """A second project on the same backend, with workspace `bars`: where the tests that add jobs run, so the
    first one's lists stay as they are."""
    other = Project(project.directory.parent / "other", project.backend)
    other.directory.mkdir()
    assert other.kaos("init", "-e", project.backend.url, "-t", project.backend.token).code == 0
    other.created = parsed(other.kaos("workspace", "create", "-n", "bars", "-o", "yaml"), "yaml")
    serve_source(other.directory / "serve")
    return other


def test_workspace_create_info_and_list_print_the_routes_answers(project, other):
    info = project.api(f"workspace/{WS}")
    created = dict(project.created)
    assert created.pop("response")["name"] == WS  # the workspace as it was then (it has pipelines since)
    assert created == {"build_train": f"build-train-{WS}", "build_serve": f"build-serve-{WS}",
                       "build_notebook": f"build-notebook-{WS}"}
    assert other.created == {"build_train": "build-train-bars", "build_serve": "build-serve-bars",
                             "build_notebook": "build-notebook-bars",
                             "response": {"name": "bars", "pipelines": other.created["response"]["pipelines"],
                                          "repos": other.created["response"]["repos"]}}
    assert other.api("workspace/bars")["response"]["repos"] == other.created["response"]["repos"]
    assert project.machine("workspace", "info") == info
    assert project.machine("workspace", "list") == project.api("workspace", limit=50) == \
        {"names": ["bars", WS], "continue": None}
    assert project.machine("workspace", "list", "--all") == {"names": ["bars", WS], "continue": None}
    assert project.machine("workspace", "list", "--limit", "1") == project.api("workspace", limit=1)
    assert project.api("workspace", limit=1)["continue"]  # a token: there is one more


def test_train_deploy_prints_each_upload_and_the_inputs(project, other):
    deployed = project.deployed
    assert set(deployed) == {"source", "data", "hyperparams", "inputs"}
    assert deployed["source"]["glob_name"].startswith("tiny:") and deployed["source"]["job_id"]
    assert deployed["data"] == {"glob_name": deployed["data"]["glob_name"]}
    assert deployed["hyperparams"]["params"] == [{"scale": 2}, {"scale": 3}]
    inspect = project.api(f"train/{WS}/inspect")
    assert {key: value for key, value in deployed["inputs"].items() if key != "image_state"} == \
        {key: value for key, value in inspect.items() if key != "image_state"}
    data = data_folder(other.directory / "data").name
    as_yaml = other.kaos("train", "deploy", "-d", data, "-o", "yaml")  # data alone: nothing is trained
    assert parsed(as_yaml, "yaml") == {"data": deployed["data"], "inputs": other.api("train/bars/inspect")}
    assert as_yaml.err == ""  # the narrative of the table format is left out: the data says it


def test_train_list_and_info_print_the_routes_answers(project):
    listed = project.machine("train", "list")
    assert listed == project.api(f"train/{WS}", limit=50)
    assert listed["continue"] is None and [job["job_id"] for job in listed["response"]["training"]] == \
        [project.job_id]
    assert project.machine("train", "list", "--all") == dict(project.api(f"train/{WS}"), **{"continue": None})
    page = project.machine("train", "list", "--limit", "1")
    assert page == project.api(f"train/{WS}", limit=1)

    assert project.machine("train", "info", "-j", project.job_id) == project.api(f"train/{WS}/{project.job_id}",
                                                                                page_id=0)
    assert project.machine("train", "info", "-i", "0", "-s", "accuracy", "--ascending") == \
        project.api(f"train/{WS}/{project.job_id}", sort_by="accuracy", page_id=0, ascending="true")


def test_serve_deploy_and_list_print_the_routes_answers(project, other):
    assert set(project.served) == {"glob_name", "endpoint", "job_id"}
    assert project.served["endpoint"].startswith(f"serve-{WS}-")
    as_yaml = parsed(other.kaos("serve", "deploy", "-s", "serve", "-o", "yaml"), "yaml")
    assert as_yaml["glob_name"] == project.served["glob_name"] and as_yaml["endpoint"].startswith("serve-bars-")
    assert [endpoint["name"] for endpoint in other.api("inference/bars")["response"]["endpoints"]] == \
        [as_yaml["endpoint"]]
    listed = project.machine("serve", "list")
    assert listed == project.api(f"inference/{WS}", limit=50)
    assert [endpoint["name"] for endpoint in listed["response"]["endpoints"]] == [project.served["endpoint"]]


def test_template_and_build_lists(project):
    templates = project.machine("template", "list")
    assert {"name": "mnist", "description": templates[0]["description"], "input_type": templates[0]["input_type"]} \
        in templates
    assert project.machine("build", "list") == [{"context": "remote", "provider": "remote", "env": "remote",
                                                 "url": project.backend.url, "active": True}]


def test_the_table_stays_the_default(project):
    for args in (("train", "list"), ("serve", "list"), ("workspace", "info"), ("train", "info", "-i", "0")):
        default, table = project.kaos(*args), project.kaos(*args, "-o", "table")
        assert default.code == table.code == 0 and default.out == table.out, (default, table)
        assert "+-----" in default.out or default.out.startswith(f"--- Workspace {WS} ---\nPipelines:\n")


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_an_error_is_still_one_line_and_exit_1(project, fmt):
    result = project.kaos("train", "info", "-j", "0123456789abcdef0123456789abcdef", "-o", fmt)
    assert_one_line_failure(result)
    assert result.out == "" and result.err == "Error - There is no job with id: 0123456789abcdef0123456789abcdef\n"


def test_an_unknown_format_is_a_usage_error(project):
    result = project.kaos("train", "list", "-o", "xml")
    assert result.code == 2 and "'xml' is not one of 'table', 'json', 'yaml'" in result.err


def test_progress_bars_only_when_stdout_is_a_terminal(other):
    piped = other.kaos("train", "deploy", "-d", data_folder(other.directory / "data-2", "2").name)
    assert piped.code == 0, piped
    assert "Uploading" not in piped.err and "Compressing" not in piped.err and "\r" not in piped.err, piped
    assert "Info - Submitting data bundle: data-2" in piped.out and "\x1b" not in piped.out + piped.err
    on_terminal = other.kaos("train", "deploy", "-d", data_folder(other.directory / "data-3", "3").name,
                             tty=True)
    assert on_terminal.code == 0, on_terminal
    assert "Compressing data bundle" in on_terminal.err and "Uploading data bundle" in on_terminal.err
    assert "\r" in on_terminal.err  # tqdm redraws its line
    assert "\x1b[" in on_terminal.out  # a person sees the colours
