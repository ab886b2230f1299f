"""A backend with KAOS_EXECUTOR=kubernetes on the fake cluster (tests/support/kube: real HTTP for the official
client, a kubelet that runs pods as processes here; root needed for its volume mounts, as CI runs), driven by
the real CLI: a training is a Job that reaches JOB_SUCCESS and a model, an endpoint a Deployment and a Service
that answers through the gateway route, and kill deletes them; the fake's OOMKilled, Unschedulable and
ImagePullBackOff are JOB_FAILURE (PIPELINE_FAILURE for an endpoint) with that reason in the list and as the
log's last line; a watch cut off or expired (410) loses no change; a backend restart finds its training again,
and a Job deleted meanwhile is a failure with a reason."""
import os
import re
import signal
from pathlib import Path

import pytest
import requests

from kaos_backend.config import platform_id
from kaos_backend.executors.kubernetes_names import platform_selector
from tests.support.backend import BackendProcess, free_port
from tests.support.cli import kaos
from tests.support.kube.fixtures import module_kube_cluster  # noqa: F401 (a fixture)
from tests.support.kube_platform import kube_env, pods_of, venv_images
from tests.support.platform import tiny_data_bundle, tiny_train_bundle, wait_for
from tests.support.tiny_bundles import serve_source, train_source

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fake kubelet mounts volumes as root (CI runs so)")

TERMINAL = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED")
MODEL_ID = re.compile(r"\b[0-9a-f]{5}_[0-9a-f]{5}:[0-9a-f]{6}\b")
WAIT = 120.0   # a bound against hanging, never a speed claim
WAITS_FOR_GO = ("import os, sys, time\nprint('before', flush=True)\n"
                "while not os.path.exists(os.path.join(sys.argv[1], 'go')):\n    time.sleep(0.05)\n"
                "print('after', flush=True)\nos.makedirs(sys.argv[1] + '/model')\n")


