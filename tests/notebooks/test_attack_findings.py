"""An attacker's pass over notebooks on a LOCAL platform (task h31), through the real CLI, the gateway and Jupyter's
own API and WebSockets, in bounded loops on 127.0.0.1:

- what held (kept as guards): the token on HTTP and on the WebSocket upgrade (missing, wrong, another user's),
  a token in the query string kept out of the logs, path tricks refused at the gateway, racing deploys (exactly
  one notebook), a kill while it starts and while its image builds;
- findings fixed: a notebook that turns its `pfs/` or a seeded directory into a link made the backend (root)
  create files where the link pointed on the next deploy (LOCAL, and DOCKER, whose staging seeds with the same
  function: tested here without an engine); `--cpu 500m` (what the refusal message itself suggests) and
  `--cpu abc` / `--gpu 1.5` were click usage errors (four lines, exit 2);
- fixed since: two workspaces' notebooks had one name (and on Kubernetes one work claim) when the user's name
  holds a '-' (kaos_model.ids.notebook_name);
- a bundle without jupyter failed five times with "exit code 127" as its reason (now at once, saying why);
- fixed since: Jupyter compared the token with `==` (the template's Jupyter config makes it constant-time).

It shares the session's LOCAL platform (tests/notebooks/conftest.py): the default notebook's environment is built
once. Waits are bounds against hanging, never speed claims."""
import concurrent.futures
import http.client
import json
import os
import uuid
from urllib.parse import urlsplit

import pytest
import requests
import websocket

from tests.notebooks.test_notebook_cli import _processes_in
from tests.support.cli import assert_one_line_failure
from tests.support.notebooks import jupyter, notebook_row, token_of, wait_state
from tests.support.platform import wait_for

WAIT = 120.0


def _deploy(platform, *args) -> str:
    result = platform.kaos("notebook", "deploy", *args, timeout=300)
    assert result.code == 0, result
    return token_of(result.text)


def _kill(platform, name: str) -> None:
    platform.kaos("notebook", "kill", "-n", name, "-y")


def _channels(gateway: str, name: str, kernel: str, headers=()) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://{urlsplit(gateway).netloc}/{name}/api/kernels/{kernel}/channels",
                                       header=list(headers), timeout=WAIT)


