"""A third attacker's pass over an API server that hangs on a request of the scheduler's tick (GET /version still
answered), on the KUBERNETES platform against the fake cluster behind test_attack_findings2's relay
(tests/support/kube/relay.py). The Docker engine's cases, and the parts', are
tests/docker/test_attack_findings3.py's."""
import time

import pytest

from tests.kubernetes.test_attack_findings2 import WAIT, platform, relay  # noqa: F401 (fixtures)
from tests.support.kube.fixtures import module_kube_cluster  # noqa: F401 (a fixture)
from tests.support.platform import tiny_data_bundle, wait_for
from tests.support.tiny_bundles import train_source

pytestmark = pytest.mark.skipif(__import__("os").geteuid() != 0,
                                reason="the fake kubelet mounts volumes as root (CI runs so)")


def _waiting(made) -> bool:
    health = made.backend.get("health", timeout=30)
    return health.json().get("parts", {}).get("engine", {}).get("state") == "waiting"


def test_a_write_the_api_server_ends_by_closing_the_connection_does_not_fail_the_training(
        platform, relay, tmp_path):  # noqa: F811
    """Finding: a create the API server hung on and then ended by closing its connection (a kube-apiserver
    restarted under it, a load balancer's idle timeout in front of it: shorter than the client's 30 s) was
    ClusterUnavailable, counted as a try of the training: three in a row (the retries 1 s and 4 s later) failed
    it ("kaos: the scheduler could not advance this training: ClusterUnavailable: ..."). It is now held as a
    timed-out request is, the try not counted (executors/engine_requests.is_dropped)."""
    workspace = platform.workspace("closed-writes")
    relay.hang_writes()
    code, data = train_source(tmp_path / "code"), tiny_data_bundle(tmp_path / "data")
    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(data)).code == 0
    job_id = wait_for(lambda: next(iter(platform.job_ids(workspace, "training")), None), WAIT, what="the job")
    for _ in range(3):
        wait_for(lambda: _waiting(platform), WAIT, what="a write waiting")
        relay.back()       # the hung connections closed, unanswered
        time.sleep(0.5)
        relay.hang_writes()
    relay.back()
    job = platform.terminal(workspace, job_id)
    assert job["state"] == "JOB_SUCCESS", job