class KubePlatform:
    """A backend whose workloads run on the fake cluster, and a kaos project connected to it."""

    def __init__(self, root: Path, cluster, **settings):
        self.root = root
        self.cluster = cluster
        data = root / "data"
        cluster.kubelet.images = venv_images(data)
        internal = free_port()
        self.env = {**kube_env(cluster, root / "kubeconfig", f"http://127.0.0.1:{internal}",
                               pod_pending_timeout=0, **settings),  # a pod that cannot start fails at once
                    "KAOS_INTERNAL_PORT": str(internal)}
        self._connect(data)

    def _connect(self, data: Path) -> None:
        """Start the backend on `data` with `self.env`, connect a kaos project to it, and make the test's own API
        clients of the cluster (`core`, `batch`, `apps`)."""
        self.backend = BackendProcess(data, env=self.env).start()
        self.project = self.root / "project"
        self.project.mkdir()
        assert self.kaos("init", "-e", self.backend.url, "-t", self.backend.token).code == 0
        import kubernetes.client
        self.api = self.cluster.api_client()
        self.core, self.batch = kubernetes.client.CoreV1Api(self.api), kubernetes.client.BatchV1Api(self.api)
        self.apps = kubernetes.client.AppsV1Api(self.api)

    @property
    def selector(self) -> str:
        return platform_selector(platform_id(self.backend.data_dir))

    def kaos(self, *args, input=None):
        return kaos(self.project, *args, input=input, timeout=300)

    def workspace(self, name: str) -> str:
        assert self.kaos("workspace", "create", "-n", name).code == 0
        return name

    def job_ids(self, workspace: str, kind: str) -> set:
        return {job["job_id"] for job in self.backend.get(f"train/{workspace}", timeout=30).json()["response"][kind]}

    def job(self, workspace: str, job_id: str) -> dict:
        return self.backend.get(f"job/{workspace}/{job_id}", timeout=30).json()["response"]

    def terminal(self, workspace: str, job_id: str) -> dict:
        return wait_for(lambda: (lambda job: job if job["state"] in TERMINAL else None)(self.job(workspace, job_id)),
                        WAIT, what=f"job {job_id} to end")

    def train(self, workspace: str, tmp_path: Path, script: str = None, *options) -> str:
        """Deploy a training (tiny_bundles' train, or `script`) on tiny data; its job id, once it runs."""
        code = tiny_train_bundle(tmp_path / "code", script) if script else train_source(tmp_path / "code")
        data = tiny_data_bundle(tmp_path / "data")
        before = self.job_ids(workspace, "training")
        deployed = self.kaos("train", "deploy", "-s", str(code), "-d", str(data), *options)
        assert deployed.code == 0, deployed
        return wait_for(lambda: next(iter(self.job_ids(workspace, "training") - before), None), WAIT,
                        what="the training job")

    def log_texts(self, job_id: str, workspace: str = None) -> list:
        """The texts of the training's log records, as `kaos train logs` shows them (in the current workspace,
        or the given one)."""
        if workspace:
            assert self.kaos("workspace", "set", "-n", workspace).code == 0
        out = self.kaos("train", "logs", "-j", job_id).out
        return [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[")]

    def endpoints(self, workspace: str) -> list:
        return self.backend.get(f"inference/{workspace}", timeout=30).json()["response"]["endpoints"]

    def endpoint(self, workspace: str, name: str) -> dict:
        return next((e for e in self.endpoints(workspace) if e["name"] == name), None)

    def objects(self, kind: str, **labels) -> list:
        selector = ",".join([self.selector] + [f"kaos.io/{key}={value}" for key, value in labels.items()])
        call = {"jobs": self.batch.list_namespaced_job, "deployments": self.apps.list_namespaced_deployment,
                "services": self.core.list_namespaced_service, "secrets": self.core.list_namespaced_secret,
                "pods": self.core.list_namespaced_pod,
                "claims": self.core.list_namespaced_persistent_volume_claim}[kind]
        return call("kaos", label_selector=selector).items

    def go(self, job_id: str) -> None:
        """Let a WAITS_FOR_GO training finish: the file `go` in its output, in the volume of each of its pods (a
        replaced pod and its replacement can share a creationTimestamp second: the newest is not always known)."""
        for pod in pods_of(self.cluster, f"{job_id}-0"):
            outputs = Path(self.cluster.kubelet.volumes.pod_dir(pod)) / "volumes" / "pfs" / "out"
            for out in (outputs.iterdir() if outputs.is_dir() else ()):
                (out / "go").touch()

    def started(self, workspace: str, job_id: str) -> None:
        wait_for(lambda: "before" in self.backend.get(f"train/{workspace}/{job_id}/logs", timeout=30).text, WAIT,
                 what="the training to start")

    def kill_backend(self) -> None:
        os.killpg(self.backend.process.pid, signal.SIGKILL)  # API, front, scheduler (and its followers)
        self.backend.process.wait(timeout=30)

    def restart_backend(self) -> None:
        self.backend = BackendProcess(self.backend.data_dir, env=self.env, port=self.backend.port).start()


@pytest.fixture(scope="module")
def platform(module_kube_cluster, tmp_path_factory):  # noqa: F811
    made = KubePlatform(tmp_path_factory.mktemp("kube-platform"), module_kube_cluster)
    yield made
    made.backend.stop()


def test_a_training_is_a_job_that_makes_a_model_served_by_a_deployment_through_the_gateway(platform, tmp_path):
    platform.workspace("tiny")
    job_id = platform.train("tiny", tmp_path)
    job = platform.terminal("tiny", job_id)
    assert job["state"] == "JOB_SUCCESS", platform.kaos("train", "logs", "-j", job_id).out
    [made] = platform.objects("jobs", job=job_id)
    assert made.metadata.name == f"train-{job_id}-0" and made.spec.backoff_limit == 0
    texts = platform.log_texts(job_id)
    assert texts[:2] == [f"processing job {job_id}", "starting to download data"], texts
    assert texts.index("beginning to run user code") < texts.index("kaos: the training ended: exit code 0")
    assert any(text.startswith("kaos: uploaded /pfs/out/") for text in texts)
    model_id = MODEL_ID.search(platform.kaos("train", "info", "-j", job_id).out).group(0)

    served = platform.kaos("serve", "deploy", "-s", str(serve_source(tmp_path / "serve")), "-m", model_id)
    assert served.code == 0, served
    name = re.search(r"serve-tiny-[0-9a-f]{6}", served.out).group(0)
    wait_for(lambda: platform.endpoint("tiny", name)["state"] in ("PIPELINE_RUNNING", "PIPELINE_FAILURE"), WAIT,
             what="the endpoint to run")
    assert platform.endpoint("tiny", name)["state"] == "PIPELINE_RUNNING", platform.kaos("serve", "logs", "-e",
                                                                                         name).out
    [deployment] = platform.objects("deployments", job=name)
    [service] = platform.objects("services", job=name)
    assert deployment.metadata.name == service.metadata.name == name and service.spec.type == "ClusterIP"
    answer = requests.post(f"{platform.backend.root}/{name}/invocations", data="7", timeout=60)
    assert (answer.status_code, answer.text) == (200, "7")  # the model's scale: 1 (no hyperparameters)
    assert "PIPELINE_RUNNING" in platform.kaos("serve", "list").out
    logs = platform.kaos("serve", "logs", "-e", name).out
    assert "beginning to run user code" in logs and "POST /invocations" in logs

    assert platform.kaos("serve", "kill", "-e", name, input="y\n").code == 0
    wait_for(lambda: not any(platform.objects(kind, job=name) for kind in ("deployments", "services", "secrets",
                                                                           "pods")),
             WAIT, what="the endpoint's objects deleted")


def test_kill_deletes_the_training_s_job_and_its_pod(platform, tmp_path):
    platform.workspace("killed")
    job_id = platform.train("killed", tmp_path, WAITS_FOR_GO)
    platform.started("killed", job_id)
    assert platform.objects("jobs", job=job_id) and platform.objects("secrets", job=job_id)
    assert platform.kaos("train", "kill", "-j", job_id, input="y\n").code == 0
    assert platform.terminal("killed", job_id)["state"] == "JOB_KILLED"
    wait_for(lambda: not any(platform.objects(kind, job=job_id) for kind in ("jobs", "secrets", "pods")), WAIT,
             what="the Job, its Secret and its pod deleted")


@pytest.mark.parametrize("fault, options, reason", [
    ("OOMKilled", ("--memory", "50Mi"), "out of memory (limit 50Mi)"),
    ("Unschedulable", (), "its pod cannot be scheduled: 0/1 nodes are available"),
    ("ErrImagePull", (), "its pod cannot pull the image kaos-venv:"),
])
def test_a_pod_the_cluster_fails_is_a_failed_job_with_the_reason(platform, tmp_path, fault, options, reason):
    workspace = platform.workspace(f"fault-{fault.lower()}")
    # the training's own process runs out of memory (not the fetch of its inputs, which a loaded machine can make
    # last past `after`: "could not fetch its inputs: out of memory ..." is another test's)
    knob = platform.cluster.faults.add(fault, pods={"kaos.io/workspace": workspace}, after=0.5,
                                       container="train" if fault == "OOMKilled" else None)
    try:
        job_id = platform.train(workspace, tmp_path, "import time\ntime.sleep(60)\n", *options)
        job = platform.terminal(workspace, job_id)
    finally:
        platform.cluster.faults.remove(knob)
    assert job["state"] == "JOB_FAILURE" and job["reason"].startswith(reason), job
    listed = platform.kaos("train", "list").out
    assert "JOB_FAILURE" in listed and reason[:30] in listed
    assert platform.log_texts(job_id)[-1] == f"kaos: the training ended: {job['reason']}"
    wait_for(lambda: not platform.objects("pods", job=job_id) or fault == "OOMKilled", WAIT,
             what="a pod that could not start deleted")


def test_an_endpoint_whose_pod_cannot_be_scheduled_is_a_pipeline_failure_with_the_reason(platform, tmp_path):
    workspace = platform.workspace("unschedulable")
    knob = platform.cluster.faults.add("Unschedulable", pods={"kaos.io/workspace": workspace})
    try:
        served = platform.kaos("serve", "deploy", "-s", str(serve_source(tmp_path / "serve")))
        assert served.code == 0, served
        name = re.search(r"serve-unschedulable-[0-9a-f]{6}", served.out).group(0)
        endpoint = wait_for(lambda: (lambda e: e if e["state"] == "PIPELINE_FAILURE" else None)(
            platform.endpoint(workspace, name)), WAIT, what="the endpoint to fail")
    finally:
        platform.cluster.faults.remove(knob)
    assert endpoint["reason"].startswith("the serve process ended: its pod cannot be scheduled: 0/1 nodes"), endpoint
    assert "PIPELINE_FAILURE" in platform.kaos("serve", "list").out
    logs = platform.kaos("serve", "logs", "-e", name).out
    assert "kaos: the endpoint ended: its pod cannot be scheduled: 0/1 nodes" in logs
    assert not platform.objects("deployments", job=name)


@pytest.mark.parametrize("option, error", [
    (("--cpu", "5"), "CPU request 5 too high. Maximum allowed is 4."),
    (("--memory", "9Gi"), "Memory request 9Gi too high. Maximum allowed is 8Gi."),
    (("--gpu", "1"), "GPUs are not enabled"),
])
def test_a_request_no_node_can_meet_is_refused_when_it_is_made(platform, tmp_path, option, error):
    """The maxima of reference §6.13, read live from the cluster's nodes (the fake's one: 4 cpus, 8Gi, no GPU)."""
    workspace = platform.workspace(f"capacity-{option[0][2:]}")
    code, data = train_source(tmp_path / "code"), tiny_data_bundle(tmp_path / "data")
    refused = platform.kaos("train", "deploy", "-s", str(code), "-d", str(data), *option)
    assert (refused.code, refused.err.strip()) == (1, f"Error - {error}"), refused
    assert not platform.job_ids(workspace, "building")


def test_a_watch_cut_off_or_expired_loses_no_change(platform, tmp_path):
    """The server ends every watch and forgets its history (410 for a resumed watch) while a training runs; its
    end, which comes meanwhile, is still seen."""
    platform.workspace("watch")
    job_id = platform.train("watch", tmp_path, WAITS_FOR_GO)
    platform.started("watch", job_id)
    # a change the backend's watches do not see, then the history gone, then the watches ended, at once (a bookmark
    # in between would carry them past it: a CI run saw no 410): their resourceVersion is older than what the
    # server keeps, so the resumed watches get 410 and list again
    platform.cluster.expire_watches()
    platform.go(job_id)
    assert platform.terminal("watch", job_id)["state"] == "JOB_SUCCESS"
    assert "expired (410 Gone): listing again" in platform.backend.log()


def test_a_backend_restart_finds_its_training_and_a_job_deleted_meanwhile_is_a_failure(platform, tmp_path):
    platform.workspace("deleted")  # a workspace runs one training at a time
    deleted = platform.train("deleted", tmp_path / "b", WAITS_FOR_GO)
    platform.started("deleted", deleted)
    platform.workspace("restart")
    finishing = platform.train("restart", tmp_path / "a", WAITS_FOR_GO)
    platform.started("restart", finishing)
    platform.kill_backend()
    platform.go(finishing)  # it ends while no backend runs; its upload waits for the backend (retries)
    platform.batch.delete_namespaced_job(f"train-{deleted}-0", "kaos", propagation_policy="Background")
    platform.restart_backend()
    assert platform.terminal("restart", finishing)["state"] == "JOB_SUCCESS"
    texts = platform.log_texts(finishing)
    assert texts.count("before") == 1 and texts.count("after") == 1, texts
    assert texts.index("beginning to run user code") < texts.index("before") < texts.index("after")
    job = platform.terminal("deleted", deleted)
    assert job["state"] == "JOB_FAILURE" and job["reason"].startswith(f"vanished: its Job train-{deleted}-0 was "
                                                                      "deleted"), job
    assert platform.log_texts(deleted, "deleted")[-1] == f"kaos: the training ended: {job['reason']}"
