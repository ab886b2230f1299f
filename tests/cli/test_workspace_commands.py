"""`kaos workspace …` against a scripted server that keeps workspaces in memory (the real backend's version of
these flows is in test_with_backend.py)."""
import json

import pytest

from kaos_cli import state
from kaos_cli.state import Config
from tests.cli.conftest import one_line


@pytest.fixture
def workspaces(connected):
    """The connected server, answering the workspace routes from a set of names."""
    names = set()

    def listing(request):
        return 200, {"names": sorted(names)}, "application/json"

    def by_name(request):
        name = request.path.rsplit("/", 1)[1]
        if request.method == "POST":
            if name in names:
                return 409, {"error_code": "WORKSPACE_EXISTS", "message": f"Workspace {name} already exists"}, \
                    "application/json"
            names.add(name)
            return 201, {"build_train": f"build-train-{name}", "build_serve": f"build-serve-{name}",
                         "build_notebook": f"build-notebook-{name}",
                         "response": {"name": name, "pipelines": [], "repos": []}}, "application/json"
        if name not in names:
            return 404, {"error_code": "WORKSPACE_NOT_FOUND", "message": f"Workspace {name} not found"}, \
                "application/json"
        if request.method == "DELETE":
            names.discard(name)
            return 200, None, "application/json"
        return 200, {"response": {"name": name, "pipelines": [f"build-train-{name}"],
                                  "repos": [f"source-train-{name}", f"train-{name}"]}}, "application/json"

    connected.handle("GET", "workspace", listing)
    for method in ("GET", "POST", "DELETE"):
        for name in ("mnist", "mnist2", "other", "a", "ab", "Mnist", "x"):
            connected.handle(method, f"workspace/{name}", by_name)
    connected.names = names
    return connected


def test_empty_list(kaos, workspaces):
    result = kaos("workspace", "list")
    assert result.exit_code == 0
    assert result.output.strip() == \
        "Warning - There are currently no active workspaces - first run kaos workspace create"


def test_create_list_set_current_info(kaos, workspaces, project):
    created = kaos("workspace", "create", "-n", "mnist")
    assert created.exit_code == 0, created.output
    assert created.output.strip() == "Info - Successfully set mnist workspace"
    assert Config.load().workspace == "mnist"
    post, = workspaces.requests_to("POST", "workspace/mnist")
    assert post.query == {"user": ["tester"]} and post.headers["x-token"] == "secret"

    assert kaos("workspace", "create", "-n", "other").exit_code == 0
    listed = kaos("workspace", "list")
    assert "| ind | name  |" in listed.output and "| 0   | mnist |" in listed.output
    assert "| 1   | other |" in listed.output
    assert json.loads((project / ".kaos" / ".workspace.cache").read_text()) == ["mnist", "other"]

    assert kaos("workspace", "set", "-i", "0").output.strip() == "Info - Successfully set mnist workspace"
    assert kaos("workspace", "current").output.strip() == "Info - Workspace mnist is currently set"
    info = kaos("workspace", "info")
    assert info.output.splitlines() == ["--- Workspace mnist ---", "Pipelines:", "- build-train-mnist", "Repos:",
                                        "- source-train-mnist", "- train-mnist"]


def test_create_requires_a_name(kaos, workspaces):
    result = kaos("workspace", "create")
    assert result.exit_code == 2 and "Missing option '-n' / '--name'" in result.output


@pytest.mark.parametrize("name", ["My_Workspace", "under_score", "Mnist", "-x", "x" * 41])
def test_create_rejects_invalid_names(kaos, workspaces, name):
    assert one_line(kaos("workspace", "create", "-n", name)).startswith("Error - Invalid workspace name")
    assert not workspaces.requests_to("POST", f"workspace/{name}")


def test_create_existing(kaos, workspaces):
    workspaces.names.add("mnist")
    assert one_line(kaos("workspace", "create", "-n", "mnist")) == (
        "Warning - Workspace mnist already exists. Please use `kaos workspace set` to select a workspace")
    assert Config.load().workspace is None


def test_set_unknown_suggests_and_fails(kaos, workspaces):
    workspaces.names.update({"mnist", "mnist2", "other"})
    result = kaos("workspace", "set", "-n", "mnst2")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Warning - Workspace mnst2 does not exist. Did you mean one of these?", "- mnist2", "- mnist"]
    far = kaos("workspace", "set", "-n", "zzzzzzzz")
    assert one_line(far) == ("Warning - Workspace zzzzzzzz does not exist. Check the existing workspaces with "
                             "`kaos workspace list`")
    assert Config.load().workspace is None


def test_set_index_messages(kaos, workspaces, project):
    workspaces.names.update({"a", "ab"})
    assert one_line(kaos("workspace", "set", "-i", "0")) == \
        "Error - Index not available until running `kaos workspace list`"
    kaos("workspace", "list")
    assert one_line(kaos("workspace", "set", "-i", "2")) == \
        "Error - Index 2 does not exist... Run `kaos workspace list` again"
    assert kaos("workspace", "set", "-i", "1").output.strip() == "Info - Successfully set ab workspace"
    both = kaos("workspace", "set", "-n", "a", "-i", "1")
    assert both.exit_code == 2 and "Illegal usage: --name is mutually exclusive with --ind" in both.output
    assert one_line(kaos("workspace", "set")) == "Error - Missing either --name or --ind as arguments"


def test_kill_asks_and_clears(kaos, workspaces, project):
    for name in ("ab", "a"):
        assert kaos("workspace", "create", "-n", name).exit_code == 0
    kaos("workspace", "list")
    state.write_cache("train", ["job"])
    state.write_cache("build-train", ["build-job"])
    state.write_cache("backend", ["remote"])

    aborted = kaos("workspace", "kill", input="n\n")
    assert aborted.exit_code == 1
    assert "Warning - Are you sure about killing all a resources? [y/N]" in aborted.output
    assert aborted.output.splitlines()[-1] == ("Info - Workspace a kill operation aborted. Re-initiate using "
                                               "`kaos workspace kill` if required")
    assert workspaces.names == {"a", "ab"}

    killed = kaos("workspace", "kill", input="y\n")
    assert killed.exit_code == 0
    assert killed.output.splitlines()[-1] == "Info - Successfully killed all a resources"
    assert workspaces.names == {"ab"}
    assert Config.load().workspace is None
    assert state.read_cache("workspace") is None and state.read_cache("train") is None
    assert state.read_cache("build-train") is None
    assert state.read_cache("backend") == ["remote"]


def test_kill_another_workspace_keeps_the_current_one(kaos, workspaces):
    for name in ("other", "mnist"):
        assert kaos("workspace", "create", "-n", name).exit_code == 0
    killed = kaos("workspace", "kill", "-n", "other", "-y")
    assert killed.exit_code == 0 and killed.output.strip() == "Info - Successfully killed all other resources"
    assert workspaces.names == {"mnist"} and Config.load().workspace == "mnist"
    assert one_line(kaos("workspace", "kill", "-n", "x", "-y")) == "Error - Workspace x not found"


def test_switching_workspace_drops_the_job_index_caches(kaos, workspaces, project):
    assert kaos("workspace", "create", "-n", "mnist").exit_code == 0
    state.write_cache("train", ["a" * 32])
    state.write_cache("build-train", ["b" * 32])
    assert kaos("workspace", "set", "-n", "mnist").exit_code == 0  # the same workspace: caches stay
    assert state.read_cache("train") == ["a" * 32]
    assert kaos("workspace", "create", "-n", "other").exit_code == 0
    assert state.read_cache("train") is None and state.read_cache("build-train") is None
