"""Pod logs through the official client: a follow streams a running process's lines as it writes them and ends
when it ends; tailLines, timestamps, previous (the run before a restart), and the real server's 400s."""
import re
import threading

import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException

from tests.kube_fake.helpers import NS, apis, container, pod, python, wait_for


def test_follow_streams_a_running_process_and_ends_with_it(kube_cluster, tmp_path):
    api = apis(kube_cluster)
    go_on = tmp_path / "go-on"
    code = ("import os, time\n"
            "print('one', flush=True)\n"
            f"while not os.path.exists({str(go_on)!r}): time.sleep(0.05)\n"
            "print('two', flush=True)\n")
    api.core.create_namespaced_pod(NS, pod("talker", container("main", python(code))))
    wait_for(lambda: kube_cluster.log_text(NS, "talker", "main"), "the first line")
    lines = []
    done = threading.Event()

    def follow():
        for line in watch.Watch().stream(api.core.read_namespaced_pod_log, "talker", NS):
            lines.append(line)
        done.set()
    threading.Thread(target=follow, daemon=True).start()
    wait_for(lambda: lines == ["one"], "the first line through the follow")
    assert not done.is_set()  # the process still runs: the follow waits for more
    go_on.touch()
    wait_for(done.is_set, "the follow to end with the process")
    assert lines == ["one", "two"]


def test_tail_lines_timestamps_and_limit_bytes(kube_cluster):
    api = apis(kube_cluster)
    api.core.create_namespaced_pod(NS, pod("counter", container("main", python("for i in range(5): print(i)"))))
    wait_for(lambda: api.core.read_namespaced_pod("counter", NS).status.phase == "Succeeded", "the pod to end")
    assert api.core.read_namespaced_pod_log("counter", NS, tail_lines=2) == "3\n4\n"
    stamped = api.core.read_namespaced_pod_log("counter", NS, timestamps=True, tail_lines=1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z 4\n", stamped)
    assert api.core.read_namespaced_pod_log("counter", NS, limit_bytes=3) == "0\n1"


def test_previous_is_the_run_before_a_restart(kube_cluster):
    api = apis(kube_cluster)
    code = "import sys, time, uuid; print('run', uuid.uuid4(), flush=True); time.sleep(0.2); sys.exit(1)"  # pid: 1
    api.core.create_namespaced_pod(NS, pod("restarter", container("main", python(code)), restart_policy="Always"))
    def restarts():
        statuses = api.core.read_namespaced_pod("restarter", NS).status.container_statuses
        return statuses and statuses[0].restart_count >= 1
    wait_for(restarts, "a restart")
    previous = api.core.read_namespaced_pod_log("restarter", NS, previous=True)
    assert previous.startswith("run ")
    current = wait_for(lambda: api.core.read_namespaced_pod_log("restarter", NS), "the current run's line")
    assert current != previous and current.startswith("run ")


def test_the_servers_400s(kube_cluster):
    api = apis(kube_cluster)
    api.core.create_namespaced_pod(NS, pod("two", container("a", python("pass")), container("b", python("pass"))))
    with pytest.raises(ApiException) as unnamed:
        api.core.read_namespaced_pod_log("two", NS)
    assert unnamed.value.status == 400
    assert "a container name must be specified for pod two, choose one of: [a b]" in unnamed.value.body

    kube_cluster.faults.add("Unschedulable", pods="stuck")
    api.core.create_namespaced_pod(NS, pod("stuck", container("main", python("pass"))))
    with pytest.raises(ApiException) as waiting:
        api.core.read_namespaced_pod_log("stuck", NS)
    assert waiting.value.status == 400
    assert 'container \\"main\\" in pod \\"stuck\\" is waiting to start: ContainerCreating' in waiting.value.body
    wait_for(lambda: api.core.read_namespaced_pod("two", NS).status.phase == "Succeeded", "the pod to end")
    with pytest.raises(ApiException) as no_previous:
        api.core.read_namespaced_pod_log("two", NS, container="a", previous=True)
    assert 'previous terminated container \\"a\\" in pod \\"two\\" not found' in no_previous.value.body
    with pytest.raises(ApiException) as missing:
        api.core.read_namespaced_pod_log("nobody", NS)
    assert missing.value.status == 404
