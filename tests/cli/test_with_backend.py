"""The CLI against the real backend (`python -m kaos_backend serve`, from tests/conftest.py's `backend`)."""
import os
from pathlib import Path

import pytest

pytest.importorskip("kaos_backend.app")

from kaos_cli.client import KaosClient  # noqa: E402
from kaos_cli.errors import RequestError, UnauthorizedError  # noqa: E402
from kaos_cli.state import Config  # noqa: E402
from tests.cli.conftest import one_line  # noqa: E402


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def source_tree_on_path(monkeypatch):
    """The backend process starts in the test's (temporary) working directory: let it import the source tree
    even when kaos is not installed."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def initialised(backend, kaos):
    result = kaos("init", "-e", backend.url, "-t", backend.token)
    assert result.exit_code == 0, result.output
    return backend


def test_init_success(backend, kaos):
    result = kaos("init", "-e", backend.url, "-t", backend.token)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Info - kaos successfully connected to {backend.url}"
    assert Config.load().context("remote")["token"] == backend.token


def test_init_wrong_token(backend, kaos, project):
    assert one_line(kaos("init", "-e", backend.url, "-t", "wrong")) == \
        f"Error - Unauthorized token - the backend at {backend.url} rejected it"
    assert not (project / ".kaos").exists()


def test_workspace_flow(kaos, initialised):
    empty = kaos("workspace", "list")
    assert empty.exit_code == 0
    assert "There are currently no active workspaces - first run kaos workspace create" in empty.output

    for name in ("mnist", "ab", "a"):
        created = kaos("workspace", "create", "-n", name)
        assert created.exit_code == 0, created.output
        assert created.output.strip() == f"Info - Successfully set {name} workspace"
    assert one_line(kaos("workspace", "create", "-n", "mnist")) == (
        "Warning - Workspace mnist already exists. Please use `kaos workspace set` to select a workspace")
    assert one_line(kaos("workspace", "create", "-n", "Bad_Name")).startswith("Error - Invalid workspace name")

    listed = kaos("workspace", "list").output
    assert "| 0   | a     |" in listed and "| 1   | ab    |" in listed and "| 2   | mnist |" in listed

    assert kaos("workspace", "set", "-i", "2").output.strip() == "Info - Successfully set mnist workspace"
    assert kaos("workspace", "current").output.strip() == "Info - Workspace mnist is currently set"
    info = kaos("workspace", "info").output.splitlines()
    assert info[0] == "--- Workspace mnist ---" and "Pipelines:" in info and "Repos:" in info
    assert "- source-train-mnist" in info

    missing = kaos("workspace", "set", "-n", "mnst")
    assert missing.exit_code == 1 and "- mnist" in missing.output

    assert kaos("workspace", "set", "-n", "a").exit_code == 0
    aborted = kaos("workspace", "kill", input="n\n")
    assert aborted.exit_code == 1 and "Info - Workspace a kill operation aborted" in aborted.output
    killed = kaos("workspace", "kill", input="y\n")
    assert killed.exit_code == 0
    assert killed.output.splitlines()[-1] == "Info - Successfully killed all a resources"
    assert Config.load().workspace is None
    listed = kaos("workspace", "list").output
    assert "| ab    |" in listed and "| mnist |" in listed and "| a     |" not in listed  # exact names only
    assert one_line(kaos("workspace", "current")) == \
        "Warning - workspace not defined - first run kaos workspace set"


def test_wrong_token_in_config_is_one_line(kaos, initialised, project):
    config = Config.load()
    config.set_context("remote", url=initialised.url, token="not-it", kind="remote")
    config.save()
    assert one_line(kaos("workspace", "list")) == \
        f"Error - Unauthorized token - the backend at {initialised.url} rejected it"


def test_sdk_upload_by_digest(backend, tmp_path):
    """The second upload of identical bytes is sent by digest (GET /blobs says the backend has them)."""
    from kaos_cli.bundles import zip_directory

    data = tmp_path / "data" / "features"
    data.mkdir(parents=True)
    (data / "x.csv").write_text("a,b\n1,2\n")
    bundle = zip_directory(tmp_path / "data", tmp_path / "data.zip", progress=False)
    client = KaosClient(backend.url, backend.token, "tester", progress=False)
    client.create_workspace("sdk")
    first = client.upload_features("sdk", bundle)
    assert first.glob_name.startswith("features:")
    from kaos_cli.client import sha256_file

    assert client.blob_exists(sha256_file(bundle))
    assert client.upload_features("sdk", bundle) == first
    with pytest.raises(RequestError):
        client.workspace_info("nope")
    with pytest.raises(UnauthorizedError):
        KaosClient(backend.url, "wrong").list_workspaces()


def test_limits_that_cannot_be_enforced_are_said_once_and_logged(tmp_path, kaos, project):
    """Without cgroups (here: configured so), --memory and --cpu are recorded, the deploy says so in one line and
    the training's log repeats it."""
    import time

    from tests.support.backend import BackendProcess
    from tests.support.platform import tiny_data_bundle, tiny_train_bundle

    server = BackendProcess(tmp_path / "limits-data", env={"KAOS_CONTAINMENT": "subreaper"}).start()
    try:
        assert kaos("init", "-e", server.url, "-t", server.token).exit_code == 0
        assert kaos("workspace", "create", "-n", "limits").exit_code == 0
        code = tiny_train_bundle(tmp_path / "code", "import os, sys\nos.makedirs(sys.argv[1] + '/model')\n")
        deployed = kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")),
                        "--memory", "50Mi", "--cpu", "1")
        assert deployed.exit_code == 0, deployed.output
        warnings = [line for line in deployed.output.splitlines() if line.startswith("Warning - ")]
        assert warnings == ["Warning - --memory and --cpu are recorded but not enforced: kaos is configured without "
                            "cgroups: KAOS_CONTAINMENT=subreaper"]
        client = KaosClient(server.url, server.token)
        deadline = time.monotonic() + 300
        while not client.train_list("limits").training or \
                client.train_list("limits").training[0].state not in ("JOB_SUCCESS", "JOB_FAILURE"):
            assert time.monotonic() < deadline, "the training did not end"
            time.sleep(0.2)
        job_id = client.train_list("limits").training[0].job_id
        log = "".join(client.train_logs("limits", job_id))
        assert "memory 50Mi, cpu 1 not enforced" in log
    finally:
        server.stop()