def _run_in_kernel(gateway: str, name: str, token: str, code: str) -> str:
    """Run `code` in a new kernel of the notebook over its WebSocket through the gateway; its printed output."""
    auth = {"Authorization": f"token {token}"}
    kernel = jupyter(gateway, name, "api/kernels", token, "POST", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    socket = _channels(gateway, name, kernel_id, [f"{key}: {value}" for key, value in auth.items()])
    message_id = uuid.uuid4().hex
    socket.send(json.dumps({"header": {"msg_id": message_id, "username": "attacker", "session": uuid.uuid4().hex,
                                       "msg_type": "execute_request", "version": "5.3"},
                            "parent_header": {}, "metadata": {}, "channel": "shell",
                            "content": {"code": code, "silent": False, "store_history": False}}))
    output = []
    try:
        while True:
            message = json.loads(socket.recv())
            if message.get("parent_header", {}).get("msg_id") != message_id:
                continue
            if message["msg_type"] == "stream":
                output.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                output.append(f"ERROR {message['content']['ename']}: {message['content']['evalue']}\n")
            elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return "".join(output)
    finally:
        socket.close()
        jupyter(gateway, name, f"api/kernels/{kernel_id}", token, "DELETE")


def _raw_status(gateway: str, path: str) -> int:
    """The status of `GET <path>` sent exactly as written (no client normalises its dot segments)."""
    parts = urlsplit(gateway)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


# -- what held ---------------------------------------------------------------------------------------------------
def test_the_token_guards_http_and_websockets_and_stays_out_of_the_logs(notebook_platform, gateway):
    platform = notebook_platform
    workspace = platform.workspace("guard")
    mine, theirs = f"notebook-{workspace}-tester", f"notebook-{workspace}-other"
    token = _deploy(platform)
    other = platform.api("POST", f"notebook/{workspace}", params={"user": "other"})
    assert other.status_code == 200, other.text
    other_token = other.json()["token"]
    try:
        wait_state(platform.api, workspace, mine, "PIPELINE_RUNNING")
        wait_state(platform.api, workspace, theirs, "PIPELINE_RUNNING")
        for wrong in (None, "wrong", token[:-1], other_token):
            assert jupyter(gateway, mine, "api/contents", wrong).status_code == 403, wrong
        assert jupyter(gateway, mine, "api/contents", token).status_code == 200
        assert jupyter(gateway, theirs, "api/contents", token).status_code == 403  # mine opens only mine
        login = jupyter(gateway, mine, "lab", None)
        assert login.status_code == 302 and "/login" in login.headers["Location"]

        kernel = jupyter(gateway, mine, "api/kernels", token, "POST", json={"name": "python3"}).json()["id"]
        for headers in ([], ["Authorization: token wrong"], [f"Authorization: token {other_token}"]):
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                _channels(gateway, mine, kernel, headers)
            assert refused.value.status_code == 403, headers
        jupyter(gateway, mine, f"api/kernels/{kernel}", token, "DELETE")
        assert "42" in _run_in_kernel(gateway, mine, token, "print(6 * 7)")

        assert requests.get(f"{gateway}/{mine}/api/status", params={"token": token}, timeout=WAIT).ok
        refused = requests.get(f"{gateway}/{mine}/api/contents", params={"token": other_token}, timeout=WAIT)
        assert refused.status_code == 403  # Jupyter logs a refusal, with the query's token as [secret]
        logs = wait_for(lambda: (lambda got: got if "token=[secret]" in got.out else None)(
            platform.kaos("notebook", "logs", "-n", mine)), WAIT, what="the refusal in the notebook's log")
        assert token not in logs.text and other_token not in logs.text
        assert token not in (platform.project / ".kaos" / "LOCAL" / "backend.log").read_text(errors="replace")

        for trick in (f"/{mine}/../api/workspace", f"/{mine}/%2e%2e/%2e%2e/api/workspace",
                      f"/{mine}/..%2f..%2fapi/workspace", f"/{mine}%2f../api/workspace"):
            assert _raw_status(gateway, trick) == 400, trick
        assert _raw_status(gateway, f"/notebook-{workspace}-nobody/lab") == 404

        platform.workspace("guard-else")  # kill -n from another workspace does not reach this one's notebook
        assert_one_line_failure(platform.kaos("notebook", "kill", "-n", mine, "-y"))
        assert notebook_row(platform.api, workspace, mine)["state"] == "PIPELINE_RUNNING"
    finally:
        assert platform.kaos("workspace", "set", "-n", workspace).code == 0
        _kill(platform, theirs)
        _kill(platform, mine)


def test_racing_deploys_make_exactly_one_notebook_and_a_kill_while_it_starts_ends_it(notebook_platform):
    platform = notebook_platform
    workspace = platform.workspace("race")

    def deploy(_):
        answer = platform.api("POST", f"notebook/{workspace}", params={"user": "racer"})
        return answer.status_code, answer.json().get("error_code")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = sorted(pool.map(deploy, range(6)), key=str)
    assert answers == [(200, None)] + [(409, "NOTEBOOK_EXISTS")] * 5, answers
    tokens = list((platform.data_dir / "notebooks" / f"notebook-{workspace}-racer").glob("token-*"))
    assert len(tokens) == 1, tokens  # the losers left no secret behind
    name = f"notebook-{workspace}-racer"  # killed while it starts (its image is built: nothing to wait for)
    killed = platform.kaos("notebook", "kill", "-n", name, "-y")
    assert killed.code == 0, killed
    assert notebook_row(platform.api, workspace, name) is None
    assert _processes_in(platform.data_dir / "notebook-work" / workspace / name) == []


def _no_jupyter_bundle(root):
    """A notebook bundle whose requirements do not install jupyter (a small, quick build)."""
    (root / "nb" / "model").mkdir(parents=True)
    (root / "nb" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (root / "nb" / "model" / "requirements.txt").write_text("six\n")
    return root


def test_a_kill_while_the_image_builds_leaves_nothing_to_start(notebook_platform):
    platform = notebook_platform
    workspace = platform.workspace("killbuild")
    name = f"notebook-{workspace}-tester"
    deployed = platform.kaos("notebook", "deploy", "-s", str(_no_jupyter_bundle(platform.project / "killbuild")),
                             "-o", "json", timeout=300)
    assert deployed.code == 0, deployed
    build = json.loads(deployed.out)["job_id"]
    assert build, deployed  # a new image: it builds
    killed = platform.kaos("notebook", "kill", "-n", name, "-y")
    assert killed.code == 0, killed
    wait_for(lambda: platform.job(workspace, build)["state"] in ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED"),
             600, what="the build to end")
    assert notebook_row(platform.api, workspace, name) is None
    assert not (platform.data_dir / "notebooks" / name).exists()


# -- findings, fixed ---------------------------------------------------------------------------------------------
ESCAPE = """
import os, shutil
shutil.rmtree("pfs")
os.symlink({pfs!r}, "pfs")
shutil.rmtree(".jupyter")
os.symlink({config!r}, ".jupyter")
print("LINKED", sorted(os.listdir(".")))
"""


def test_a_notebook_cannot_make_the_backend_write_outside_its_work_directory(notebook_platform, gateway, tmp_path):
    """The notebook's user owns its work directory; the backend (root) remakes `pfs/` and seeds the bundle's
    files there at every start. Links the notebook left there must not be followed."""
    platform = notebook_platform
    workspace = platform.workspace("escape")
    name = f"notebook-{workspace}-tester"
    targets = {"pfs": tmp_path / "pfs-target", "config": tmp_path / "config-target"}
    for target in targets.values():
        target.mkdir()  # root's, out of the notebook's reach
    token = _deploy(platform)
    wait_state(platform.api, workspace, name, "PIPELINE_RUNNING")
    linked = _run_in_kernel(gateway, name, token, ESCAPE.format(**{key: str(value) for key, value in targets.items()}))
    assert "LINKED" in linked, linked
    _kill(platform, name)

    token = _deploy(platform)
    wait_state(platform.api, workspace, name, "PIPELINE_RUNNING")
    for target in targets.values():
        assert list(target.iterdir()) == [], target
    work = platform.data_dir / "notebook-work" / workspace / name
    assert (work / "pfs" / "data").is_dir() and not (work / "pfs").is_symlink()
    assert (work / ".jupyter").is_symlink()  # the notebook's own entry is left as it made it
    assert jupyter(gateway, name, "api/contents/pfs/data", token).status_code == 200
    _kill(platform, name)


@pytest.mark.parametrize("option, value, words", [
    ("--cpu", "abc", "Incorrect CPU request abc"),
    ("--gpu", "1.5", "Incorrect GPU request 1.5"),
    ("--cpu", "-1", "Incorrect CPU request -1"),
    ("--memory", "12XB", "Incorrect memory request 12XB"),
])
def test_a_bad_resource_is_one_line_and_exit_1(notebook_platform, option, value, words):
    platform = notebook_platform
    workspace = platform.workspace(f"resources-{option.strip('-')}-{sum(map(ord, value))}")
    refused = platform.kaos("notebook", "deploy", option, value)
    assert_one_line_failure(refused)
    assert refused.err.startswith(f"Error - {words}"), refused
    assert notebook_row(platform.api, workspace, f"notebook-{workspace}-tester") is None


def test_cpu_in_millicores_is_accepted_as_the_refusal_suggests(notebook_platform):
    platform = notebook_platform
    workspace = platform.workspace("millicores")
    deployed = platform.kaos("notebook", "deploy", "--cpu", "500m", "-o", "json", timeout=300)
    assert deployed.code == 0, deployed
    assert platform.api("GET", f"notebook/{workspace}").status_code == 200
    _kill(platform, f"notebook-{workspace}-tester")


# -- findings ----------------------------------------------------------------------------------------------------
def test_two_workspaces_never_share_a_notebook(notebook_platform):
    platform = notebook_platform
    first, second = platform.workspace("pair"), platform.workspace("pair-x")
    mine = platform.api("POST", f"notebook/{first}", params={"user": "x-y"})
    assert mine.status_code == 200, mine.text
    try:
        theirs = platform.api("POST", f"notebook/{second}", params={"user": "y"})
        assert theirs.status_code == 200, theirs.text
        assert theirs.json()["notebook"] != mine.json()["notebook"]
        platform.api("DELETE", f"notebook/{second}/{theirs.json()['notebook']}")
    finally:
        platform.api("DELETE", f"notebook/{first}/{mine.json()['notebook']}")


def test_a_bundle_without_jupyter_says_so_in_the_list(notebook_platform):
    platform = notebook_platform
    workspace = platform.workspace("nojupyter")
    name = f"notebook-{workspace}-tester"
    _deploy(platform, "-s", str(_no_jupyter_bundle(platform.project / "nojupyter")))
    try:
        row = wait_state(platform.api, workspace, name, "PIPELINE_FAILURE", timeout=600)
        assert "no jupyter" in row["reason"] and row["restarts"] <= 1, row
    finally:
        _kill(platform, name)


TOKEN_CHECK = """
import hmac, os
from unittest import mock
from traitlets.config.loader import PyFileConfigLoader
config = PyFileConfigLoader("jupyter_notebook_config.py", path=os.environ["JUPYTER_CONFIG_DIR"]).load_config()
provider = config.ServerApp.identity_provider_class(token="t" * 48)
with mock.patch("hmac.compare_digest", wraps=hmac.compare_digest) as spy:
    wrong = [provider.token == "x" * 48, "x" * 48 == provider.token, provider.token != "t" * 48]
    right = [provider.token == "t" * 48, "t" * 48 == provider.token, provider.token != "x" * 48]
print("CONSTANT-TIME" if spy.call_count == 6 and not any(wrong) and all(right) else f"PLAIN == {spy.call_count}")
"""


def test_the_token_is_compared_in_constant_time(notebook_platform, gateway):
    """jupyter_server compares the token with == (IdentityProvider.get_user_token, process_login_form); the
    template's Jupyter config (the server's, JUPYTER_CONFIG_DIR) sets an identity provider whose token compares in
    constant time from either side of ==, and the notebook still takes its token (this very request)."""
    platform = notebook_platform
    workspace = platform.workspace("timing")
    name = f"notebook-{workspace}-tester"
    token = _deploy(platform)
    try:
        wait_state(platform.api, workspace, name, "PIPELINE_RUNNING")
        assert "CONSTANT-TIME" in _run_in_kernel(gateway, name, token, TOKEN_CHECK)
    finally:
        _kill(platform, name)


def test_seeding_a_work_directory_never_follows_what_the_notebook_linked(tmp_path):
    """The docker executor seeds its notebooks' work directories (bind-mounted into a container that runs as
    root) with the same function: the links a notebook leaves there are never followed."""
    from kaos_backend.executors.local_staging import remove_entry, seed_work_dir

    model = tmp_path / "model"
    (model / ".jupyter").mkdir(parents=True)
    (model / ".jupyter" / "jupyter_notebook_config.py").write_text("c = get_config()\n")
    (model / "deep" / "er").mkdir(parents=True)
    (model / "deep" / "er" / "notes.txt").write_text("seed\n")
    (model / "example.ipynb").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    (work / "deep").mkdir(parents=True)
    (work / ".jupyter").symlink_to(outside, target_is_directory=True)
    (work / "deep" / "er").symlink_to(outside, target_is_directory=True)
    (work / "example.ipynb").symlink_to(outside / "example.ipynb")  # dangling: still the notebook's own entry
    seed_work_dir(model, work)
    assert list(outside.iterdir()) == []
    assert (work / "example.ipynb").is_symlink()

    fresh = tmp_path / "fresh"
    seed_work_dir(model, fresh)
    assert (fresh / "deep" / "er" / "notes.txt").read_text() == "seed\n"
    assert (fresh / ".jupyter" / "jupyter_notebook_config.py").is_file()

    (work / "pfs").symlink_to(outside, target_is_directory=True)
    (outside / "keep.txt").write_text("mine\n")
    remove_entry(work / "pfs")
    assert not os.path.lexists(work / "pfs") and (outside / "keep.txt").read_text() == "mine\n"
    remove_entry(work / "pfs")  # nothing there: nothing to do


def test_two_workspaces_never_share_a_kubernetes_work_claim():
    from kaos_backend.executors import kubernetes_notebook
    from tests.kubernetes.test_notebook_spec import notebook_spec

    first, second = notebook_spec(workspace="pair", user="x-y"), notebook_spec(workspace="pair-x", user="y")
    assert kubernetes_notebook.work_claim_name(first) != kubernetes_notebook.work_claim_name(second)
