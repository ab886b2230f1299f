"""A notebook's Kubernetes objects (kaos_backend/executors/kubernetes_notebook.py), serialised as the client sends
them and validated offline against the official schemas (object_checks.py): a Deployment of one pod (fetch, then
`jupyter lab` under the notebook's base URL, ready on its API, the inputs read-only, the work directory on its
claim or an emptyDir), its Service on 8888, its work directory's claim, its Secret with the Jupyter token; for
notebooks with and without data, a model, resources, and the longest names."""
import json

import pytest

from kaos_backend.executors import kubernetes_names, kubernetes_notebook, kubernetes_spec, pod_commands
from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_model.ids import notebook_name
from tests.kubernetes.object_checks import assert_valid
from tests.kubernetes.test_spec_builders import JOB_ID, LONGEST_WORKSPACE, PLATFORM, containers, deployed_pod, env_of

SETTINGS = kubernetes_spec.KubeSettings(platform=PLATFORM, notebook_storage="10Gi")
WITHOUT_CLAIM = kubernetes_spec.KubeSettings(platform=PLATFORM)


def notebook_spec(workspace="mnist", user="tester", data=1, model=False, cpu=None, memory="512Mi", gpu=0):
    name = notebook_name(workspace, user)
    attached = [Artifact(Artifact.BUNDLE, f"{index:x}" * 64, "features", f"features:{index:x}9fd9")
                for index in range(data)]
    return WorkloadSpec(
        job_id=name, kind="notebook", log=f"notebooks/{name}", source=Artifact(Artifact.BUNDLE, "d" * 64, "base"),
        attached=attached, model=Artifact.output_of(JOB_ID, "abcdef") if model else None,
        image=f"build-notebook-{workspace}:1909d", env={"KAOS_NOTEBOOK": name, "KAOS_WORKSPACE": workspace},
        secrets={"JUPYTER_TOKEN": "jupyter-secret"}, base_url=f"/{name}/", idle_timeout=28800,
        cpu=cpu, memory=memory, gpu=gpu)


NOTEBOOK_SPECS = {
    "default": notebook_spec(),
    "no data": notebook_spec(data=0),
    "data and a model": notebook_spec(data=2, model=True),
    "resources and gpus": notebook_spec(cpu=2, memory="4Gi", gpu=1),
    "longest names": notebook_spec(workspace=LONGEST_WORKSPACE, user="a_very_Long.user-name-of-someone"),
}


@pytest.mark.parametrize("case", sorted(NOTEBOOK_SPECS))
def test_a_notebook_is_a_deployment_of_jupyter_ready_on_its_api_and_a_service_on_8888(case):
    spec = NOTEBOOK_SPECS[case]
    deployment = assert_valid(kubernetes_notebook.notebook_deployment(spec, SETTINGS))
    name = kubernetes_names.workload_name(spec)
    owner = kubernetes_spec.owner_reference("Deployment", name, "0b5f-uid")
    service = assert_valid(kubernetes_notebook.notebook_service(spec, SETTINGS, owner))
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == name
    labels = deployment["metadata"]["labels"]
    assert labels["kaos.io/kind"] == "notebook" and labels["kaos.io/job"] == kubernetes_names.label_value(spec.job_id)
    assert labels["kaos.io/workspace"] == kubernetes_names.label_value(spec.env["KAOS_WORKSPACE"])
    fetch, jupyter = deployed_pod(deployment, service, "notebook")
    pod = deployment["spec"]["template"]["spec"]
    assert jupyter["command"][:2] == ["jupyter", "lab"] and jupyter["workingDir"] == "/opt/program"
    assert f"--ServerApp.base_url={spec.base_url}" in jupyter["command"]
    assert "--ServerApp.root_dir=/opt/program" in jupyter["command"]
    assert jupyter["command"][-2:] == ["--ServerApp.ip=0.0.0.0", "--ServerApp.port=$(PORT)"]
    assert "jupyter-secret" not in json.dumps(deployment), "the token is never in the Deployment"
    assert jupyter["ports"] == [{"name": "http", "containerPort": 8888, "protocol": "TCP"}]
    assert jupyter["readinessProbe"]["httpGet"] == {"path": f"{spec.base_url}api", "port": "http"}
    env = env_of(jupyter)
    secret_name = kubernetes_names.token_secret_name(spec)
    assert env["JUPYTER_TOKEN"] == {"secretKeyRef": {"name": secret_name, "key": "JUPYTER_TOKEN"}}
    assert env["PORT"] == "8888" and env["KAOS_NOTEBOOK_DATA"] == "/pfs/data" and env["DATA_REPO"] == "data"
    assert ("KAOS_NOTEBOOK_MODEL" in env) == (spec.model is not None)
    assert "KAOS_ARTIFACT_TOKEN" not in env and "KAOS_ARTIFACT_TOKEN" in env_of(fetch)
    mounts = {mount["mountPath"]: mount for mount in jupyter["volumeMounts"]}
    assert mounts["/pfs"]["readOnly"] is True and not mounts["/opt/program"].get("readOnly")
    assert {mount["mountPath"] for mount in fetch["volumeMounts"]} == {"/pfs", "/opt/program"}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["work"]["persistentVolumeClaim"] == {"claimName": kubernetes_notebook.work_claim_name(spec)}
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8888, "protocol": "TCP", "targetPort": "http"}]
    assert service["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": "0b5f-uid"}]


