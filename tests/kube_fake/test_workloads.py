"""Jobs, Deployments and pods through the official client: a Job's pod runs its command as a local process and
the Job completes (or fails) as batch/v1 reports it; a Deployment's pod becomes Ready by its readiness probe and
answers through its Service's address; deletion takes dependents as the propagation policy says; volumes,
environment and secrets reach the process as in a real pod."""
import http.client
import os

import kubernetes.client as k8s
import pytest
from kubernetes.client.rest import ApiException

from tests.kube_fake.helpers import NS, apis, condition, container, job, job_pods, pod, python, wait_for

SERVER = """
import http.server, os
class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (os.environ["GREETING"] + " " + self.path).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("serving", flush=True)
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Ping).serve_forever()
"""


def finished(api, name):
    found = api.batch.read_namespaced_job(name, NS)
    return found if condition(found, "Complete") or condition(found, "Failed") else None


def test_a_job_whose_pod_prints_hi_completes_with_the_log_hi(kube_cluster):
    api = apis(kube_cluster)
    api.batch.create_namespaced_job(NS, job("hi", container("train", python("print('hi')"))))
    done = wait_for(lambda: finished(api, "hi"), "the job to finish")
    assert condition(done, "Complete").status == "True" and condition(done, "Complete").reason == "CompletionsReached"
    assert condition(done, "SuccessCriteriaMet").status == "True"
    assert done.status.succeeded == 1 and done.status.completion_time and not done.status.active
    [the_pod] = job_pods(api, "hi")
    assert the_pod.metadata.name.startswith("hi-") and the_pod.metadata.owner_references[0].kind == "Job"
    assert the_pod.metadata.owner_references[0].uid == done.metadata.uid
    labels = the_pod.metadata.labels
    assert labels["job-name"] == "hi" and labels["batch.kubernetes.io/controller-uid"] == done.metadata.uid
    assert the_pod.status.phase == "Succeeded" and the_pod.status.pod_ip == "127.0.0.1"
    terminated = the_pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    assert api.core.read_namespaced_pod_log(the_pod.metadata.name, NS) == "hi\n"


def test_a_failing_pod_fails_its_job_past_the_backoff_limit(kube_cluster):
    api = apis(kube_cluster)
    api.batch.create_namespaced_job(NS, job("bad", container("train", python("import sys; sys.exit(3)")),
                                            backoff_limit=1))
    done = wait_for(lambda: finished(api, "bad"), "the job to fail")
    failed = condition(done, "Failed")
    assert failed.status == "True" and failed.reason == "BackoffLimitExceeded"
    assert failed.message == "Job has reached the specified backoff limit"
    assert condition(done, "FailureTarget").reason == "BackoffLimitExceeded"
    assert done.status.failed == 2  # the first pod and its one replacement
    pods = job_pods(api, "bad")
    assert len(pods) == 2 and {p.status.phase for p in pods} == {"Failed"}
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3 and terminated.reason == "Error"


def test_a_job_past_its_active_deadline_fails_with_deadline_exceeded(kube_cluster):
    api = apis(kube_cluster)
    api.batch.create_namespaced_job(NS, job("slow", container("train", python("import time; time.sleep(60)")),
                                            active_deadline_seconds=1))
    done = wait_for(lambda: finished(api, "slow"), "the job to pass its deadline")
    failed = condition(done, "Failed")
    assert failed.reason == "DeadlineExceeded" and failed.message == "Job was active longer than specified deadline"
    wait_for(lambda: not job_pods(api, "slow"), "its pod to be deleted")


def serving_deployment(name: str, labels: dict) -> k8s.V1Deployment:
    probe = k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/ping", port=8080), period_seconds=1)
    serve = container("serve", python(SERVER), ports=[k8s.V1ContainerPort(container_port=8080)],
                      env=[k8s.V1EnvVar(name="PORT", value="8080"), k8s.V1EnvVar(name="GREETING", value="hello")],
                      readiness_probe=probe)
    return k8s.V1Deployment(metadata=k8s.V1ObjectMeta(name=name, labels=labels), spec=k8s.V1DeploymentSpec(
        replicas=1, selector=k8s.V1LabelSelector(match_labels=labels),
        template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels), spec=k8s.V1PodSpec(
            containers=[serve]))))


