"""A notebook on a backend with KAOS_EXECUTOR=kubernetes on the fake cluster (tests/support/kube; root needed, as
CI runs), with the real CLI: the default notebook bundle's image (a virtualenv with jupyterlab: the fake's kubelet
runs the pod's `jupyter lab` as a process here) in a Deployment and a Service, its data fetched into the pod,
PIPELINE_RUNNING in `kaos notebook list`; Jupyter answers through the gateway with the token and refuses without
it; idle for KAOS_NOTEBOOK_IDLE_TIMEOUT it is culled (its Deployment goes, its work directory's claim stays) and
the next deploy finds the file written before; kill deletes its Deployment, Service, Secret and pods, and its route
answers 404. Jupyter looks for idleness once a minute: the waits are bounds against hanging, never speed claims."""
import os
import re
from pathlib import Path

import pytest

from tests.kubernetes.test_platform import WAIT, KubePlatform
from tests.support.kube.fixtures import module_kube_cluster  # noqa: F401 (a fixture)
from tests.support.kube_platform import pod_of
from tests.support.notebooks import data_bundle, jupyter, notebook_row, token_of, wait_state
from tests.support.platform import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fake kubelet mounts volumes as root (CI runs so)")

IDLE_SECONDS = 20
BUILD_WAIT = 900.0   # the default notebook's virtualenv (jupyterlab) is built once
CULL_WAIT = 600.0


@pytest.fixture(scope="module")
def platform(module_kube_cluster, tmp_path_factory):  # noqa: F811
    made = KubePlatform(tmp_path_factory.mktemp("kube-notebooks"), module_kube_cluster,
                        notebook_idle_timeout=IDLE_SECONDS)
    yield made
    made.backend.stop()


def _api(platform):
    return lambda method, path: platform.backend.get(path, timeout=30)


def _deploy(platform, *args) -> str:
    deployed = platform.kaos("notebook", "deploy", *args)
    assert deployed.code == 0, deployed
    return token_of(deployed.text)


def test_a_notebook_runs_in_a_deployment_behind_the_gateway_is_culled_keeping_its_work_and_killed(platform):
    workspace = platform.workspace("kubenb")
    name = f"notebook-{workspace}-tester"
    gateway = platform.backend.root
    data_bundle(platform.project / "nb-data", first_line="station,rain")
    token = _deploy(platform, "-d", "nb-data")
    wait_state(_api(platform), workspace, name, "PIPELINE_RUNNING", timeout=BUILD_WAIT)
    listed = platform.kaos("notebook", "list")
    assert listed.code == 0 and name in listed.out and "PIPELINE_RUNNING" in listed.out, listed
    [deployment] = platform.objects("deployments", job=name)
    [service] = platform.objects("services", job=name)
    assert deployment.metadata.name == service.metadata.name == name and service.spec.ports[0].port == 8888
    assert deployment.metadata.labels["kaos.io/kind"] == "notebook"
    assert deployment.metadata.labels["kaos.io/workspace"] == workspace
    [claim] = platform.objects("claims", job=name)
    pod = pod_of(platform.cluster, name)
    fetched = Path(platform.cluster.kubelet.volumes.pod_dir(pod)) / "volumes" / "pfs" / "data"
    [data_dir] = list(fetched.iterdir())
    assert data_dir.name.startswith("features:")
    assert (data_dir / "training" / "data.csv").read_text().startswith("station,rain")

    assert jupyter(gateway, name, "api/contents", None).status_code == 403  # Jupyter refuses without the token
    contents = jupyter(gateway, name, "api/contents", token)
    assert contents.status_code == 200, contents.text
    assert "example_notebook.ipynb" in {item["name"] for item in contents.json()["content"]}  # the seeded work
    saved = jupyter(gateway, name, "api/contents/results.txt", token, "PUT",
                    json={"type": "file", "format": "text", "content": "kept in the claim\n"})
    assert saved.status_code in (200, 201), saved.text

    culled = wait_state(_api(platform), workspace, name, "PIPELINE_STANDBY", timeout=CULL_WAIT)
    assert culled["reason"].startswith("culled for idleness") and "work directory is kept" in culled["reason"]
    assert not platform.objects("deployments", job=name) and platform.objects("claims", job=name)

    token = _deploy(platform)  # the culled one is replaced; its claim, with the work, mounted again
    wait_state(_api(platform), workspace, name, "PIPELINE_RUNNING", timeout=WAIT)
    kept = jupyter(gateway, name, "api/contents/results.txt", token)
    assert kept.status_code == 200 and kept.json()["content"] == "kept in the claim\n", kept.text
    [again] = platform.objects("claims", job=name)
    assert again.metadata.uid == claim.metadata.uid
    logs = platform.kaos("notebook", "logs", "-n", name)
    assert logs.code == 0 and re.search(r"PersistentVolumeClaim notebook-kubenb-tester-work", logs.out), logs.out

    assert platform.kaos("notebook", "kill", "-n", name, "-y").code == 0
    assert notebook_row(_api(platform), workspace, name) is None
    wait_for(lambda: not any(platform.objects(kind, job=name) for kind in ("deployments", "services", "secrets",
                                                                          "pods")),
             WAIT, what="the notebook's objects deleted")
    assert platform.objects("claims", job=name), "the work directory's claim outlives the notebook"
    gone = jupyter(gateway, name, "lab", token)
    assert gone.status_code == 404 and gone.json()["error_code"] == "PIPELINE_NOT_FOUND"
    assert platform.kaos("workspace", "kill", "-n", workspace, "-y").code == 0
    assert not platform.objects("claims", job=name), "the workspace is gone: its notebook's work with it"
