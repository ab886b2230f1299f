"""`kaos build deploy -c KUBERNETES|MINIKUBE` and `kaos destroy` with the real CLI against the fake cluster
(tests/support/kube: real HTTP, the official client, pods run as local processes, Services on 127.77.x.y cluster
IPs). The backend image the fake resolves is this checkout's `kaos-backend`, so the shipped manifests start a real
backend: its data directory on the claim's volume, its port published by the fake's pod network."""
import base64
import sys

import kubernetes.client as k8s
import pytest
import yaml

from kaos_cli.kube_manifests import load
from kaos_cli.state import Config
from tests.support.cli import assert_one_line_failure, kaos
from tests.support.kube import FakeCluster
from tests.support.kube.images import Image, host_path

BACKEND_IMAGE = "registry.example/kaos-backend:under-test"
NAMESPACE = "team-a"
UNRELATED = "not-kaos"


def this_backend(argv):
    """`kaos-backend serve ...` in the backend's container runs this checkout's backend."""
    return [sys.executable, "-m", "kaos_backend", *argv[1:]] if argv[:1] == ["kaos-backend"] else argv


def images(reference: str):
    """The backend's image is this checkout; the Docker engine's sidecar (docker:27-dind, which would need
    privileges) only sleeps; no other image can be pulled."""
    if reference == BACKEND_IMAGE:
        return Image(env={"PATH": host_path(), "HOME": "/root"}, rewrite=this_backend)
    if reference.startswith("docker:"):
        return Image(rewrite=lambda argv: ["sleep", "infinity"])
    return None


@pytest.fixture
def cluster(tmp_path):
    fake = FakeCluster(tmp_path / "kubefake", images=images).start()
    yield fake
    fake.stop()
    assert not fake.errors, f"the fake cluster failed: {fake.errors}"


@pytest.fixture
def project(tmp_path, cluster):
    directory = tmp_path / "project"
    directory.mkdir()
    cluster.write_kubeconfig(tmp_path / "kubeconfig")
    return directory


def cli(project, *args, timeout=180):
    return kaos(project, *args, env={"KUBECONFIG": str(project.parent / "kubeconfig")}, timeout=timeout)


def apis(cluster):
    client = cluster.api_client()
    return (k8s.CoreV1Api(client), k8s.AppsV1Api(client), k8s.BatchV1Api(client),
            k8s.RbacAuthorizationV1Api(client), k8s.NetworkingV1Api(client))


def names(listing):
    return sorted(item.metadata.name for item in listing.items)


def workload_objects(core, apps, batch):
    """What the kubernetes executor would have made in the namespace (labelled managed-by kaos), and objects of
    someone else there."""
    labels = {"app.kubernetes.io/managed-by": "kaos", "kaos.io/workspace": "ws"}
    template = {"metadata": {"labels": labels}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "train", "image": "python:3.11", "command": ["sleep", "60"]}]}}
    batch.create_namespaced_job(NAMESPACE, {"metadata": {"name": "train-1-0", "labels": labels},
                                            "spec": {"backoffLimit": 0, "template": template}})
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "kaos-token-train-1-0", "labels": labels},
                                              "stringData": {"token": "t"}})
    core.create_namespaced_service(NAMESPACE, {"metadata": {"name": "serve-ws-abcdef", "labels": labels},
                                               "spec": {"selector": labels, "ports": [{"port": 8080}]}})
    core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": UNRELATED}, "data": {"a": "b"}})
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": UNRELATED}, "stringData": {"a": "b"}})


