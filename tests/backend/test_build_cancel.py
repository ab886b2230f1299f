"""Killing an endpoint or a notebook while its image builds, on a real backend (LOCAL executor): the build that
nobody else waits for is cancelled (JOB_KILLED, its processes stopped) through the executor contract the train
builds' kill uses; a build that another live workload waits for goes on. While a workload waits for its build, the
gateway's 503 points at the build's log (`kaos serve build-logs -j <id>`), not at the workload's empty one.

The slow build is pip installing a local package whose setup.py writes its pid to a shared directory and then
waits for a gate file there (that never comes, unless a test opens it)."""
from pathlib import Path

import pytest
import requests

from tests.backend.helpers import zip_bytes
from tests.support.platform import TERMINAL, wait_for
from tests.support.supervision import alive

SETUP_PY = """
import os, time
try:
    open({pid_file!r}, "w").write(str(os.getpid()))
except OSError:  # written by an earlier build (of another workload user): that pid is the test's
    pass
while not os.path.exists({gate!r}):
    time.sleep(0.2)
from setuptools import setup
setup(name="pkg{tag}", version="1", py_modules=[])
"""


def api(server, method, path, **kwargs) -> requests.Response:
    response = requests.request(method, server.url + path, headers={"X-Token": server.token}, timeout=60, **kwargs)
    assert response.status_code < 400, (method, path, response.status_code, response.text)
    return response


def slow_bundle(shared: Path, tag: str, serve: bool = True, readme: str = None) -> bytes:
    """A serve (or notebook) bundle whose image build blocks in its package's setup.py until `<shared>/<tag>.gate`
    exists; the setup.py's pid goes to `<shared>/<tag>.pid`."""
    setup_py = SETUP_PY.format(pid_file=str(shared / f"{tag}.pid"), gate=str(shared / f"{tag}.gate"), tag=tag)
    entries = {f"{tag}/Dockerfile": "FROM python:3.11-slim\n", f"{tag}/model/requirements.txt": "./pkg\n",
               f"{tag}/model/pkg/setup.py": setup_py}
    if serve:
        entries.update({f"{tag}/model/__init__.py": "", f"{tag}/model/web-requirements.txt": "",
                        f"{tag}/model/serve": "#!/bin/sh\nexec python3 -m http.server \"$PORT\"\n"})
    if readme is not None:  # another bundle, the same model/: the same image
        entries[f"{tag}/README"] = readme
    return zip_bytes(entries)  # the same bytes each time: one bundle


def deploy(server, workspace: str, bundle: bytes) -> dict:
    return api(server, "POST", f"inference/{workspace}/None", data=bundle).json()


def build_state(server, route: str, job_id: str) -> str:
    building = api(server, "GET", route).json()["response"]["building"]
    return next(job["state"] for job in building if job["job_id"] == job_id)


def blocked_pid(shared: Path, tag: str) -> int:
    """The pid of the build's setup.py, once it runs (and blocks)."""
    pid_file = shared / f"{tag}.pid"
    return int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=300,
                        what=f"the build of {tag} to run its setup.py"))


def killed(server, route: str, job_id: str) -> bool:
    return build_state(server, route, job_id) == "JOB_KILLED"


@pytest.fixture
def workspace(backend):
    api(backend, "POST", "workspace/cancel")
    return "cancel"


