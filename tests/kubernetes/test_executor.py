"""The kubernetes executor in this process against a fake cluster of its own (tests/support/kube; root needed, as
CI runs): the reasons the shared contract test does not reach (evicted, a pod's deadline, CrashLoopBackOff, a
failed fetch), objects an earlier start left under the same names, and, last, the Role: every request the
executor made in this module, as verbs on kinds, is exactly what kubernetes_spec.RBAC_RULES grants (the test
itself reads the cluster through the fake's store, not its API, so that only the executor's requests count),
with the nodes' list of the capacity check (NODE_RBAC_RULES)."""
import base64
import os
import re
import shutil
import time
import uuid
from typing import Set, Tuple

import pytest

from kaos_backend.config import Config
from kaos_backend.executors import kubernetes_spec, registry
from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_backend.layout import DataLayout
from tests.support.executor_platform import ExecutorPlatform
from tests.support.kube.fixtures import module_kube_cluster  # noqa: F401 (a fixture)
from tests.support.kube.kinds import _BY_URL, DEPLOYMENTS, JOBS, SECRETS, SERVICES
from tests.support.kube_platform import ArtifactServer, kube_config, pod_of, venv_images

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fake kubelet mounts volumes as root (CI runs so)")
WAIT = 60.0   # a bound against hanging, never a speed claim
PVCS = _BY_URL["", "v1", "persistentvolumeclaims"]


