"""Issue 2 acceptance: the embedded platform stood up by `kaos build deploy -c LOCAL`, driven by the real CLI."""
import os
import re
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.support.backend import free_port
from tests.support.cli import assert_one_line_failure, kaos


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _backend_pid(cwd: Path) -> int:
    config = (cwd / ".kaos" / "config").read_text()
    return int(re.search(r"^pid\s*=\s*(\d+)", config, re.M).group(1))


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A LOCAL platform deployed in its own project directory; destroyed afterwards."""
    cwd = tmp_path_factory.mktemp("project")
    port = free_port()
    deployed = kaos(cwd, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port))
    assert deployed.code == 0, deployed
    yield cwd, port, deployed
    kaos(cwd, "destroy", "-c", "LOCAL", "-y")


def _token(cwd: Path) -> str:
    return re.search(r"^token\s*=\s*(\S+)", (cwd / ".kaos" / "config").read_text(), re.M).group(1)


def test_deploy_prints_the_endpoint(platform):
    cwd, port, deployed = platform
    assert f"Info - Endpoint successfully set to http://127.0.0.1:{port}/api/" in deployed.out
    assert "Info - Successfully built kaos environment" in deployed.out
    assert requests.get(f"http://127.0.0.1:{port}/api/health", headers={"X-Token": _token(cwd)}).ok
    active = kaos(cwd, "build", "active")
    assert "Info - Active context is - LOCAL" in active.out


def test_second_deploy_without_force_aborts(platform):
    cwd, port, _ = platform
    again = kaos(cwd, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port))
    assert again.code == 1
    assert "Aborting - kaos backend is already built." in again.text


def test_workspace_story(platform):
    cwd, _, _ = platform
    created = kaos(cwd, "workspace", "create", "-n", "mnist")
    assert created.code == 0, created
    assert "Info - Successfully set mnist workspace" in created.out

    listed = kaos(cwd, "workspace", "list")
    assert listed.code == 0, listed
    assert re.search(r"\|\s*0\s*\|\s*mnist\s*\|", listed.out), listed.out

    current = kaos(cwd, "workspace", "current")
    assert "Info - Workspace mnist is currently set" in current.out

    template = kaos(cwd, "template", "get", "--name", "mnist")
    assert template.code == 0, template
    assert "Info - Successfully loaded mnist template" in template.out
    assert (cwd / "templates/mnist/model-train/mnist/model/train").is_file()
    assert os.access(cwd / "templates/mnist/model-train/mnist/model/train", os.X_OK)
    assert (cwd / "templates/mnist/data/features/training").is_dir()

    info = kaos(cwd, "workspace", "info")
    assert info.code == 0, info
    assert "--- Workspace mnist ---" in info.out
    assert "Pipelines:" in info.out and "Repos:" in info.out
    assert "- source-train-mnist" in info.out

    duplicate = kaos(cwd, "workspace", "create", "-n", "mnist")
    assert_one_line_failure(duplicate)
    assert "Workspace mnist already exists" in duplicate.text

    aborted = kaos(cwd, "workspace", "kill", input="n\n")
    assert aborted.code == 1
    assert "Info - Workspace mnist kill operation aborted" in aborted.text

    killed = kaos(cwd, "workspace", "kill", input="y\n")
    assert killed.code == 0, killed
    assert "Info - Successfully killed all mnist resources" in killed.out

    empty = kaos(cwd, "workspace", "list")
    assert "There are currently no active workspaces - first run kaos workspace create" in empty.text


def test_killing_a_leaves_ab_and_train(platform):
    cwd, _, _ = platform
    for name in ("ab", "train", "a"):
        assert kaos(cwd, "workspace", "create", "-n", name).code == 0
    killed = kaos(cwd, "workspace", "kill", input="y\n")  # "a" is the current workspace
    assert "Info - Successfully killed all a resources" in killed.out
    names = kaos(cwd, "workspace", "list").out
    assert re.search(r"\|\s*ab\s*\|", names) and re.search(r"\|\s*train\s*\|", names)
    assert not re.search(r"\|\s*a\s*\|", names)
    for name in ("ab", "train"):
        assert kaos(cwd, "workspace", "set", "-n", name).code == 0
        assert kaos(cwd, "workspace", "kill", input="y\n").code == 0


def test_invalid_names_are_refused(platform):
    cwd, _, _ = platform
    for name in ("My_Workspace", "under_score", "-x"):
        result = kaos(cwd, "workspace", "create", "-n", name)
        assert_one_line_failure(result)
        assert "Invalid workspace name" in result.text


def test_set_unknown_workspace_suggests_and_fails(platform):
    cwd, _, _ = platform
    assert kaos(cwd, "workspace", "create", "-n", "mnist2").code == 0
    result = kaos(cwd, "workspace", "set", "-n", "mnst2")
    assert result.code == 1
    assert "Workspace mnst2 does not exist. Did you mean one of these?" in result.text
    assert "mnist2" in result.text
    assert "Traceback" not in result.text
    assert kaos(cwd, "workspace", "kill", input="y\n").code == 0


def test_bad_index_is_one_line(platform):
    cwd, _, _ = platform
    (cwd / ".kaos" / ".workspace.cache").unlink(missing_ok=True)
    no_cache = kaos(cwd, "workspace", "set", "-i", "0")
    assert_one_line_failure(no_cache)
    assert "Index not available until running `kaos workspace list`" in no_cache.text
    kaos(cwd, "workspace", "list")
    out_of_range = kaos(cwd, "workspace", "set", "-i", "99")
    assert_one_line_failure(out_of_range)
    assert "Index 99 does not exist" in out_of_range.text


def test_no_workspace_is_one_line(platform, tmp_path):
    cwd, port, _ = platform
    other = tmp_path / "other"
    other.mkdir()
    assert kaos(other, "init", "-e", f"http://127.0.0.1:{port}/api/", "-t", _token(cwd)).code == 0
    result = kaos(other, "workspace", "current")
    assert_one_line_failure(result)
    assert "workspace not defined - first run kaos workspace set" in result.text


def test_init_verifies_endpoint_and_token(platform, tmp_path):
    cwd, port, _ = platform
    wrong = kaos(tmp_path, "init", "-e", f"http://127.0.0.1:{port}/api/", "-t", "wrong-token")
    assert_one_line_failure(wrong)
    assert not (tmp_path / ".kaos" / "config").exists()

    down = kaos(tmp_path, "init", "-e", f"http://127.0.0.1:{free_port()}/api/", "-t", "x")
    assert_one_line_failure(down)
    assert "is unreachable!" in down.text

    right = kaos(tmp_path, "init", "-e", f"http://127.0.0.1:{port}/api/", "-t", _token(cwd))
    assert right.code == 0, right
    assert f"Info - kaos successfully connected to http://127.0.0.1:{port}/api/" in right.out


def test_wrong_token_and_endpoint_down_are_one_line(platform, tmp_path):
    cwd, port, _ = platform
    token = _token(cwd)
    assert kaos(tmp_path, "init", "-e", f"http://127.0.0.1:{port}/api/", "-t", token).code == 0
    config = tmp_path / ".kaos" / "config"
    original = config.read_text()

    config.write_text(original.replace(token, "not-the-token"))
    unauthorized = kaos(tmp_path, "workspace", "list")
    assert_one_line_failure(unauthorized)
    assert "nauthorized" in unauthorized.text

    config.write_text(original.replace(f":{port}/", f":{free_port()}/"))
    down = kaos(tmp_path, "workspace", "list")
    assert_one_line_failure(down)
    assert "Please ensure the endpoint is available" in down.text


def test_template_commands_need_no_init(tmp_path):
    listed = kaos(tmp_path, "template", "list")
    assert listed.code == 0, listed
    for name in ("mnist", "property-val", "notebook"):
        assert name in listed.out
    assert kaos(tmp_path, "template", "get", "-n", "property-val").code == 0
    marker = tmp_path / "templates/property-val/mine.txt"
    marker.write_text("keep me")
    refused = kaos(tmp_path, "template", "get", "-n", "property-val", input="n\n")
    assert marker.read_text() == "keep me"
    assert "already exists" in refused.text
    unknown = kaos(tmp_path, "template", "get", "-n", "nope")
    assert_one_line_failure(unknown)
    assert not (tmp_path / ".kaos").exists()


def test_destroy_stops_only_its_own_context(platform, tmp_path):
    cwd, port, _ = platform
    # tmp_path holds a `remote` context pointing at the module's platform, and builds its own LOCAL one.
    assert kaos(tmp_path, "init", "-e", f"http://127.0.0.1:{port}/api/", "-t", _token(cwd)).code == 0
    own_port = free_port()
    assert kaos(tmp_path, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(own_port)).code == 0
    pid = _backend_pid(tmp_path)
    assert _pid_alive(pid)

    listed = kaos(tmp_path, "build", "list")
    assert "LOCAL" in listed.out and "remote" in listed.out

    destroyed = kaos(tmp_path, "destroy", "-c", "LOCAL", "-y")
    assert destroyed.code == 0, destroyed
    assert "Info - Successfully destroyed kaos environment" in destroyed.out
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(pid)
    assert not (tmp_path / ".kaos" / "LOCAL").exists()

    # The other platform is untouched and its context is still there.
    assert requests.get(f"http://127.0.0.1:{port}/api/health", headers={"X-Token": _token(cwd)}).ok
    listed = kaos(tmp_path, "build", "list")
    assert "remote" in listed.out and "LOCAL" not in listed.out
    assert kaos(tmp_path, "build", "set", "-c", "remote").code == 0
    assert kaos(tmp_path, "workspace", "list").code == 0

    again = kaos(tmp_path, "destroy", "-c", "LOCAL", "-y")
    assert again.code == 1
    assert "has not been deployed" in again.text


def test_backend_restart_keeps_workspaces(tmp_path):
    port = free_port()
    assert kaos(tmp_path, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port)).code == 0
    try:
        assert kaos(tmp_path, "workspace", "create", "-n", "kept").code == 0
        os.killpg(_backend_pid(tmp_path), signal.SIGKILL)
        redeployed = kaos(tmp_path, "build", "deploy", "-c", "LOCAL", "-y", "-f", "--port", str(port))
        assert redeployed.code == 0, redeployed
        assert "kept" in kaos(tmp_path, "workspace", "list").out
    finally:
        kaos(tmp_path, "destroy", "-c", "LOCAL", "-y")