def test_deploy_brings_the_backend_up_and_destroy_removes_exactly_what_kaos_made(cluster, project):
    core, apps, batch, rbac, networking = apis(cluster)
    deployed = cli(project, "build", "deploy", "-c", "KUBERNETES", "--namespace", NAMESPACE, "--image",
                   BACKEND_IMAGE, "-y")
    assert deployed.code == 0, deployed

    service = core.read_namespaced_service("kaos-backend", NAMESPACE)
    url = f"http://{service.spec.cluster_ip}:8080/api/"
    assert deployed.out.splitlines() == [f"Info - Endpoint successfully set to {url}",
                                         "Info - Successfully built kaos environment"]
    context = Config(project / ".kaos" / "config")
    fields = context.context("KUBERNETES")
    assert context.active == "KUBERNETES"
    assert (fields["url"], fields["kind"], fields["kube_context"], fields["namespace"], fields["target"]) == \
        (url, "kubernetes", "kubefake", NAMESPACE, "kubernetes")
    secret = core.read_namespaced_secret("kaos-backend", NAMESPACE)
    assert base64.b64decode(secret.data["token"]).decode() == fields["token"]
    backend = apps.read_namespaced_deployment("kaos-backend", NAMESPACE)
    assert backend.spec.template.spec.containers[0].image == BACKEND_IMAGE
    binding = rbac.read_cluster_role_binding(f"kaos-node-reader-{NAMESPACE}")
    assert [(s.name, s.namespace) for s in binding.subjects] == [("kaos-backend", NAMESPACE)]
    assert rbac.read_namespaced_role_binding("kaos-backend", NAMESPACE).subjects[0].namespace == NAMESPACE

    created = cli(project, "workspace", "create", "-n", "mnist")  # through the Service's cluster IP
    assert created.code == 0 and "Successfully set mnist workspace" in created.out, created
    assert "mnist" in cli(project, "workspace", "list").out

    workload_objects(core, apps, batch)
    destroyed = cli(project, "destroy", "-c", "KUBERNETES", "-y")
    assert destroyed.code == 0 and destroyed.out == "Info - Successfully destroyed kaos environment\n", destroyed

    assert names(core.list_namespaced_config_map(NAMESPACE)) == [UNRELATED]
    assert names(core.list_namespaced_secret(NAMESPACE)) == [UNRELATED]
    for listing in (core.list_namespaced_service(NAMESPACE), apps.list_namespaced_deployment(NAMESPACE),
                    batch.list_namespaced_job(NAMESPACE), core.list_namespaced_service_account(NAMESPACE),
                    core.list_namespaced_persistent_volume_claim(NAMESPACE), rbac.list_namespaced_role(NAMESPACE),
                    rbac.list_namespaced_role_binding(NAMESPACE), networking.list_namespaced_ingress(NAMESPACE),
                    networking.list_namespaced_network_policy(NAMESPACE), rbac.list_cluster_role(),
                    rbac.list_cluster_role_binding()):
        assert names(listing) == []
    core.read_namespace(NAMESPACE)  # the namespace stays: it may hold more than kaos
    config = Config(project / ".kaos" / "config")
    assert config.context("KUBERNETES") is None and config.active is None


def test_an_image_the_cluster_cannot_pull_fails_in_one_line_and_destroy_removes_what_was_made(cluster, project):
    cluster.write_kubeconfig(project.parent / "kubeconfig", context="minikube")
    failed = cli(project, "build", "deploy", "-c", "MINIKUBE", "--image", "kaos-backend:nowhere", "-y")
    assert_one_line_failure(failed)
    assert failed.err.startswith("Error - Deployment Unsuccessful while creating kaos MINIKUBE environment: pod "
                                 "kaos-backend-"), failed
    assert "container backend: ImagePullBackOff: " in failed.err and "kaos-backend:nowhere" in failed.err
    assert failed.err.rstrip().endswith("kaos destroy -c MINIKUBE removes what was made")

    core = k8s.CoreV1Api(cluster.api_client())
    assert "kaos-backend" in names(core.list_namespaced_service("kaos"))
    destroyed = cli(project, "destroy", "-c", "MINIKUBE", "-y")
    assert destroyed.code == 0, destroyed
    shipped = {obj["metadata"]["name"] for obj in load("minikube") if obj["kind"] == "Service"}
    assert not shipped & set(names(core.list_namespaced_service("kaos")))
    assert names(core.list_namespaced_persistent_volume_claim("kaos")) == []


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