def wait_for(predicate, timeout: float = WAIT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Platform(ExecutorPlatform):
    """A data directory, its artifact routes, and kubernetes executors on the module's fake cluster."""

    def __init__(self, cluster, root):
        self.cluster = cluster
        self.data = root / "data"
        cluster.kubelet.images = venv_images(self.data)
        self.server = ArtifactServer(Config.from_env({}, data_dir=self.data))
        super().__init__(Config.from_env({}, data_dir=self.data, **kube_config(
            cluster, root / "kubeconfig", self.server.url, pod_pending_timeout=1)))
        self.features = self.bundle({"features/training/a.csv": "1\n"}, "features")
        build = WorkloadSpec(job_id="b" * 32, kind="build", log=f"jobs/{'b' * 32}", source=self.source("", "train"),
                             requirements=["requirements.txt"])
        builder = self.executor()
        self.image = builder.build(build)
        assert wait_for(lambda: builder.poll() is not None, 300) and builder.poll() == 0, list(builder.logs())

    def source(self, script: str, name: str) -> Artifact:
        files = {"bundle/Dockerfile": "FROM python:3.11-slim\n", "bundle/model/requirements.txt": ""}
        if script:
            files[f"bundle/model/{name}"] = "#!/usr/bin/env python3\n" + script
        return self.bundle(files, "bundle")

    def training(self, script: str, **extra) -> WorkloadSpec:
        job = uuid.uuid4().hex
        return WorkloadSpec(job_id=f"{job}-0", kind="train", log=f"jobs/{job}", preamble=[f"processing job {job}"],
                            source=self.source(script, "train"), data=extra.pop("data", self.features),
                            output=Artifact.output_of(job, "abcdef"), image=self.image,
                            env={"KAOS_WORKSPACE": "executor"}, **extra)

    def endpoint(self, script: str, name: str = None) -> WorkloadSpec:
        name = name or f"serve-executor-{uuid.uuid4().hex[:6]}"
        return WorkloadSpec(job_id=name, kind="serve", log=f"endpoints/{name}", preamble=[f"processing job {name}"],
                            source=self.source(script, "serve"), image=self.image)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def platform(module_kube_cluster, tmp_path_factory):  # noqa: F811
    made = Platform(module_kube_cluster, tmp_path_factory.mktemp("kube-executor"))
    yield made
    from kaos_backend.executors.kubernetes_cluster import close_all
    close_all()
    made.stop()


def ended(executor):
    assert wait_for(lambda: executor.poll() is not None, what="the workload to end") is not None
    return executor.reason()


def texts(executor):
    return [line.split("] ", 1)[1] for line in executor.logs()]


SLEEPS = "import time\nprint('running', flush=True)\ntime.sleep(60)\n"
PINGS = """import http.server, os
class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Ping).serve_forever()
"""


def test_an_evicted_training_says_so(platform):
    spec = platform.training(SLEEPS)
    knob = platform.cluster.faults.add("Evicted", pods={"kaos.io/workload": spec.job_id}, after=0.5)
    try:
        executor = platform.executor()
        executor.start(spec)
        reason = ended(executor)
    finally:
        platform.cluster.faults.remove(knob)
    assert reason.startswith("evicted: The node was low on resource: memory."), reason
    assert executor.poll() != 0 and texts(executor)[-1] == f"kaos: the training ended: {reason}"


def test_a_pod_past_its_deadline_says_so(platform):
    spec = platform.training(SLEEPS)
    knob = platform.cluster.faults.add("DeadlineExceeded", pods={"kaos.io/workload": spec.job_id}, after=0.5)
    try:
        executor = platform.executor()
        executor.start(spec)
        reason = ended(executor)
    finally:
        platform.cluster.faults.remove(knob)
    assert reason == "deadline exceeded: Pod was active on the node longer than the specified deadline", reason


def test_an_endpoint_whose_serve_keeps_exiting_ends_with_its_exit_and_its_deployment_goes(platform):
    spec = platform.endpoint("import sys\nprint('boom', flush=True)\nsys.exit(1)\n")
    executor = platform.executor()
    address = executor.start(spec)
    assert address.host.startswith("127.77.") and address.port == 8080  # the Service's cluster IP
    reason = ended(executor)
    assert re.fullmatch(r"(CrashLoopBackOff: )?exit code 1 \(last output: boom\)", reason), reason
    assert texts(executor)[-1] == f"kaos: the endpoint ended: {reason}"
    wait_for(lambda: platform.cluster.store.find(DEPLOYMENTS, "kaos", spec.job_id) is None,
             what="the Deployment deleted")


def test_a_fetch_that_fails_is_the_reason_with_the_agent_s_line(platform):
    layout = DataLayout(platform.data)
    digest = "c" * 64
    (layout.ingested_dir(digest) / "training").mkdir(parents=True)  # as an ingestion leaves it: the start's check
    spec = platform.training(SLEEPS, data=Artifact(Artifact.INGESTED, digest, name="manifest:ccccc"))
    executor = platform.executor()
    executor.start(spec)
    shutil.rmtree(layout.ingested_dir(digest))  # gone before the pod fetches it
    reason = ended(executor)
    assert reason.startswith("could not fetch its inputs: exit code 1 (last output: kaos: could not download "
                             "data: 404 NOT FOUND: "), reason


def test_what_an_earlier_start_left_under_the_same_names_is_replaced(platform):
    """A Deployment being deleted, its Service and Secret not collected yet (or a crash between a create and its
    record): the names are taken, and a start replaces them."""
    spec = platform.endpoint(PINGS)
    meta = {"name": spec.job_id, "namespace": "kaos", "labels": {"left": "over"}}
    platform.cluster.store.create(SERVICES, "kaos", {"metadata": dict(meta), "spec": {"ports": [{"port": 80}]}})
    platform.cluster.store.create(SECRETS, "kaos", {"metadata": dict(meta, name=f"kaos-token-{spec.job_id}")})
    platform.cluster.store.create(DEPLOYMENTS, "kaos", {"metadata": dict(meta), "spec": {
        "replicas": 0, "selector": {"matchLabels": {"left": "over"}},
        "template": {"metadata": {"labels": {"left": "over"}}, "spec": {"containers": [
            {"name": "c", "image": "x"}]}}}})
    executor = platform.executor()
    address = executor.start(spec)
    service = platform.cluster.store.get(SERVICES, "kaos", spec.job_id)
    assert "left" not in service["metadata"].get("labels", {}) and service["spec"]["clusterIP"] == address.host
    wait_for(lambda: platform.cluster.service_address("kaos", spec.job_id, 8080), what="the endpoint ready")
    executor.stop(timeout=2)
    assert executor.reason() == "killed on request"
    assert platform.cluster.store.find(DEPLOYMENTS, "kaos", spec.job_id) is None


def test_a_stopped_training_and_a_vanished_one(platform):
    stopped, vanishing = platform.executor(), platform.executor()
    stopped.start(platform.training(SLEEPS))
    spec = platform.training(SLEEPS)
    vanishing.start(spec)
    wait_for(lambda: "running" in texts(stopped) and "running" in texts(vanishing), what="both to run")
    stopped.stop(now=True)
    assert stopped.reason() == "killed on request"
    platform.cluster.store.delete(JOBS, "kaos", f"train-{spec.job_id}", "Background")  # as kubectl delete would
    assert ended(vanishing).startswith(f"vanished: its Job train-{spec.job_id} was deleted")
    assert pod_of(platform.cluster, spec.job_id) is None


def test_a_training_no_state_records_is_deleted_by_its_name_on_request(platform):
    """A start whose answers were lost (its Job made, the answer never come) leaves a Job no row records: a kill of
    its workload, which has no state, finds it by its job's label and deletes it; another workload's is left."""
    started = platform.executor()
    spec = platform.training(SLEEPS)
    started.start(spec)
    wait_for(lambda: "running" in texts(started), what="it to run")
    job_id = spec.job_id.rsplit("-", 1)[0]
    platform.executor().remove_unrecorded(spec.log, [f"{job_id}-1"])  # another partition of the job
    assert platform.cluster.store.find(JOBS, "kaos", f"train-{spec.job_id}") is not None
    platform.executor().remove_unrecorded(spec.log, [spec.job_id])
    wait_for(lambda: platform.cluster.store.find(JOBS, "kaos", f"train-{spec.job_id}") is None, what="it deleted")
    assert ended(started).startswith("vanished: its Job")


def test_the_shared_watch_resumes_after_a_disconnect_and_lists_again_after_410(platform):
    """kubernetes_watch.Informer on its own: a cut watch is resumed from its resourceVersion (no new list, and a
    change made meanwhile arrives); a watch whose resourceVersion the server forgot (410) lists again."""
    from kaos_backend.config import platform_id
    from kaos_backend.executors.kubernetes_client import apis
    from kaos_backend.executors.kubernetes_names import platform_selector
    from kaos_backend.executors.kubernetes_watch import Informer
    from tests.support.kube.kinds import CONFIGMAPS
    informer = Informer(*apis(platform.config), "kaos", platform_selector(platform_id(platform.data))).start()
    try:
        assert informer.wait_synced(WAIT)
        listed = {reflector.kind: int(reflector.resource_version) for reflector in informer.reflectors}
        platform.cluster.store.create(CONFIGMAPS, "kaos", {"metadata": {"name": "bookmarked"}})
        wait_for(lambda: all(int(reflector.resource_version) > listed[reflector.kind]
                             for reflector in informer.reflectors), what="a bookmark on each watch: they are open")
        assert informer.calls() == {"list": 4, "watch": 4}  # pods, Jobs, Deployments, Services
        labels = {"app.kubernetes.io/managed-by": "kaos", "kaos.io/platform": platform_id(platform.data)}
        platform.cluster.disconnect_watches()
        platform.cluster.store.create(JOBS, "kaos", _job("while-cut", labels))
        wait_for(lambda: informer.jobs.get("while-cut"), what="the change made while the watch was cut")
        wait_for(lambda: informer.calls()["watch"] >= 8, what="the four watches resumed")
        assert informer.calls()["list"] == 4
        with platform.cluster.store.lock:  # no watch event nor bookmark in between (a bookmark would carry them past)
            platform.cluster.store.delete(JOBS, "kaos", "while-cut", "Background")  # gone from the history as well
            platform.cluster.expire_watches()  # an unwatched change, the history compacted, the watches ended
        wait_for(lambda: informer.calls()["list"] == 8, what="a list after 410")
        wait_for(lambda: informer.jobs.get("while-cut") is None, what="the deleted Job gone from the cache")
    finally:
        informer.stop()


def _job(name: str, labels: dict) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"template": {
        "metadata": {"labels": labels}, "spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "x", "command": ["true"]}]}}}}


def test_the_capacity_one_workload_can_get_is_the_largest_node_s(platform):
    """Reference §6.13's MAX_CPU, MAX_MEMORY, MAX_GPU, read live: the fake's one node allocates 4 cpus, 8Gi and
    no GPU (0: GPUs are not enabled)."""
    from kaos_backend.executors.base import Capacity
    from kaos_backend.executors.kubernetes_capacity import node_capacity
    assert registry.executor_class("kubernetes").capacity(platform.config) == Capacity(4.0, 8.0, 0, ((4.0, 8.0, 0),))
    nodes = [{"status": {"allocatable": {"cpu": "3900m", "memory": "16318836Ki", "nvidia.com/gpu": "2"}}},
             {"status": {"allocatable": {"cpu": "8", "memory": "7Gi"}}, "spec": {"unschedulable": True}},
             {"status": {"allocatable": {"cpu": "64", "memory": "256Gi"}}, "spec": {"taints": [
                 {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}},
             {"status": {"allocatable": {"cpu": "2", "memory": "32G"}}, "spec": {"taints": [
                 {"key": "example.com/prefer-not", "effect": "PreferNoSchedule"}]}}]
    each = ((3.9, 16318836 / 2 ** 20, 2), (2.0, 32e9 / 2 ** 30, 0))  # the schedulable nodes' own
    assert node_capacity(nodes) == Capacity(3.9, 32e9 / 2 ** 30, 2, each)


def _used(history) -> Set[Tuple[str, str, str]]:
    """(API group, resource, verb) of each request of the history: the verbs as RBAC names them."""
    used = set()
    for method, path, query in history:
        parts = [part for part in path.split("/") if part]
        if parts[:1] == ["api"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"]:
            group, rest = parts[1], parts[3:]
        else:
            continue
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            rest = rest[2:]
        resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        if sub:
            resource = f"{resource}/{sub}"
        if method == "GET":
            verb = "get" if name else ("watch" if "watch=true" in query.lower() else "list")
        else:
            verb = {"POST": "create", "DELETE": "delete", "PUT": "update", "PATCH": "patch"}[method]
        used.add((group, resource, verb))
    return used


def test_a_notebook_is_a_deployment_and_a_service_on_8888_and_its_work_directory_a_claim_that_outlives_them(
        platform):
    """The objects and the fetch (no jupyter in this image: tests/kubernetes/test_notebooks.py runs a real one):
    the claim of an earlier deploy keeps its edited file, the source's other files are added, the Jupyter token
    is in the Secret only; a stop deletes the Deployment, its Service and Secret, never the claim."""
    name = "notebook-executor-tester"
    source = platform.bundle({"base/Dockerfile": "FROM python:3.11-slim\n", "base/model/example.ipynb": "shipped",
                              "base/model/added.txt": "from the bundle"}, "base")
    spec = WorkloadSpec(job_id=name, kind="notebook", log=f"notebooks/{name}", preamble=[f"processing job {name}"],
                        source=source, attached=[platform.features], image=platform.image,
                        env={"KAOS_WORKSPACE": "executor", "KAOS_NOTEBOOK": name},
                        secrets={"JUPYTER_TOKEN": "jupyter-secret"}, base_url=f"/{name}/", idle_timeout=0)
    work = os.path.join(platform.cluster.kubelet.volumes.root, "claims", "kaos", f"{name}-work")
    os.makedirs(work)
    with open(os.path.join(work, "example.ipynb"), "w") as edited:
        edited.write("edited")
    executor = platform.executor()
    address = executor.start(spec)
    store = platform.cluster.store
    service = store.get(SERVICES, "kaos", name)
    assert (address.host, address.port) == (service["spec"]["clusterIP"], 8888)
    assert store.get(DEPLOYMENTS, "kaos", name)["metadata"]["labels"]["kaos.io/kind"] == "notebook"
    claim = store.get(PVCS, "kaos", f"{name}-work")
    assert not claim["metadata"].get("ownerReferences") and claim["metadata"]["labels"]["kaos.io/job"] == name
    secret = store.get(SECRETS, "kaos", f"kaos-token-{name}")
    assert base64.b64decode(secret["data"]["JUPYTER_TOKEN"]) == b"jupyter-secret"
    wait_for(lambda: os.path.exists(os.path.join(work, "added.txt")), what="the work directory seeded")
    with open(os.path.join(work, "example.ipynb")) as kept:
        assert kept.read() == "edited"
    executor.stop(now=True)
    wait_for(lambda: not any(store.find(kind, "kaos", object_name) for kind, object_name in (
        (DEPLOYMENTS, name), (SERVICES, name), (SECRETS, f"kaos-token-{name}"))), what="the notebook's objects gone")
    assert store.find(PVCS, "kaos", f"{name}-work") is not None and os.path.exists(os.path.join(work, "added.txt"))
    # once its workspace is gone (WorkspaceService.delete), the claim goes too; one gone already is no error
    kube = registry.executor_class("kubernetes")
    assert kube.remove_notebook_work(platform.config, "executor-other") and store.find(PVCS, "kaos", f"{name}-work")
    assert kube.remove_notebook_work(platform.config, "executor")
    assert store.find(PVCS, "kaos", f"{name}-work") is None


def test_the_role_grants_exactly_what_the_executor_used(platform):
    """Last in the module: what every test above made the executor ask of the API server."""
    rules = kubernetes_spec.RBAC_RULES + kubernetes_spec.NODE_RBAC_RULES
    granted = {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    used = _used(list(platform.cluster.routes.history))
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    assert used == granted, f"granted but not used: {sorted(granted - used)}"
