"""A Docker engine that accepts a request of the scheduler's tick and never answers it (stuck on a container's
create; its ping still answered, so nothing is held), on a DOCKER platform stood up by the real CLI whose engine is
behind `EngineProxy` (tests/support/docker_proxy.py) in its `hang_creates` mode. The Kubernetes API server's case
is tests/kubernetes/test_attack_findings2.py's; the parts' own, tests/backend/test_engine_requests.py's."""
import time

import pytest

from tests.docker.test_attack_findings import WRITES_A_MODEL, proxied_platform
from tests.docker.test_platform import tiny_code
from tests.support.platform import tiny_data_bundle, wait_for

pytestmark = pytest.mark.docker

WAIT_LIMIT = 120.0  # seconds: a bound against hanging, never a speed claim


@pytest.fixture(scope="module")
def hanging_platform(docker_engine, base_image, tmp_path_factory):
    with proxied_platform(docker_engine, base_image, tmp_path_factory.mktemp("hang-project")) as made:
        yield made


def test_an_engine_that_never_answers_a_create_does_not_stall_the_scheduler(hanging_platform, tmp_path):
    """Finding: the scheduler makes the executor's engine requests in its tick: a create the engine never answered
    stalled every controller for the client's timeout (900 s then), the heartbeat went stale after 10 s and GET
    /api/health answered 503 naming the scheduler. Now the health names the engine (its state `waiting`, what it
    was asked), the scheduler is up (`waiting_on: engine`), and the training starts once the engine answers."""
    platform, proxy = hanging_platform, hanging_platform.proxy
    platform.workspace("hang-creates")
    code = tiny_code(tmp_path / "code", WRITES_A_MODEL)
    proxy.hang_creates = True
    try:
        deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")))
        assert deployed.code == 0, deployed
        wait_for(lambda: proxy.hung >= 1, timeout=WAIT_LIMIT, what="the container's create sent")
        waited = []
        for _ in range(12):
            health = platform.get("health")
            assert health.status_code == 200 or health.json()["part"] == "engine", health.text
            parts = health.json()["parts"]
            if parts.get("engine", {}).get("state") == "waiting":
                assert parts["scheduler"]["state"] == "up", health.text
                assert health.json()["message"].startswith("The Docker engine has not answered POST "), health.text
                waited.append(parts["engine"]["waiting"]["what"])
            time.sleep(1)
        assert waited and all(what.endswith("/containers/create") for what in waited), waited
    finally:
        proxy.hang_creates = False
    job = platform.terminal("hang-creates", platform.latest("hang-creates", "training")["job_id"])
    assert job["state"] == "JOB_SUCCESS", job
    wait_for(lambda: platform.get("health").status_code == 200, timeout=WAIT_LIMIT, what="the health ok")
