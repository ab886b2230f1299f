"""Each failure knob, seen through the official client in the shapes the real API reports: OOMKilled,
Unschedulable (also from requests the node cannot hold), ErrImagePull / ImagePullBackOff (also for an image the
resolver does not know), CrashLoopBackOff, Evicted and DeadlineExceeded."""
import kubernetes.client as k8s

from tests.kube_fake.helpers import (NS, apis, condition, container, container_state, job, one_pod, pod, python,
                                     wait_for)
from tests.support.kube.images import host_images

SLEEP = python("import time; time.sleep(60)")


def test_oom_killed(kube_cluster):
    api = apis(kube_cluster)
    kube_cluster.faults.add("OOMKilled", pods={"job-name": "hungry"}, container="train", after=0.2)
    api.batch.create_namespaced_job(NS, job("hungry", container("train", SLEEP)))
    the_pod = one_pod(api, "hungry")
    state = wait_for(lambda: container_state(api, the_pod.metadata.name).terminated, "the container to end")
    assert state.reason == "OOMKilled" and state.exit_code == 137
    assert api.core.read_namespaced_pod(the_pod.metadata.name, NS).status.phase == "Failed"
    done = wait_for(lambda: condition(api.batch.read_namespaced_job("hungry", NS), "Failed"), "the job to fail")
    assert done.reason == "BackoffLimitExceeded"


def test_unschedulable_by_the_knob_and_by_requests(kube_cluster):
    api = apis(kube_cluster)
    kube_cluster.faults.add("Unschedulable", pods="picky", message="0/1 nodes are available: 1 node(s) had "
                            "untolerated taint {gpu: true}. preemption: 0/1 nodes are available.")
    api.core.create_namespaced_pod(NS, pod("picky", container("main", SLEEP)))
    big = container("main", SLEEP, resources=k8s.V1ResourceRequirements(limits={"memory": "64Gi", "cpu": "1"}))
    api.core.create_namespaced_pod(NS, pod("big", big))

    def scheduled(name):
        return condition(api.core.read_namespaced_pod(name, NS), "PodScheduled")
    picky = wait_for(lambda: scheduled("picky"), "the picky pod's PodScheduled")
    assert (picky.status, picky.reason) == ("False", "Unschedulable") and "untolerated taint" in picky.message
    big_condition = wait_for(lambda: scheduled("big"), "the big pod's PodScheduled")
    assert (big_condition.status, big_condition.reason) == ("False", "Unschedulable")
    assert big_condition.message == ("0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are "
                                     "available: 1 No preemption victims found for incoming pod.")
    assert api.core.read_namespaced_pod("big", NS).status.phase == "Pending"
    events = api.core.list_namespaced_event(NS, field_selector="involvedObject.name=big").items
    assert [e.reason for e in events] == ["FailedScheduling"] and events[0].type == "Warning"


def test_err_image_pull_then_image_pull_back_off(kube_cluster):
    api = apis(kube_cluster)
    kube_cluster.kubelet.images = lambda image: None if image.startswith("registry.invalid/") else host_images(image)
    api.batch.create_namespaced_job(NS, job("unpulled", container("train", SLEEP, image="registry.invalid/x:1")))
    the_pod = one_pod(api, "unpulled")
    first = wait_for(lambda: container_state(api, the_pod.metadata.name).waiting,
                     "a waiting state")
    assert first.reason in ("ErrImagePull", "ImagePullBackOff")
    later = wait_for(lambda: container_state(api, the_pod.metadata.name).waiting.reason == "ImagePullBackOff"
                     and container_state(api, the_pod.metadata.name).waiting, "ImagePullBackOff")
    assert later.message == 'Back-off pulling image "registry.invalid/x:1"'
    assert api.core.read_namespaced_pod(the_pod.metadata.name, NS).status.phase == "Pending"
    failed = [e for e in api.core.list_namespaced_event(NS).items if e.reason == "Failed"]
    assert failed and failed[0].message.startswith('Failed to pull image "registry.invalid/x:1": rpc error')

    kube_cluster.faults.add("ErrImagePull", pods="knobbed", message="manifest unknown")
    api.core.create_namespaced_pod(NS, pod("knobbed", container("main", SLEEP)))
    knobbed = wait_for(lambda: container_state(api, "knobbed").waiting,
                       "the knobbed pod's waiting state")
    assert knobbed.reason in ("ErrImagePull", "ImagePullBackOff")


def test_crash_loop_back_off(kube_cluster):
    api = apis(kube_cluster)
    kube_cluster.faults.add("CrashLoopBackOff", pods="crashy", message="boom")
    api.core.create_namespaced_pod(NS, pod("crashy", container("serve", SLEEP), restart_policy="Always"))

    def backing_off():
        status = api.core.read_namespaced_pod("crashy", NS).status.container_statuses
        return status and status[0].state.waiting and status[0].state.waiting.reason == "CrashLoopBackOff" and status[0]
    status = wait_for(backing_off, "CrashLoopBackOff")
    assert status.state.waiting.message.startswith("back-off ") and "restarting failed container=serve" in \
        status.state.waiting.message
    assert status.last_state.terminated.exit_code == 1 and status.last_state.terminated.reason == "Error"
    assert not status.ready and api.core.read_namespaced_pod("crashy", NS).status.phase == "Running"
    assert api.core.read_namespaced_pod_log("crashy", NS) == "boom\n"  # the run that crashed last


def test_evicted(kube_cluster):
    api = apis(kube_cluster)
    kube_cluster.faults.add("Evicted", pods={"job-name": "evictee"}, after=0.2)
    api.batch.create_namespaced_job(NS, job("evictee", container("train", SLEEP)))
    the_pod = one_pod(api, "evictee")
    failed = wait_for(lambda: api.core.read_namespaced_pod(the_pod.metadata.name, NS).status.phase == "Failed"
                      and api.core.read_namespaced_pod(the_pod.metadata.name, NS), "the eviction")
    assert failed.status.reason == "Evicted"
    assert failed.status.message.startswith("The node was low on resource: memory.")
    disruption = condition(failed, "DisruptionTarget")
    assert disruption.status == "True" and disruption.reason == "TerminationByKubelet"
    assert failed.status.container_statuses[0].state.terminated.exit_code == 137


def test_deadline_exceeded_of_a_pod(kube_cluster):
    api = apis(kube_cluster)
    api.core.create_namespaced_pod(NS, pod("late", container("main", SLEEP), active_deadline_seconds=1))
    kube_cluster.faults.add("DeadlineExceeded", pods="forced")
    api.core.create_namespaced_pod(NS, pod("forced", container("main", SLEEP)))
    for name in ("late", "forced"):
        failed = wait_for(lambda: api.core.read_namespaced_pod(name, NS).status.phase == "Failed"
                          and api.core.read_namespaced_pod(name, NS), f"{name} past its deadline")
        assert failed.status.reason == "DeadlineExceeded"
        assert failed.status.message == "Pod was active on the node longer than the specified deadline"