def test_a_deployments_pod_gets_ready_and_answers_through_its_service(kube_cluster):
    api = apis(kube_cluster)
    labels = {"kaos.io/job": "serve-ws-abcdef"}
    api.apps.create_namespaced_deployment(NS, serving_deployment("serve-ws-abcdef", labels))
    api.core.create_namespaced_service(NS, k8s.V1Service(metadata=k8s.V1ObjectMeta(name="serve-ws-abcdef"),
                                                         spec=k8s.V1ServiceSpec(selector=labels, ports=[
                                                             k8s.V1ServicePort(port=8080, target_port=8080)])))
    available = wait_for(lambda: (api.apps.read_namespaced_deployment("serve-ws-abcdef", NS).status.available_replicas
                                  or 0) == 1, "the deployment to be available")
    assert available
    deployment = api.apps.read_namespaced_deployment("serve-ws-abcdef", NS)
    assert condition(deployment, "Available").status == "True"
    [replica_set] = api.apps.list_namespaced_replica_set(NS).items
    assert replica_set.metadata.owner_references[0].uid == deployment.metadata.uid
    [the_pod] = api.core.list_namespaced_pod(NS, label_selector="kaos.io/job=serve-ws-abcdef").items
    assert the_pod.metadata.owner_references[0].kind == "ReplicaSet" and condition(the_pod, "Ready").status == "True"

    host, port = kube_cluster.service_address(NS, "serve-ws-abcdef", 8080)
    assert port != 8080  # the pod's 8080, published on a port of its own (the fake's pod network)
    cluster_ip = api.core.read_namespaced_service("serve-ws-abcdef", NS).spec.cluster_ip
    for address in ((host, port), (cluster_ip, 8080)):  # the pod itself, and the Service as in-cluster clients do
        connection = http.client.HTTPConnection(*address, timeout=10)
        connection.request("GET", "/invocations")
        assert connection.getresponse().read() == b"hello /invocations"
        connection.close()
    assert not kube_cluster.proxy.errors


def test_a_port_number_from_a_config_map_is_the_published_port_too(kube_cluster):
    api = apis(kube_cluster)
    api.core.create_namespaced_config_map(NS, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="settings"),
                                                              data={"INTERNAL_PORT": "8081", "OTHER": "8082"}))
    listener = container("main", ["sh", "-c", "echo $INTERNAL_PORT $OTHER; sleep 30"],
                         ports=[k8s.V1ContainerPort(container_port=8081)],
                         env_from=[k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="settings"))])
    api.core.create_namespaced_pod(NS, pod("ported", listener))
    line = wait_for(lambda: api.core.read_namespaced_pod_log("ported", NS) if api.core.read_namespaced_pod(
        "ported", NS).status.phase == "Running" else "", "the pod's line")
    assert line == f"{kube_cluster.pod_port(NS, 'ported', 8081)} 8082\n"  # 8082 is no port of the pod's
    assert kube_cluster.pod_port(NS, "ported", 8081) != 8081


def test_deletion_propagates_as_the_policy_says(kube_cluster):
    api = apis(kube_cluster)
    sleeper = python("import time; time.sleep(60)")
    for name in ("fg", "bg", "orphaned"):
        api.batch.create_namespaced_job(NS, job(name, container("train", sleeper)))
    for name in ("fg", "bg", "orphaned"):
        wait_for(lambda: [p for p in job_pods(api, name) if p.status.phase == "Running"], f"{name}'s pod to run")

    fg = api.batch.read_namespaced_job("fg", NS)
    owner = k8s.V1OwnerReference(api_version="batch/v1", kind="Job", name="fg", uid=fg.metadata.uid)
    api.core.create_namespaced_secret(NS, k8s.V1Secret(  # as the executor's artifact token goes with its Job
        metadata=k8s.V1ObjectMeta(name="kaos-token-fg", owner_references=[owner]), string_data={"token": "t"}))
    accepted = api.batch.delete_namespaced_job("fg", NS, propagation_policy="Foreground")
    assert accepted  # the Job stays (deletionTimestamp, finalizer foregroundDeletion) until its pod is gone
    held = api.batch.read_namespaced_job("fg", NS)
    assert held.metadata.deletion_timestamp and "foregroundDeletion" in held.metadata.finalizers
    wait_for(lambda: not job_pods(api, "fg"), "the foreground job's pod to go")
    wait_for(lambda: not api.batch.list_namespaced_job(NS, field_selector="metadata.name=fg").items,
             "the foreground job to go after its pod")
    assert not api.core.list_namespaced_secret(NS, field_selector="metadata.name=kaos-token-fg").items

    api.batch.delete_namespaced_job("bg", NS, propagation_policy="Background")
    with pytest.raises(ApiException):
        api.batch.read_namespaced_job("bg", NS)  # gone at once; its pod follows
    wait_for(lambda: not job_pods(api, "bg"), "the background job's pod to go")

    api.batch.delete_namespaced_job("orphaned", NS)  # batch/v1's default policy orphans the pods
    [left] = job_pods(api, "orphaned")
    assert not left.metadata.owner_references and left.status.phase == "Running"

    labels = {"app": "gone"}
    api.apps.create_namespaced_deployment(NS, serving_deployment("gone", labels))
    wait_for(lambda: api.core.list_namespaced_pod(NS, label_selector="app=gone").items, "the deployment's pod")
    api.apps.delete_namespaced_deployment("gone", NS)  # apps/v1's default: Background
    wait_for(lambda: not api.apps.list_namespaced_replica_set(NS, label_selector="app=gone").items, "its replica set")
    wait_for(lambda: not api.core.list_namespaced_pod(NS, label_selector="app=gone").items, "its pod")