@pytest.mark.parametrize("case", sorted(NOTEBOOK_SPECS))
def test_the_fetch_puts_each_input_where_the_docker_variant_mounts_it_and_seeds_the_work_directory(case):
    spec = NOTEBOOK_SPECS[case]
    plan = pod_commands.fetch_plan(spec, "http://kaos-backend.kaos.svc:8081")
    where = {item["name"]: (item["dest"], item.get("keep", False)) for item in plan["artifacts"]}
    expected = {f"data-{index}": (f"/pfs/data/{artifact.name}", False) for index, artifact in enumerate(spec.attached)}
    expected["source"] = ("/opt/program", True)
    if spec.model is not None:
        expected["model"] = ("/pfs/out/abcdef", False)
    assert where == expected
    assert all(item["url"].startswith(f"http://kaos-backend.kaos.svc:8081/internal/artifacts/{spec.job_id}/")
               for item in plan["artifacts"]) and plan["dirs"] == []


def test_cpu_and_memory_are_requests_and_limits_and_gpus_a_limit():
    deployment = assert_valid(kubernetes_notebook.notebook_deployment(NOTEBOOK_SPECS["resources and gpus"],
                                                                      SETTINGS))
    pod = deployment["spec"]["template"]["spec"]
    jupyter, fetch = containers(pod)["notebook"], containers(pod)["fetch"]
    assert jupyter["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                                    "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}}
    assert "nvidia.com/gpu" not in fetch["resources"]["limits"]


def test_the_work_directory_is_a_claim_that_nothing_owns_or_an_empty_dir_without_storage():
    spec = NOTEBOOK_SPECS["longest names"]
    claim = assert_valid(kubernetes_notebook.work_claim(spec, SETTINGS))
    assert claim["metadata"]["name"] == kubernetes_notebook.work_claim_name(spec)
    assert claim["metadata"]["name"] != kubernetes_names.workload_name(spec)  # its own name, cut to fit
    assert kubernetes_notebook.work_claim_name(NOTEBOOK_SPECS["default"]) == "notebook-mnist-tester-work"
    assert "ownerReferences" not in claim["metadata"], "a kill or a cull deletes the Deployment, not the work"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    assert claim["metadata"]["labels"]["kaos.io/kind"] == "notebook"

    deployment = assert_valid(kubernetes_notebook.notebook_deployment(spec, WITHOUT_CLAIM))
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["work"] == {"name": "work", "emptyDir": {}}
    with pytest.raises(ValueError, match="emptyDir"):
        kubernetes_notebook.work_claim(spec, WITHOUT_CLAIM)


def test_the_secret_holds_the_jupyter_token_beside_the_artifact_token():
    spec = NOTEBOOK_SPECS["default"]
    owner = kubernetes_spec.owner_reference("Deployment", spec.job_id, "7d1e-uid")
    secret = assert_valid(kubernetes_spec.token_secret(spec, SETTINGS, "artifact-secret", owner))
    assert secret["stringData"] == {"token": "artifact-secret", "JUPYTER_TOKEN": "jupyter-secret"}
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Deployment"


@pytest.mark.parametrize("change, message", [
    ({"kind": "serve"}, "not a notebook workload"),
    ({"image": None}, "names no image"),
    ({"base_url": None}, "base URL"),
])
def test_a_spec_that_is_no_notebook_or_lacks_an_image_or_a_base_url_is_refused(change, message):
    spec = WorkloadSpec(**{**NOTEBOOK_SPECS["default"].__dict__, **change})
    with pytest.raises(ValueError, match=message):
        kubernetes_notebook.notebook_deployment(spec, SETTINGS)
