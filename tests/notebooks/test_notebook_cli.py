"""`kaos notebook` on a LOCAL platform with the real CLI: one notebook per workspace and user (NOTEBOOK_EXISTS in
one line), kill (gone from the list, its processes gone, its route 404, its work directory kept), the token shown
again to its own user only, a 1.x client's view of `GET /notebook/<ws>`, a notebook that stops itself (as when
culled) is PIPELINE_STANDBY and the next deploy finds its work, and --data / --model attach data read-only."""
import configparser
import os
import re

from tests.support import wire_1x
from tests.support.cli import assert_one_line_failure, kaos
from tests.support.notebooks import jupyter, notebook_row, token_of, wait_state
from tests.support.platform import tiny_data_bundle, tiny_train_bundle, wait_for, wait_terminal

MODEL_ID = re.compile(r"\b[0-9a-f]{5}_[0-9a-f]{5}:[0-9a-f]{6}\b")


def _deploy(platform, *args):
    result = platform.kaos("notebook", "deploy", *args, timeout=300)
    assert result.code == 0, result
    return token_of(result.text)


def _processes_in(directory) -> list:
    """Pids of processes working in `directory` or naming it on their command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory) in cmdline:
            found.append(int(pid))
    return found


def test_a_second_deploy_is_notebook_exists_and_kill_removes_it_but_keeps_its_work(notebook_platform, gateway):
    platform = notebook_platform
    workspace = platform.workspace("twice")
    name = f"notebook-{workspace}-tester"
    token = _deploy(platform)
    again = platform.kaos("notebook", "deploy")
    assert_one_line_failure(again)
    assert again.err.strip() == f"Error - Notebook already exists: {name} (kill it first: kaos notebook kill -n {name})"
    answer = platform.api("POST", f"notebook/{workspace}", params={"user": "tester"})
    assert answer.status_code == 409 and answer.json()["error_code"] == "NOTEBOOK_EXISTS"

    wait_state(platform.api, workspace, name, "PIPELINE_RUNNING")
    saved = jupyter(gateway, name, "api/contents/mine.txt", token, "PUT",
                    json={"type": "file", "format": "text", "content": "kept\n"})
    assert saved.status_code in (200, 201), saved.text
    work = platform.data_dir / "notebook-work" / workspace / name
    assert _processes_in(work), "the notebook's Jupyter runs in its work directory"

    killed = platform.kaos("notebook", "kill", "-n", name, "-y")
    assert killed.code == 0 and f"Successfully killed notebook {name}" in killed.text, killed
    listed = platform.kaos("notebook", "list")
    assert listed.code == 0 and "RUNNING" not in listed.out, listed  # (its build stays in the BUILDING table)
    assert notebook_row(platform.api, workspace, name) is None
    assert _processes_in(work) == []
    gone = jupyter(gateway, name, "lab", token)
    assert gone.status_code == 404 and gone.json()["error_code"] == "PIPELINE_NOT_FOUND"
    assert (work / "mine.txt").read_text() == "kept\n"
    assert not (platform.data_dir / "notebooks" / name).exists()  # its log and its token's secret file
    assert_one_line_failure(platform.kaos("notebook", "kill", "-n", name, "-y"))
    # the workspace's kill takes its killed notebooks' work: a new workspace of the same name starts with none
    assert platform.kaos("workspace", "kill", "-n", workspace, "-y").code == 0
    assert not work.exists() and not work.parent.exists()


def test_the_token_is_shown_again_to_its_own_user_only(notebook_platform, tmp_path):
    platform = notebook_platform
    workspace = platform.workspace("tokens")
    name = f"notebook-{workspace}-tester"
    token = _deploy(platform)
    row = notebook_row(platform.api, workspace, name)
    assert token not in str(row) and "token" not in {key for key in row if key != "token_fingerprint"}
    mine = platform.kaos("notebook", "list", "--show-token")
    assert mine.code == 0 and token in mine.out, mine

    other = tmp_path / "other"  # another user's project on the same backend
    other.mkdir()
    context = configparser.ConfigParser(interpolation=None)
    context.read(platform.project / ".kaos" / "config")
    assert kaos(other, "init", "-e", context["context:LOCAL"]["url"], "-t", context["context:LOCAL"]["token"]).code == 0
    config = configparser.ConfigParser(interpolation=None)
    config.read(other / ".kaos" / "config")
    config["default"]["user"] = "someone"
    with open(other / ".kaos" / "config", "w") as handle:
        config.write(handle)
    assert kaos(other, "workspace", "set", "-n", workspace).code == 0
    theirs = kaos(other, "notebook", "list", "--show-token")
    assert theirs.code == 0 and name in theirs.out and token not in theirs.text, theirs
    assert "No token of a notebook of yours is saved in this directory" in theirs.text
    platform.kaos("notebook", "kill", "-n", name, "-y")


def test_a_1x_client_reads_the_notebook_list(notebook_platform):
    platform = notebook_platform
    workspace = platform.workspace("onex")
    _deploy(platform)
    body = platform.api("GET", f"notebook/{workspace}").json()
    listing = wire_1x.decode_response(wire_1x.Dict[str, wire_1x.Any], body)
    notebooks = wire_1x.decode(wire_1x.List[wire_1x.ServeInfo], listing["notebooks"], "$.response.notebooks")
    wire_1x.decode(wire_1x.List[wire_1x.SubmissionInfo], listing["building"], "$.response.building")
    assert [item.name for item in notebooks] == [f"notebook-{workspace}-tester"]
    assert notebooks[0].url.endswith(f"/notebook-{workspace}-tester/lab") and notebooks[0].user == "tester"
    platform.kaos("notebook", "kill", "-n", f"notebook-{workspace}-tester", "-y")


def test_a_notebook_that_stops_itself_is_standby_and_the_next_deploy_finds_its_work(notebook_platform, gateway):
    """Jupyter's idle culling ends the server with exit code 0, as its shutdown request does (used here: the
    culler checks once a minute)."""
    platform = notebook_platform
    workspace = platform.workspace("culled")
    name = f"notebook-{workspace}-tester"
    token = _deploy(platform)
    wait_state(platform.api, workspace, name, "PIPELINE_RUNNING")
    assert jupyter(gateway, name, "api/contents/notes.txt", token, "PUT",
                   json={"type": "file", "format": "text", "content": "still here\n"}).status_code in (200, 201)
    assert jupyter(gateway, name, "api/shutdown", token, "POST").status_code in (200, 202)
    row = wait_state(platform.api, workspace, name, "PIPELINE_STANDBY", timeout=120)
    assert "stopped by itself" in row["reason"] and "work directory is kept" in row["reason"]
    unavailable = jupyter(gateway, name, "lab", token)
    assert unavailable.status_code == 503 and "kaos notebook logs" in unavailable.json()["message"]

    new_token = _deploy(platform)  # replaces the stopped one: no NOTEBOOK_EXISTS
    assert new_token != token
    wait_state(platform.api, workspace, name, "PIPELINE_RUNNING")
    notes = jupyter(gateway, name, "api/contents/notes.txt", new_token)
    assert notes.status_code == 200 and notes.json()["content"] == "still here\n"
    assert jupyter(gateway, name, "api/contents/notes.txt", token).status_code == 403  # the old token is dead
    platform.kaos("notebook", "kill", "-n", name, "-y")


def test_data_and_model_are_attached_read_only(notebook_platform, gateway):
    platform = notebook_platform
    workspace = platform.workspace("attached")
    tiny_train_bundle(platform.project / "attach-train", "import os, sys\nout = sys.argv[1]\n"
                      "os.makedirs(out + '/model')\nopen(out + '/model/model.txt', 'w').write('weights')\n")
    tiny_data_bundle(platform.project / "attach-data", marker="7")
    trained = platform.kaos("train", "deploy", "-s", "attach-train", "-d", "attach-data", timeout=300)
    assert trained.code == 0, trained
    job_id = wait_for(lambda: (platform.jobs(workspace)["training"] or [None])[0], 600, what="a train job")["job_id"]
    assert wait_terminal(platform, workspace, job_id)["state"] == "JOB_SUCCESS"
    model_id = MODEL_ID.search(platform.kaos("train", "info", "-j", job_id).text).group(0)
    name = f"notebook-{workspace}-tester"
    token = _deploy(platform, "--model", model_id)
    row = wait_state(platform.api, workspace, name, "PIPELINE_RUNNING")
    assert row["model_id"] == model_id and any(item.startswith("features:") for item in row["data"])
    hex6 = model_id.rsplit(":", 1)[1]
    model = jupyter(gateway, name, f"api/contents/pfs/out/{hex6}/model/model.txt", token)
    assert model.status_code == 200 and model.json()["content"] == "weights"
    data = jupyter(gateway, name, "api/contents/pfs/data", token).json()["content"]
    trained_data = [item["name"] for item in data if item["name"].startswith("features:")]
    assert trained_data, data
    csv = jupyter(gateway, name, f"api/contents/pfs/data/{trained_data[0]}/training/data.csv", token)
    assert csv.status_code == 200 and csv.json()["content"].startswith("7,0,0")
    written = jupyter(gateway, name, f"api/contents/pfs/data/{trained_data[0]}/training/new.txt", token, "PUT",
                      json={"type": "file", "format": "text", "content": "x"})
    assert written.status_code >= 400, "the attached data is read-only"
    platform.kaos("notebook", "kill", "-n", name, "-y")
    unknown = platform.kaos("notebook", "deploy", "--data", "features:00000")
    assert_one_line_failure(unknown)
    assert f"There is no data bundle features:00000 in workspace {workspace}" in unknown.err