def test_deleting_a_running_pod_stops_its_process_gracefully(kube_cluster, tmp_path):
    api = apis(kube_cluster)
    marker = tmp_path / "terminated"
    code = ("import signal, sys, time\n"
            f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(0)))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n")
    api.core.create_namespaced_pod(NS, pod("graceful", container("main", python(code))))
    wait_for(lambda: kube_cluster.log_text(NS, "graceful", "main") == "up\n", "the process to start")
    deleted = api.core.delete_namespaced_pod("graceful", NS, grace_period_seconds=10)
    assert deleted.metadata.deletion_timestamp and deleted.metadata.deletion_grace_period_seconds == 10
    wait_for(lambda: not api.core.list_namespaced_pod(NS, field_selector="metadata.name=graceful").items,
             "the pod to go")
    assert marker.exists()  # it got SIGTERM, not SIGKILL


@pytest.mark.skipif(os.geteuid() != 0, reason="volumes are bind-mounted at their mountPath in a mount namespace "
                                               "(root only)")
def test_volumes_env_and_secrets_reach_the_process_as_in_a_pod(kube_cluster):
    api = apis(kube_cluster)
    api.core.create_namespaced_secret(NS, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="token"),
                                                       string_data={"token": "s3cret"}))
    fetch = container("fetch", python("import os; os.makedirs('/kubefake-pfs/code'); "
                                      "open('/kubefake-pfs/code/train', 'w').write('fetched')"),
                      volume_mounts=[k8s.V1VolumeMount(name="pfs", mount_path="/kubefake-pfs")])
    train = container("train", ["sh", "-c", "cat train; echo \" $TOKEN $NAME $WHERE\"; pwd"],
                      working_dir="/kubefake-pfs/code",
                      env=[k8s.V1EnvVar(name="TOKEN", value_from=k8s.V1EnvVarSource(
                          secret_key_ref=k8s.V1SecretKeySelector(name="token", key="token"))),
                           k8s.V1EnvVar(name="WHERE", value_from=k8s.V1EnvVarSource(
                               field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.namespace"))),
                           k8s.V1EnvVar(name="NAME", value="pod-in-$(WHERE) $(LATER)"),
                           k8s.V1EnvVar(name="LATER", value="x")],
                      volume_mounts=[k8s.V1VolumeMount(name="pfs", mount_path="/kubefake-pfs")])
    api.core.create_namespaced_pod(NS, pod("staged", train, init_containers=[fetch],
                                           volumes=[k8s.V1Volume(name="pfs", empty_dir={})]))
    wait_for(lambda: api.core.read_namespaced_pod("staged", NS).status.phase == "Succeeded", "the pod to succeed")
    assert api.core.read_namespaced_pod_log("staged", NS, container="train") == \
        "fetched s3cret pod-in-kaos $(LATER) kaos\n/kubefake-pfs/code\n"  # $(VAR): only variables before it
    assert not os.path.exists("/kubefake-pfs/code")  # the volume was mounted in the pod's namespace only
    init = api.core.read_namespaced_pod("staged", NS).status.init_container_statuses[0]
    assert init.state.terminated.reason == "Completed"


@pytest.mark.skipif(os.geteuid() != 0, reason="volumes are bind-mounted at their mountPath in a mount namespace "
                                               "(root only)")
def test_an_optional_secret_that_does_not_exist_is_an_empty_volume(kube_cluster):
    """As a kubelet mounts it (the backend's registry credentials, Secret kaos-registry, are optional)."""
    api = apis(kube_cluster)
    reader = container("main", ["sh", "-c", "ls -A /kubefake-auth; echo listed"],
                       volume_mounts=[k8s.V1VolumeMount(name="auth", mount_path="/kubefake-auth", read_only=True)])
    api.core.create_namespaced_pod(NS, pod("optional", reader, volumes=[k8s.V1Volume(
        name="auth", secret=k8s.V1SecretVolumeSource(secret_name="absent", optional=True))]))
    wait_for(lambda: api.core.read_namespaced_pod("optional", NS).status.phase == "Succeeded", "the pod to succeed")
    assert api.core.read_namespaced_pod_log("optional", NS) == "listed\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="volumes are bind-mounted at their mountPath in a mount namespace "
                                               "(root only)")
def test_a_mount_point_another_cluster_made_stays_mounted_when_that_cluster_stops(tmp_path, monkeypatch):
    """Finding (a CI failure): two clusters at once (two pytest-xdist workers) share the machine's mount points;
    the one that made `/pfs/out` removed it at its stop, which detached the other's running training from its
    volume (rmdir(2) of a mount point of another namespace), and that training never saw its input. A mount point
    now goes with the last cluster on the machine, and goes then."""
    from tests.support.kube import FakeCluster, mount_points
    monkeypatch.setattr(mount_points, "REGISTRY", str(tmp_path / "registry"))  # these two clusters' own
    point = f"/kubefake-shared-{os.getpid()}/out"
    waits = python(f"import os, time\nwhile not os.path.exists('{point}/go'): time.sleep(0.05)\nprint('went')")
    first, second = FakeCluster(tmp_path / "first").start(), FakeCluster(tmp_path / "second").start()
    running = [first, second]
    try:
        for cluster in (first, second):  # the first makes the mount point, the second finds it
            apis(cluster).core.create_namespaced_pod(NS, pod("waiter", container("main", waits, volume_mounts=[
                k8s.V1VolumeMount(name="out", mount_path=point)]), volumes=[k8s.V1Volume(name="out", empty_dir={})]))
            wait_for(lambda: apis(cluster).core.read_namespaced_pod("waiter", NS).status.phase == "Running",
                     "the pod to run")
        running.remove(first)
        first.stop()
        waiter = apis(second).core.read_namespaced_pod("waiter", NS)
        volume = os.path.join(second.kubelet.volumes.pod_dir({"metadata": {"uid": waiter.metadata.uid}}), "volumes",
                              "out")
        open(os.path.join(volume, "go"), "w").close()
        wait_for(lambda: apis(second).core.read_namespaced_pod("waiter", NS).status.phase == "Succeeded",
                 "the second cluster's pod to see its volume")
        assert os.path.isdir(point)
    finally:
        for cluster in running:
            cluster.stop()
    assert not os.path.exists(os.path.dirname(point))  # both levels it made, with the last cluster


def test_a_finished_job_goes_after_its_ttl_with_its_pods(kube_cluster):
    api = apis(kube_cluster)
    api.batch.create_namespaced_job(NS, job("brief", container("train", python("pass")),
                                            ttl_seconds_after_finished=1))
    wait_for(lambda: not api.batch.list_namespaced_job(NS, field_selector="metadata.name=brief").items,
             "the finished job to be deleted after its TTL")
    wait_for(lambda: not job_pods(api, "brief"), "its pod to go with it")


def test_a_job_pod_deleted_before_it_ended_counts_as_failed(kube_cluster):
    api = apis(kube_cluster)
    api.batch.create_namespaced_job(NS, job("vanishing", container("train", python("import time; time.sleep(60)"))))
    running = wait_for(lambda: [p for p in job_pods(api, "vanishing") if p.status.phase == "Running"], "the pod")
    api.core.delete_namespaced_pod(running[0].metadata.name, NS, grace_period_seconds=0)  # as a node loss would
    done = wait_for(lambda: finished(api, "vanishing"), "the job to fail")
    assert condition(done, "Failed").reason == "BackoffLimitExceeded" and done.status.failed == 1
    assert not job_pods(api, "vanishing")  # not replaced: backoffLimit 0


def test_stopping_the_cluster_stops_its_pods_processes(tmp_path):
    from tests.support.kube import FakeCluster
    cluster = FakeCluster(tmp_path / "kubefake").start()
    try:
        api = apis(cluster)
        api.core.create_namespaced_pod(NS, pod("lingering", container("main", python(
            "import os, time; print(os.readlink('/proc/self'), flush=True); time.sleep(600)"))))  # this machine's pid
        pid = int(wait_for(lambda: cluster.log_text(NS, "lingering", "main"), "the pid"))
    finally:
        cluster.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not cluster.errors
