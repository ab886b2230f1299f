"""The fake API server through the official client alone: create, read, list, patch, replace and delete of the
kinds the kubernetes executor uses, object metadata as the real server keeps it, errors as Status objects,
selectors, pagination, the node's capacity and events."""
import kubernetes.client as k8s
import pytest
from kubernetes.client.rest import ApiException

from tests.kube_fake.helpers import NS, apis, container, job, pod, python, wait_for


def test_create_read_patch_replace_delete_keep_metadata_as_the_real_server(kube_cluster):
    api = apis(kube_cluster)
    lease = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="kaos-scheduler"),
                        spec=k8s.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15))
    created = api.coordination.create_namespaced_lease(NS, lease)
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.generation == 1 and meta.namespace == NS
    assert int(meta.resource_version) > 0

    patched = api.coordination.patch_namespaced_lease("kaos-scheduler", NS, {"spec": {"holderIdentity": "b"}})
    assert patched.spec.holder_identity == "b" and patched.spec.lease_duration_seconds == 15
    assert int(patched.metadata.resource_version) > int(meta.resource_version)
    assert patched.metadata.generation == 2 and patched.metadata.uid == meta.uid

    json_patched = api.coordination.patch_namespaced_lease(
        "kaos-scheduler", NS, [{"op": "replace", "path": "/spec/holderIdentity", "value": "c"}])
    assert json_patched.spec.holder_identity == "c"

    patched.spec.holder_identity = "d"  # a replace from a stale read: the optimistic lock refuses it
    with pytest.raises(ApiException) as stale:
        api.coordination.replace_namespaced_lease("kaos-scheduler", NS, patched)
    assert stale.value.status == 409 and "the object has been modified" in stale.value.body
    json_patched.spec.holder_identity = "d"
    assert api.coordination.replace_namespaced_lease("kaos-scheduler", NS, json_patched).spec.holder_identity == "d"

    api.coordination.delete_namespaced_lease("kaos-scheduler", NS)
    with pytest.raises(ApiException) as gone:
        api.coordination.read_namespaced_lease("kaos-scheduler", NS)
    assert gone.value.status == 404
    assert '"reason": "NotFound"' in gone.value.body and 'leases.coordination.k8s.io \\"kaos-scheduler\\" not found' \
        in gone.value.body


def test_services_secrets_and_a_strategic_merge_of_containers(kube_cluster):
    api = apis(kube_cluster)
    service = api.core.create_namespaced_service(NS, k8s.V1Service(
        metadata=k8s.V1ObjectMeta(name="serve-ws-abcdef", labels={"kaos.io/kind": "serve"}),
        spec=k8s.V1ServiceSpec(selector={"app": "x"}, ports=[k8s.V1ServicePort(port=8080, name="http")])))
    assert service.spec.cluster_ip and service.spec.type == "ClusterIP"
    assert service.spec.ports[0].target_port == 8080 and service.spec.ports[0].protocol == "TCP"

    secret = api.core.create_namespaced_secret(NS, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="kaos-token-x"),
                                                                string_data={"token": "s3cret"}))
    assert secret.data == {"token": "czNjcmV0"} and secret.type == "Opaque"

    deployment = api.apps.create_namespaced_deployment(NS, k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="d"),
        spec=k8s.V1DeploymentSpec(replicas=0, selector=k8s.V1LabelSelector(match_labels={"app": "d"}),
                                  template=k8s.V1PodTemplateSpec(
                                      metadata=k8s.V1ObjectMeta(labels={"app": "d"}),
                                      spec=k8s.V1PodSpec(containers=[container("a", ["true"]),
                                                                     container("b", ["true"])])))))
    patched = api.apps.patch_namespaced_deployment("d", NS, {"spec": {"template": {"spec": {"containers": [
        {"name": "b", "image": "other:1"}]}}}})
    assert [(c.name, c.image) for c in patched.spec.template.spec.containers] == [("a", "python:3.11-slim"),
                                                                                  ("b", "other:1")]
    assert patched.metadata.generation == deployment.metadata.generation + 1


