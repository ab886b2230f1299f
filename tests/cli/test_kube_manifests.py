"""kaos_cli/kube_manifests.py: the shipped manifests moved to the chosen namespace and image, the Secrets and
claims a deploy makes, the record of them in the CLI context, and the workload kinds `kaos destroy` sweeps."""
import copy

import pytest

from kaos_cli import kube_manifests as manifests
from kaos_cli.kube_manifests import ObjectRef

# The Role's (apiGroup, resource) -> (apiVersion, kind) of the workloads the kubernetes executor may create.
KINDS_OF = {("", "services"): ("v1", "Service"), ("", "secrets"): ("v1", "Secret"), ("", "pods"): ("v1", "Pod"),
            ("", "configmaps"): ("v1", "ConfigMap"), ("batch", "jobs"): ("batch/v1", "Job"),
            ("apps", "deployments"): ("apps/v1", "Deployment"),
            ("", "persistentvolumeclaims"): ("v1", "PersistentVolumeClaim")}


@pytest.mark.parametrize("target", manifests.TARGETS)
def test_destroy_sweeps_every_kind_the_backend_may_create(target):
    """When the executor is allowed to create a new kind, `kaos destroy` must remove its objects too."""
    role = next(obj for obj in manifests.load(target) if obj["kind"] == "Role")
    creatable = {(group, resource) for rule in role["rules"] if "create" in rule["verbs"]
                 for group in rule["apiGroups"] for resource in rule["resources"]}
    assert creatable, role
    for key in creatable:
        assert key in KINDS_OF, f"{key}: which kind is it? add it to WORKLOAD_KINDS and to this table"
        assert KINDS_OF[key] in manifests.WORKLOAD_KINDS


def test_prepare_moves_every_object_to_the_namespace_and_runs_the_image():
    shipped = manifests.load("kubernetes-postgres")
    original = copy.deepcopy(shipped)
    objects = manifests.prepare(shipped, "team-a", "registry.example/kaos-backend:1", "2026-01-02T03:04:05Z")
    assert shipped == original  # copies
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "team-a", obj["metadata"]["name"]
        for subject in obj.get("subjects") or []:
            assert subject["namespace"] == "team-a"
    assert [obj["metadata"]["name"] for obj in objects if obj["kind"] == "ClusterRoleBinding"] == \
        ["kaos-node-reader-team-a"]
    deployment = manifests.backend_deployment(objects)
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"] == {manifests.DEPLOYED_AT: "2026-01-02T03:04:05Z"}
    images = {container["name"]: container["image"] for container in template["spec"]["containers"]}
    assert images == {"backend": "registry.example/kaos-backend:1", "docker": "docker:27-dind"}
    assert manifests.default_image(objects) == "registry.example/kaos-backend:1"


def test_without_an_image_the_backend_runs_the_one_of_this_kaos_version():
    from kaos_cli.kube_platform import DEFAULT_NAMESPACE
    from kaos_backend import __version__

    objects = manifests.prepare(manifests.load("minikube"), DEFAULT_NAMESPACE, None, "")
    assert manifests.default_image(objects) == f"kaos-backend:{__version__}"


def test_the_postgres_claim_and_secrets_are_the_deploy_s_own():
    with_postgres, without = manifests.load("minikube-postgres"), manifests.load("minikube")
    assert manifests.uses_postgres(with_postgres) and not manifests.uses_postgres(without)
    assert manifests.claims_of(with_postgres) == [ObjectRef("v1", "PersistentVolumeClaim",
                                                            "postgres-data-kaos-postgres-0")]
    assert manifests.claims_of(without) == []
    secret = manifests.secret("kaos-postgres", "team-a", "password", "abc")
    assert secret["data"] == {"password": "YWJj"} and secret["metadata"]["namespace"] == "team-a"
    assert "app.kubernetes.io/managed-by" not in secret["metadata"]["labels"]  # not a workload: no sweep takes it


def test_the_record_of_what_was_made_reads_back_without_repeats():
    refs = [ObjectRef("v1", "Secret", "kaos-backend"), ObjectRef("rbac.authorization.k8s.io/v1", "ClusterRole", "r"),
            ObjectRef("v1", "Secret", "kaos-backend")]
    assert manifests.parse_refs(manifests.dump_refs(refs)) == refs[:2]
    assert not refs[1].namespaced and refs[0].namespaced
    assert manifests.parse_refs("") == manifests.parse_refs("not json") == manifests.parse_refs('[["x"]]') == []
    assert manifests.parse_refs("[" * 100000 + "]" * 100000) == []


@pytest.mark.parametrize("name, valid", [("kaos", True), ("team-a", True), ("a" * 63, True), ("a" * 64, False),
                                         ("Team", False), ("-a", False), ("a_b", False), ("", False)])
def test_namespace_names(name, valid):
    assert (manifests.namespace_problem(name) is None) == valid


def test_the_targets_are_the_clouds_with_or_without_postgres():
    assert manifests.target("KUBERNETES", False) == "kubernetes"
    assert manifests.target("MINIKUBE", True) == "minikube-postgres"
    with pytest.raises(ValueError):
        manifests.load("aws")