def test_a_deploy_that_starts_nothing_says_which_job_stands_and_a_kill_starts_nothing(tmp_path, kaos, project):
    """A newcomer's finding: `train deploy --memory 400Mi` of inputs training with 300Mi printed the inputs table
    only (it starts nothing), and `train kill` of that training then started one with 400Mi at once. The deploy
    now says which job stands and why; the kill ends it for good; a deploy after the kill tries the new limits."""
    from tests.support.backend import BackendProcess
    from tests.support.platform import tiny_data_bundle, tiny_train_bundle, wait_for

    server = BackendProcess(tmp_path / "standing-data", env={"KAOS_CONTAINMENT": "subreaper"}).start()
    try:
        assert kaos("init", "-e", server.url, "-t", server.token).exit_code == 0
        assert kaos("workspace", "create", "-n", "standing").exit_code == 0
        client = KaosClient(server.url, server.token)
        code = tiny_train_bundle(tmp_path / "code", "import time\ntime.sleep(600)\n")
        data = tiny_data_bundle(tmp_path / "data")

        def deploy(memory):
            deployed = kaos("train", "deploy", "-s", str(code), "-d", str(data), "--memory", memory)
            assert deployed.exit_code == 0, deployed.output
            return [line for line in deployed.output.splitlines() if line.startswith("Info - These inputs")]

        def jobs():
            return [(job.job_id, job.state) for job in client.train_list("standing").training]

        assert deploy("300Mi") == []
        [(first, _)] = wait_for(lambda: [job for job in jobs() if job[1] == "JOB_RUNNING"], 300, what="it to run")
        assert deploy("400Mi") == [
            f"Info - These inputs are training in job {first} (JOB_RUNNING): nothing new starts, and other "
            "--cpu/--memory/--gpu given now are not kept for later: deploy them again once it has failed or been "
            "killed"]
        assert kaos("train", "kill", "-j", first, input="y\n").exit_code == 0
        wait_for(lambda: dict(jobs()).get(first) == "JOB_KILLED", 120, what="the kill")
        assert deploy("300Mi") == [f"Info - These inputs ended in job {first} (JOB_KILLED) with these same "
                                   "limits: nothing new starts; other --cpu/--memory/--gpu try them again"]
        assert [job_id for job_id, _ in jobs()] == [first]  # the kill started nothing, nor the same limits
        assert deploy("400Mi") == []  # after the kill: a way out
        wait_for(lambda: len(jobs()) == 2, 120, what="the new limits' training")
    finally:
        server.stop()