def test_killing_an_endpoint_cancels_its_build_unless_another_endpoint_waits_for_it(backend, workspace,
                                                                                       shared_dir):
    route = f"inference/{workspace}"
    shared = deploy(backend, workspace, slow_bundle(shared_dir, "shared"))
    build = shared["job_id"]
    assert build, shared
    again = deploy(backend, workspace, slow_bundle(shared_dir, "shared"))  # the same bundle: the same build
    assert again["job_id"] == build, again
    pid = blocked_pid(shared_dir, "shared")

    # the 503 of an endpoint that waits for its image points at the build's log
    answer = requests.post(f"{backend.root}/{shared['endpoint']}/invocations", data=b"{}", timeout=30)
    assert answer.status_code == 503, answer.text
    message = answer.json()["message"]
    assert f"see kaos serve build-logs -j {build}" in message and "kaos serve logs" not in message, message

    assert api(backend, "DELETE", f"{route}/{shared['endpoint']}").json() is None
    # a witness: an endpoint of its own slow build, killed after the first one; once its build is JOB_KILLED the
    # scheduler went past the shared build after the first kill too (builds are advanced oldest first, each round)
    witness = deploy(backend, workspace, slow_bundle(shared_dir, "witness"))
    witness_pid = blocked_pid(shared_dir, "witness")
    assert api(backend, "DELETE", f"{route}/{witness['endpoint']}").json() is None
    wait_for(lambda: killed(backend, route, witness["job_id"]), timeout=120, what="the witness's build to be killed")
    assert not alive(witness_pid)
    assert build_state(backend, route, build) == "JOB_RUNNING"  # the other endpoint still waits for it
    assert alive(pid)

    assert api(backend, "DELETE", f"{route}/{again['endpoint']}").json() is None  # the last one that waited
    wait_for(lambda: killed(backend, route, build), timeout=120, what="the shared build to be killed")
    assert not alive(pid)
    log = api(backend, "GET", f"{route}/build/{build}/logs").json()
    assert "Successfully built" not in log


def test_a_build_that_another_build_of_the_same_image_waits_for_goes_on(backend, workspace, shared_dir):
    """Two bundles whose model/ is the same make one image: the second's build waits for the first's. Killing the
    first endpoint leaves its build running (the second waits for its image); killing the second cancels both."""
    route = f"inference/{workspace}"
    first = deploy(backend, workspace, slow_bundle(shared_dir, "image"))
    pid = blocked_pid(shared_dir, "image")
    second = deploy(backend, workspace, slow_bundle(shared_dir, "image", readme="another bundle"))
    assert second["job_id"] not in (None, first["job_id"]), second
    assert api(backend, "DELETE", f"{route}/{first['endpoint']}").json() is None
    witness = deploy(backend, workspace, slow_bundle(shared_dir, "witness2"))  # as in the test above
    blocked_pid(shared_dir, "witness2")
    assert api(backend, "DELETE", f"{route}/{witness['endpoint']}").json() is None
    wait_for(lambda: killed(backend, route, witness["job_id"]), timeout=120, what="the witness's build to be killed")
    assert build_state(backend, route, first["job_id"]) == "JOB_RUNNING" and alive(pid)

    assert api(backend, "DELETE", f"{route}/{second['endpoint']}").json() is None
    wait_for(lambda: killed(backend, route, second["job_id"]) and killed(backend, route, first["job_id"]),
             timeout=120, what="both builds to be killed")
    assert not alive(pid)


def test_a_redeploy_after_a_cancelled_build_builds_again(backend, workspace, shared_dir):
    route = f"inference/{workspace}"
    first = deploy(backend, workspace, slow_bundle(shared_dir, "again"))
    blocked_pid(shared_dir, "again")
    assert api(backend, "DELETE", f"{route}/{first['endpoint']}").json() is None
    wait_for(lambda: killed(backend, route, first["job_id"]), timeout=120, what="the build to be killed")
    second = deploy(backend, workspace, slow_bundle(shared_dir, "again"))
    assert second["job_id"] not in (None, first["job_id"]), second  # a new build, not the cancelled one
    (shared_dir / "again.gate").write_text("open")
    state = wait_for(lambda: (build_state(backend, route, second["job_id"]) in TERMINAL
                              and build_state(backend, route, second["job_id"])), timeout=300, what="the new build")
    assert state == "JOB_SUCCESS", api(backend, "GET", f"{route}/build/{second['job_id']}/logs").json()


def test_killing_a_notebook_cancels_its_build(backend, workspace, shared_dir):
    route = f"notebook/{workspace}"
    deployed = api(backend, "POST", f"{route}?user=tester", data=slow_bundle(shared_dir, "nb", serve=False)).json()
    build, name = deployed["job_id"], deployed["notebook"]
    assert build, deployed
    pid = blocked_pid(shared_dir, "nb")
    answer = requests.get(f"{backend.root}/{name}/lab", timeout=30)
    assert answer.status_code == 503, answer.text
    assert f"see kaos notebook build-logs -j {build}" in answer.json()["message"], answer.text
    assert api(backend, "DELETE", f"{route}/{name}").json() is None
    wait_for(lambda: killed(backend, route, build), timeout=120, what="the notebook's build to be killed")
    assert not alive(pid)
