"""`kaos build deploy -c KUBERNETES|MINIKUBE` and `kaos destroy` with the real CLI against the fake cluster
(tests/support/kube: real HTTP, the official client, pods run as local processes, Services on 127.77.x.y cluster
IPs). The backend image the fake resolves is this checkout's `kaos-backend`, so the shipped manifests start a real
backend: its data directory on the claim's volume, its port published by the fake's pod network."""
import base64
import sys

import kubernetes.client as k8s
import pytest
import requests

from kaos_cli import kube_platform
from kaos_cli.kube_api import Cluster
from kaos_cli.kube_manifests import load
from kaos_cli.state import Config
from tests.support.cli import assert_one_line_failure, kaos
from tests.support.kube import FakeCluster
from tests.support.kube.fixtures import kube_cluster  # noqa: F401  (a fixture)
from tests.support.kube.images import Image, host_path

BACKEND_IMAGE = "registry.example/kaos-backend:under-test"
CRASHING_IMAGE = "registry.example/kaos-backend:crashing"
NAMESPACE = "team-a"
UNRELATED = "not-kaos"


def this_backend(argv):
    """`kaos-backend serve ...` in the backend's container runs this checkout's backend."""
    return [sys.executable, "-m", "kaos_backend", *argv[1:]] if argv[:1] == ["kaos-backend"] else argv


def images_for(kubeconfig):
    """The backend's image is this checkout (reaching the fake's API server as a pod reaches its cluster's:
    KUBECONFIG stands for the in-cluster configuration); the crashing one says why and exits; the Docker engine's
    sidecar (docker:27-dind, which would need privileges) only sleeps; no other image can be pulled."""
    def images(reference: str):
        if reference == BACKEND_IMAGE:
            return Image(env={"PATH": host_path(), "HOME": "/root", "KUBECONFIG": str(kubeconfig)},
                         rewrite=this_backend)
        if reference == CRASHING_IMAGE:
            return Image(rewrite=lambda argv: ["sh", "-c", "echo starting; echo 'Error - cannot open the "
                                                           "database: it is on fire'; exit 3"])
        if reference.startswith("docker:"):
            return Image(rewrite=lambda argv: ["sleep", "infinity"])
        return None
    return images


@pytest.fixture
def fake(tmp_path):
    """A started fake cluster of these images (its node's memory as given), its kubeconfig written beside the
    project directory; stopped after the test."""
    started = []

    def start(memory: str = "8Gi") -> FakeCluster:
        cluster = FakeCluster(tmp_path / "kubefake", images=images_for(tmp_path / "backend-kubeconfig"),
                              memory=memory).start()
        started.append(cluster)
        cluster.write_kubeconfig(tmp_path / "kubeconfig")  # the CLI's (a test may write another context)
        cluster.write_kubeconfig(tmp_path / "backend-kubeconfig")
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
        assert not cluster.errors, f"the fake cluster failed: {cluster.errors}"


@pytest.fixture
def project(tmp_path):
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


def cli(project, *args, timeout=180):
    return kaos(project, *args, env={"KUBECONFIG": str(project.parent / "kubeconfig")}, timeout=timeout)


def deploy(project, *args):
    return cli(project, "build", "deploy", "-y", *args)


def names(listing):
    return sorted(item.metadata.name for item in listing.items)


def context_fields(project):
    return Config(project / ".kaos" / "config").context("KUBERNETES")


def make_workloads_and_others(core, batch):
    """What the kubernetes executor makes in the namespace (labelled managed-by kaos), and objects of someone
    else there."""
    labels = {"app.kubernetes.io/managed-by": "kaos", "kaos.io/workspace": "mnist"}
    template = {"metadata": {"labels": labels}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "train", "image": "python:3.11", "command": ["sleep", "60"]}]}}
    batch.create_namespaced_job(NAMESPACE, {"metadata": {"name": "train-1-0", "labels": labels},
                                            "spec": {"backoffLimit": 0, "template": template}})
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "kaos-token-train-1-0", "labels": labels},
                                              "stringData": {"token": "t"}})
    core.create_namespaced_service(NAMESPACE, {"metadata": {"name": "serve-mnist-abcdef", "labels": labels},
                                               "spec": {"selector": labels, "ports": [{"port": 8080}]}})
    core.create_namespaced_persistent_volume_claim(NAMESPACE, {  # a notebook's work directory: it outlives kills
        "metadata": {"name": "notebook-mnist-tester-work", "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": UNRELATED}, "data": {"a": "b"}})
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": UNRELATED}, "stringData": {"a": "b"}})


