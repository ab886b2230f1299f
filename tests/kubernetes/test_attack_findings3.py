"""A third attacker's pass over an API server that hangs on a request of the scheduler's tick (GET /version still
answered), on the KUBERNETES platform against the fake cluster behind test_attack_findings2's relay
(tests/support/kube/relay.py). The Docker engine's cases, and the parts', are
tests/docker/test_attack_findings3.py's."""
import time

import pytest

from tests.kubernetes.test_attack_findings2 import WAIT, platform, relay  # noqa: F401 (fixtures)
from tests.kubernetes.test_platform import WAITS_FOR_GO
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


def test_a_training_whose_objects_the_api_server_made_but_never_answered_runs_once(
        platform, relay, tmp_path):  # noqa: F811
    """Finding: the create of a training's token Secret that the API server carried out but never answered (timed
    out, or its connection closed) made create_workload delete the Job, whose pod had begun the training with that
    Secret, and the next try create it again: the training's code ran twice. Now a create not answered leaves what
    it made; the next try finds the Job with its Secret, adopts it (its start label, its uid) and follows it."""
    from tests.support.platform import tiny_train_bundle
    runs = tmp_path / "runs"
    script = (f"open({str(runs)!r}, 'a').write('ran\\n')\n" + WAITS_FOR_GO)
    workspace = platform.workspace("lost-secret")
    relay.lost_when, lost = runs.exists, relay.lost  # the answer held until the training runs, then lost
    relay.lose_answers = b"/secrets"
    try:
        code, data = tiny_train_bundle(tmp_path / "code", script), tiny_data_bundle(tmp_path / "data")
        assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(data)).code == 0
        wait_for(lambda: relay.lost > lost, WAIT, what="the answer to its Secret's create lost")
    finally:
        relay.lose_answers = relay.lost_when = None
    job_id = wait_for(lambda: next(iter(platform.job_ids(workspace, "training")), None), WAIT, what="the job")
    platform.started(workspace, job_id)
    platform.go(job_id)
    job = platform.terminal(workspace, job_id)
    texts = platform.log_texts(job_id, workspace)
    assert job["state"] == "JOB_SUCCESS", (job, texts[-5:])
    assert runs.read_text() == "ran\n", texts
    assert texts.count("before") == 1 and any("(a start made twice): following it" in text for text in texts), texts
