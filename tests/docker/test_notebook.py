"""A notebook on the docker executor, on the real engine: the default bundle's image (jupyterlab) built by the
engine, its data mounted read-only at /pfs/data/<name>, 8888 published on loopback; the same browser test as the
local executor's through the gateway (refused without its token; with it a cell lists the data and reads its
CSV), and kill removes its container."""
import pytest

from kaos_backend.executors.docker_client import remove_platform
from tests.docker.test_platform import DockerPlatform
from tests.support.notebooks import browser_session, data_bundle, jupyter, token_of, wait_state

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def platform(docker_engine, base_image, tmp_path_factory):
    made = DockerPlatform(tmp_path_factory.mktemp("docker-notebooks"), base_image)
    made.deploy()
    yield made
    made.destroy()
    remove_platform(docker_engine, made.platform)  # whatever a failed test left, so that the engine stays clean


def test_a_docker_notebook_in_the_browser_reads_its_data_and_kill_removes_its_container(platform, docker_engine,
                                                                                       template_layers):
    template_layers("notebook/base")  # the default bundle's build then takes jupyterlab's layer from the cache
    workspace = platform.workspace("dockernb")
    data_bundle(platform.project / "nb-data", first_line="station,rain")
    deployed = platform.kaos("notebook", "deploy", "-d", "nb-data")
    assert deployed.code == 0, deployed
    name = f"notebook-{workspace}-tester"
    wait_state(platform.api, workspace, name, "PIPELINE_RUNNING", timeout=1500)
    containers = platform.containers(docker_engine, **{"io.kaos.kind": "notebook"})
    assert len(containers) == 1
    mounts = {mount["Destination"]: mount for mount in containers[0].attrs["Mounts"]}
    data_mounts = [target for target in mounts if target.startswith("/pfs/data/features:")]
    assert data_mounts and not mounts[data_mounts[0]]["RW"], mounts
    assert "JUPYTER_TOKEN" not in " ".join(containers[0].attrs["Config"]["Cmd"] or []
                                           + containers[0].attrs["Config"]["Entrypoint"] or [])

    refused, output = browser_session(platform.root, name, token_of(deployed.text), "docker-notebook")
    assert refused
    assert "training/data.csv" in output and "FIRST station,rain" in output

    assert platform.kaos("notebook", "kill", "-n", name, "-y").code == 0
    assert platform.containers(docker_engine, **{"io.kaos.kind": "notebook"}) == []
    assert jupyter(platform.root, name, "lab", None).status_code == 404