def test_errors_are_the_real_servers(kube_cluster):
    api = apis(kube_cluster)
    api.batch.create_namespaced_job(NS, job("twice", container(command=["true"])))
    with pytest.raises(ApiException) as exists:
        api.batch.create_namespaced_job(NS, job("twice", container(command=["true"])))
    assert exists.value.status == 409 and '"reason": "AlreadyExists"' in exists.value.body

    always = job("always", container(command=["true"]))
    always.spec.template.spec.restart_policy = "Always"
    with pytest.raises(ApiException) as invalid:
        api.batch.create_namespaced_job(NS, always)
    assert invalid.value.status == 422 and "spec.template.spec.restartPolicy: Unsupported value" in invalid.value.body

    with pytest.raises(ApiException) as no_namespace:
        api.core.create_namespaced_pod("nowhere", pod("p", container(command=["true"])))
    assert no_namespace.value.status == 404 and 'namespaces \\"nowhere\\" not found' in no_namespace.value.body

    with pytest.raises(ApiException) as bad_selector:
        api.core.list_namespaced_pod(NS, label_selector="a in (b")
    assert bad_selector.value.status == 400


def test_label_and_field_selectors_and_pagination(kube_cluster):
    api = apis(kube_cluster)
    for name, kind in (("a", "train"), ("b", "train"), ("c", "serve")):
        api.core.create_namespaced_config_map(NS, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=name, labels={"kaos.io/kind": kind, "app.kubernetes.io/managed-by": "kaos"}),
            data={"k": name}))

    def names(**query):
        return [item.metadata.name for item in api.core.list_namespaced_config_map(NS, **query).items]
    assert names(label_selector="kaos.io/kind=train") == ["a", "b"]
    assert names(label_selector="kaos.io/kind!=train,app.kubernetes.io/managed-by=kaos") == ["c"]
    assert names(label_selector="kaos.io/kind in (serve, notebook)") == ["c"]
    assert names(label_selector="!kaos.io/kind") == []
    assert names(field_selector="metadata.name=b") == ["b"]

    first = api.core.list_namespaced_config_map(NS, limit=2)
    assert [i.metadata.name for i in first.items] == ["a", "b"] and first.metadata.remaining_item_count == 1
    rest = api.core.list_namespaced_config_map(NS, limit=2, _continue=first.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["c"] and not rest.metadata._continue


def test_the_node_reports_allocatable_capacity_and_the_scheduler_records_events(kube_cluster):
    api = apis(kube_cluster)
    node = api.core.list_node().items[0]
    assert node.status.allocatable["cpu"] == "4" and node.status.allocatable["memory"] == "8Gi"
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)

    api.batch.create_namespaced_job(NS, job("evented", container(command=python("pass"))))
    def by_reason():
        found = {e.reason: e for e in api.core.list_namespaced_event(NS).items}
        return found if {"Scheduled", "SuccessfulCreate", "Started", "Completed"} <= set(found) else None
    events = wait_for(by_reason, "the scheduler's, the job controller's and the kubelet's events")
    assert events["SuccessfulCreate"].involved_object.kind == "Job"
    assert events["SuccessfulCreate"].message.startswith("Created pod: evented-")
    assert events["Scheduled"].source.component == "default-scheduler"
    assert events["Scheduled"].message == f"Successfully assigned {NS}/{events['Scheduled'].involved_object.name} " \
        "to kubefake-node"


def test_delete_collection_by_label(kube_cluster):
    api = apis(kube_cluster)
    for name, platform in (("mine", "p1"), ("theirs", "p2")):
        api.core.create_namespaced_config_map(NS, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=name, labels={"kaos.io/platform": platform})))
    api.core.delete_collection_namespaced_config_map(NS, label_selector="kaos.io/platform=p1")
    assert [c.metadata.name for c in api.core.list_namespaced_config_map(NS).items] == ["theirs"]