def test_deploy_brings_the_backend_up_and_destroy_removes_exactly_what_kaos_made(fake, project):
    cluster = fake()
    client = cluster.api_client()
    core, apps, batch = k8s.CoreV1Api(client), k8s.AppsV1Api(client), k8s.BatchV1Api(client)
    rbac, networking = k8s.RbacAuthorizationV1Api(client), k8s.NetworkingV1Api(client)
    rbac.create_cluster_role_binding({  # a second kaos of the cluster, in another namespace, shares the ClusterRole
        "metadata": {"name": "kaos-node-reader-other"}, "subjects": [
            {"kind": "ServiceAccount", "name": "kaos-backend", "namespace": "other"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kaos-node-reader"}})

    deployed = deploy(project, "-c", "KUBERNETES", "--namespace", NAMESPACE, "--image", BACKEND_IMAGE)
    assert deployed.code == 0, deployed
    service = core.read_namespaced_service("kaos-backend", NAMESPACE)
    url = f"http://{service.spec.cluster_ip}:8080/api/"
    assert deployed.out.splitlines() == [f"Info - Endpoint successfully set to {url}",
                                         "Info - Successfully built kaos environment"]
    fields = context_fields(project)
    assert Config(project / ".kaos" / "config").active == "KUBERNETES"
    assert (fields["url"], fields["kind"], fields["kube_context"], fields["namespace"], fields["target"]) == \
        (url, "kubernetes", "kubefake", NAMESPACE, "kubernetes")
    token = base64.b64decode(core.read_namespaced_secret("kaos-backend", NAMESPACE).data["token"]).decode()
    assert token == fields["token"]
    assert apps.read_namespaced_deployment("kaos-backend", NAMESPACE).spec.template.spec.containers[0].image == \
        BACKEND_IMAGE
    binding = rbac.read_cluster_role_binding(f"kaos-node-reader-{NAMESPACE}")
    assert [(s.name, s.namespace) for s in binding.subjects] == [("kaos-backend", NAMESPACE)]
    assert rbac.read_namespaced_role_binding("kaos-backend", NAMESPACE).subjects[0].namespace == NAMESPACE

    created = cli(project, "workspace", "create", "-n", "mnist")  # through the Service's cluster IP
    assert created.code == 0 and "Successfully set mnist workspace" in created.out, created

    again = deploy(project, "-c", "KUBERNETES", "--image", BACKEND_IMAGE)
    assert_one_line_failure(again)
    assert again.err == "Aborting - kaos backend is already built.\n"

    rebuilt = deploy(project, "-c", "KUBERNETES", "--image", BACKEND_IMAGE, "-f")  # where the context says
    assert rebuilt.code == 0 and "Warning - Performing force build of the backend" in rebuilt.err, rebuilt
    fields = context_fields(project)
    assert fields["namespace"] == NAMESPACE and fields["token"] != token and fields["url"] == url
    assert requests.get(url + "workspace", headers={"X-Token": token}, timeout=30).status_code == 401
    listed = cli(project, "workspace", "list")  # the new token; the data volume kept the workspace
    assert listed.code == 0 and "mnist" in listed.out, listed

    make_workloads_and_others(core, batch)
    destroyed = cli(project, "destroy", "-c", "KUBERNETES", "-y")
    assert destroyed.code == 0 and destroyed.out == "Info - Successfully destroyed kaos environment\n", destroyed
    assert names(core.list_namespaced_config_map(NAMESPACE)) == [UNRELATED]
    assert names(core.list_namespaced_secret(NAMESPACE)) == [UNRELATED]
    for listing in (core.list_namespaced_service(NAMESPACE), apps.list_namespaced_deployment(NAMESPACE),
                    batch.list_namespaced_job(NAMESPACE), core.list_namespaced_pod(NAMESPACE),
                    core.list_namespaced_service_account(NAMESPACE),
                    core.list_namespaced_persistent_volume_claim(NAMESPACE), rbac.list_namespaced_role(NAMESPACE),
                    rbac.list_namespaced_role_binding(NAMESPACE), networking.list_namespaced_ingress(NAMESPACE),
                    networking.list_namespaced_network_policy(NAMESPACE)):
        assert names(listing) == []
    assert names(rbac.list_cluster_role_binding()) == ["kaos-node-reader-other"]
    assert names(rbac.list_cluster_role()) == ["kaos-node-reader"]  # the other kaos still uses it
    core.read_namespace(NAMESPACE)  # the namespace stays: it may hold more than kaos
    config = Config(project / ".kaos" / "config")
    assert config.context("KUBERNETES") is None and config.active is None


def test_an_image_the_cluster_cannot_pull_fails_in_one_line_and_destroy_removes_what_was_made(fake, project):
    cluster = fake()
    cluster.write_kubeconfig(project.parent / "kubeconfig", context="minikube")
    failed = deploy(project, "-c", "MINIKUBE", "--image", "kaos-backend:nowhere")
    assert_one_line_failure(failed)
    assert failed.err.startswith("Error - Deployment Unsuccessful while creating kaos MINIKUBE environment: pod "
                                 "kaos-backend-"), failed
    assert ": container backend: ImagePullBackOff: " in failed.err and "kaos-backend:nowhere" in failed.err
    assert failed.err.endswith(" - kaos destroy -c MINIKUBE removes what was made\n")

    core = k8s.CoreV1Api(cluster.api_client())
    assert "kaos-backend" in names(core.list_namespaced_service("kaos"))
    destroyed = cli(project, "destroy", "-c", "MINIKUBE", "-y")
    assert destroyed.code == 0, destroyed
    shipped = {obj["metadata"]["name"] for obj in load("minikube") if obj["kind"] == "Service"}
    assert not shipped & set(names(core.list_namespaced_service("kaos")))
    assert names(core.list_namespaced_persistent_volume_claim("kaos")) == []


def test_a_backend_no_node_can_hold_is_reported_with_the_scheduler_s_message(fake, project):
    fake(memory="256Mi")  # the backend requests 512Mi
    failed = deploy(project, "-c", "KUBERNETES", "--image", BACKEND_IMAGE, "--timeout", "2", "--registry", "r.test")
    assert_one_line_failure(failed)
    assert "environment: not available after 2 s: pod kaos-backend-" in failed.err, failed
    assert " is Unschedulable: 0/1 nodes are available: 1 Insufficient memory." in failed.err


def test_a_backend_that_keeps_crashing_is_reported_with_what_it_logged(fake, project):
    fake()
    failed = deploy(project, "-c", "KUBERNETES", "--image", CRASHING_IMAGE, "--registry", "registry.test")
    assert_one_line_failure(failed)
    assert ": container backend: CrashLoopBackOff (exit code 3, Error): cannot open the database: it is on fire - " \
           "kaos destroy -c KUBERNETES removes what was made" in failed.err, failed


def test_the_url_is_the_given_one_else_the_ingress_s_else_minikube_s_node_port_else_the_cluster_ip(
        kube_cluster, tmp_path):  # noqa: F811 (the fixture)
    client = kube_cluster.api_client()
    core, networking = k8s.CoreV1Api(client), k8s.NetworkingV1Api(client)
    ports = [{"name": "http", "port": 8080, "targetPort": "http"}]
    service = core.create_namespaced_service("kaos", {"metadata": {"name": "kaos-backend"}, "spec": {
        "selector": {"app": "none"}, "ports": ports}})
    cluster = Cluster(kube_cluster.write_kubeconfig(tmp_path / "kubeconfig"))

    def url(cloud="KUBERNETES", given=None):
        return kube_platform.backend_url(cluster, "kaos", cloud, given)

    cluster_ip = (f"http://{service.spec.cluster_ip}:8080/api/", "the Service's cluster IP")
    assert url() == url("MINIKUBE") == cluster_ip
    assert url(given="http://kaos.example/api/") == ("http://kaos.example/api/", "--url")

    core.patch_namespaced_service("kaos-backend", "kaos", {"spec": {"type": "NodePort", "ports": [
        dict(ports[0], nodePort=30123)]}})
    assert url("MINIKUBE") == ("http://127.0.0.1:30123/api/", "the node's NodePort")  # the node's InternalIP
    assert url() == cluster_ip

    backend = {"service": {"name": "kaos-backend", "port": {"name": "http"}}}
    networking.create_namespaced_ingress("kaos", {"metadata": {"name": "kaos"}, "spec": {"rules": [
        {"http": {"paths": [{"path": "/api", "pathType": "Prefix", "backend": backend}]}}]}})
    assert url() == cluster_ip  # no address yet: no Ingress controller gave it one
    networking.patch_namespaced_ingress_status("kaos", "kaos", {"status": {"loadBalancer": {"ingress": [
        {"ip": "192.0.2.7"}]}}})
    assert url() == url("MINIKUBE") == ("http://192.0.2.7/api/", "the Ingress kaos")
    networking.patch_namespaced_ingress("kaos", "kaos", {"spec": {"tls": [{"hosts": ["kaos.example"]}]}})
    networking.patch_namespaced_ingress_status("kaos", "kaos", {"status": {"loadBalancer": {"ingress": [
        {"hostname": "kaos.example"}]}}})
    assert url() == ("https://kaos.example/api/", "the Ingress kaos")
    cluster.close()


def test_without_the_kubernetes_client_the_deploy_says_what_to_install(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kaos_cli.main import cli as root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # `import kubernetes` raises ImportError
    for args in (["build", "deploy", "-c", "KUBERNETES", "-y"], ["build", "deploy", "-c", "MINIKUBE", "-y"]):
        result = CliRunner().invoke(root, args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.output.strip().splitlines() == [
            f"Error - The {args[3]} platform needs the Kubernetes client: pip install 'kaos[kubernetes]'"]
    assert not (tmp_path / ".kaos").exists()