def test_a_kubeconfig_for_another_process(kube_cluster, tmp_path):
    import subprocess
    import sys
    path = kube_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    code = ("import kubernetes; kubernetes.config.load_kube_config(); "
            "print(kubernetes.config.list_kube_config_contexts()[1]['context']['namespace'], "
            "[n.metadata.name for n in kubernetes.client.CoreV1Api().list_node().items])")
    result = subprocess.run([sys.executable, "-c", code], env={"KUBECONFIG": path, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.stdout == "kaos ['kubefake-node']\n", result.stderr


def test_a_body_that_is_not_json_is_a_400_status(kube_cluster):
    import http.client
    import json
    connection = http.client.HTTPConnection("127.0.0.1", kube_cluster.http.port, timeout=10)
    connection.request("POST", f"/api/v1/namespaces/{NS}/configmaps", body=b"{not json",
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 400 and body["kind"] == "Status" and body["reason"] == "BadRequest"


def test_the_manifests_kinds_are_recorded_as_sent(kube_cluster):
    """RBAC, NetworkPolicy and Ingress objects (what the backend's manifests hold) are stored and served through
    their typed APIs, cluster-scoped where Kubernetes has them so, and nothing acts on them."""
    client = kube_cluster.api_client()
    rbac, networking = k8s.RbacAuthorizationV1Api(client), k8s.NetworkingV1Api(client)
    rule = k8s.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])
    rbac.create_namespaced_role(NS, k8s.V1Role(metadata=k8s.V1ObjectMeta(name="reader"), rules=[rule]))
    subject = k8s.RbacV1Subject(kind="ServiceAccount", name="kaos-backend", namespace=NS)
    rbac.create_namespaced_role_binding(NS, k8s.V1RoleBinding(
        metadata=k8s.V1ObjectMeta(name="reader"), subjects=[subject],
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="reader")))
    rbac.create_cluster_role(k8s.V1ClusterRole(metadata=k8s.V1ObjectMeta(name="node-reader"), rules=[rule]))
    rbac.create_cluster_role_binding(k8s.V1ClusterRoleBinding(
        metadata=k8s.V1ObjectMeta(name="node-reader"), subjects=[subject],
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="node-reader")))
    networking.create_namespaced_network_policy(NS, k8s.V1NetworkPolicy(
        metadata=k8s.V1ObjectMeta(name="deny"), spec=k8s.V1NetworkPolicySpec(pod_selector=k8s.V1LabelSelector())))
    backend = k8s.V1IngressBackend(service=k8s.V1IngressServiceBackend(
        name="kaos-backend", port=k8s.V1ServiceBackendPort(name="http")))
    networking.create_namespaced_ingress(NS, k8s.V1Ingress(
        metadata=k8s.V1ObjectMeta(name="kaos"), spec=k8s.V1IngressSpec(rules=[k8s.V1IngressRule(
            http=k8s.V1HTTPIngressRuleValue(paths=[k8s.V1HTTPIngressPath(path="/api", path_type="Prefix",
                                                                          backend=backend)]))])))

    assert rbac.read_namespaced_role("reader", NS).rules[0].verbs == ["get"]
    assert rbac.read_namespaced_role_binding("reader", NS).subjects[0].namespace == NS
    assert rbac.read_cluster_role_binding("node-reader").metadata.namespace is None
    assert [role.metadata.name for role in rbac.list_cluster_role().items] == ["node-reader"]
    assert networking.read_namespaced_network_policy("deny", NS).spec.pod_selector.match_labels is None
    ingress = networking.read_namespaced_ingress("kaos", NS)
    assert ingress.spec.rules[0].http.paths[0].backend.service.port.name == "http"
    assert not (ingress.status.load_balancer and ingress.status.load_balancer.ingress)  # no controller gives one

    rbac.delete_cluster_role("node-reader")
    networking.delete_namespaced_ingress("kaos", NS)
    assert rbac.list_cluster_role().items == [] and networking.list_namespaced_ingress(NS).items == []
