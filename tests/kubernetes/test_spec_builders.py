"""The Kubernetes objects kaos makes of a workload spec (kaos_backend/executors/kubernetes_spec.py), each one
serialised as the client sends it and validated offline against the official schemas (tests/kubernetes/
object_checks.py), for a matrix of specs: trainings with and without data, hyperparameters, resources and GPUs,
endpoints with and without a model, kaos's longest ids."""
import json

import pytest
from kubernetes import client

from kaos_backend.config import Config, ConfigError, platform_id
from kaos_backend.executors import kubernetes_names, kubernetes_pod, kubernetes_spec, pod_commands
from kaos_backend.executors.base import Artifact, Hyperparameters, WorkloadSpec
from kaos_model.ids import WORKSPACE_NAME_MAX
from tests.kubernetes.object_checks import as_dict, assert_valid, problems

PLATFORM = "0123456789ab"
JOB_ID = "4f6c0d2e9b8a47f1a3c5e7d9b1f3a5c7"
SETTINGS = kubernetes_spec.KubeSettings(platform=PLATFORM)
LONGEST_WORKSPACE = ("w-" * WORKSPACE_NAME_MAX)[:WORKSPACE_NAME_MAX - 1] + "w"  # 40 characters


def train_spec(job_id=JOB_ID, index=0, workspace="mnist", data="bundle", hyper=False, cpu=None, memory=None, gpu=0,
               image="build-train-mnist:1909d"):
    data_artifact = (Artifact(Artifact.BUNDLE, "e" * 64, "features", "features:9fd9d") if data == "bundle"
                     else Artifact(Artifact.INGESTED, "f" * 64, name="manifest:1a2b3"))
    return WorkloadSpec(
        job_id=f"{job_id}-{index}", kind="train", log=f"jobs/{job_id}", preamble=[f"processing job {job_id}"],
        source=Artifact(Artifact.BUNDLE, "d" * 64, "mnist", "mnist:1909d"), data=data_artifact,
        hyperparameters=Hyperparameters("3a1b2/lr=0.1.json", {"lr": 0.1}) if hyper else None,
        output=Artifact.output_of(job_id, "abcdef"), image=image,
        env={"KAOS_JOB_ID": job_id, "KAOS_WORKSPACE": workspace, "KAOS_MODEL_ID": "1909d_9fd9d:abcdef"},
        cpu=cpu, memory=memory, gpu=gpu)


def serve_spec(workspace="mnist", model=True, cpu=None, memory=None, gpu=0):
    name = f"serve-{workspace}-1a2b3c"
    return WorkloadSpec(
        job_id=name, kind="serve", log=f"endpoints/{name}", source=Artifact(Artifact.BUNDLE, "d" * 64, "mnist"),
        model=Artifact.output_of(JOB_ID, "abcdef") if model else None, image=f"build-serve-{workspace}:1909d",
        env={"KAOS_ENDPOINT": name, "KAOS_MODEL_ID": "1909d_9fd9d:abcdef" if model else ""},
        cpu=cpu, memory=memory, gpu=gpu)


TRAIN_SPECS = {
    "bare": train_spec(),
    "ingested data, hyperparameters": train_spec(data="ingested", hyper=True),
    "cpu and memory": train_spec(cpu=1.5, memory="512Mi"),
    "gpus": train_spec(cpu=0.25, memory="2Gi", gpu=2),
    "longest ids": train_spec(index=99999, workspace=LONGEST_WORKSPACE, hyper=True, cpu=0.01, memory="6Mi", gpu=1),
}
SERVE_SPECS = {
    "with model": serve_spec(),
    "without model": serve_spec(model=False),
    "resources": serve_spec(cpu=2, memory="1.5Gi", gpu=1),
    "longest workspace": serve_spec(workspace=LONGEST_WORKSPACE),
}


def containers(pod):
    return {container["name"]: container for container in pod["initContainers"] + pod["containers"]}


def env_of(container):
    return {variable["name"]: variable.get("value", variable.get("valueFrom")) for variable in container["env"]}


def selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


def deployed_pod(deployment, service, main: str):
    """The fetch and `main` containers of a Deployment of one replica whose pods its selector and its Service's
    select, restarted always, without the API's token."""
    assert deployment["spec"]["replicas"] == 1
    template = deployment["spec"]["template"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    assert selects(service["spec"]["selector"], template["metadata"]["labels"])
    pod = template["spec"]
    assert pod["restartPolicy"] == "Always" and pod["automountServiceAccountToken"] is False
    assert [c["name"] for c in pod["initContainers"]] == ["fetch"] and [c["name"] for c in pod["containers"]] == [main]
    return containers(pod)["fetch"], containers(pod)[main]


@pytest.mark.parametrize("case", sorted(TRAIN_SPECS))
def test_a_training_partition_is_a_valid_job_of_one_pod_fetch_then_train(case):
    spec = TRAIN_SPECS[case]
    job = assert_valid(kubernetes_spec.training_job(spec, SETTINGS))
    assert job["metadata"]["name"] == f"train-{spec.job_id}" and job["metadata"]["namespace"] == "kaos"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert "activeDeadlineSeconds" not in job["spec"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert [c["name"] for c in pod["initContainers"]] == ["fetch"] and [c["name"] for c in pod["containers"]] == \
        ["train"]
    assert pod["volumes"] == [{"name": "pfs", "emptyDir": {}}]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    fetch, train = containers(pod)["fetch"], containers(pod)["train"]
    for container in (fetch, train):
        assert container["volumeMounts"] == [{"name": "pfs", "mountPath": "/pfs"}]
        assert container["image"] == spec.image and container["imagePullPolicy"] == "IfNotPresent"
        assert env_of(container)["KAOS_ARTIFACT_TOKEN"] == {
            "secretKeyRef": {"name": kubernetes_names.token_secret_name(spec), "key": "token"}}
    assert train["workingDir"] == "/pfs/code"
    assert train["command"][:4] == ["/bin/sh", "-c", pod_commands.TRAIN_WRAPPER, "kaos-train"]
    assert "upload" in train["command"][4:] and "fetch" in fetch["command"]
    artifacts = f"{SETTINGS.base_url}/internal/artifacts/{spec.job_id}/"
    assert json.loads(fetch["command"][-1])["artifacts"][0]["url"] == artifacts + "source"
    assert train["command"][-1] == artifacts + "output"
    env = env_of(train)
    data_at = "/pfs/data/features:9fd9d" if spec.data.kind == Artifact.BUNDLE else "/pfs/data/manifest:1a2b3"
    assert {key: env[key] for key in ("KAOS_TRAIN_DATA", "KAOS_TRAIN_HYPER", "KAOS_TRAIN_OUTPUT")} == {
        "KAOS_TRAIN_DATA": data_at, "KAOS_TRAIN_HYPER": "/pfs/hyper", "KAOS_TRAIN_OUTPUT": "/pfs/out/abcdef"}
    assert env["PYTHONUNBUFFERED"] == "1" and all(env[key] == value for key, value in spec.env.items())


@pytest.mark.parametrize("case", sorted(TRAIN_SPECS) + sorted(SERVE_SPECS))
def test_every_object_and_pod_carries_kaos_s_labels_and_the_watch_s_selector_finds_it(case):
    spec = TRAIN_SPECS.get(case) or SERVE_SPECS[case]
    objects = ([kubernetes_spec.training_job(spec, SETTINGS)] if spec.kind == "train" else
               [kubernetes_spec.endpoint_deployment(spec, SETTINGS), kubernetes_spec.endpoint_service(spec, SETTINGS)])
    owner = kubernetes_spec.owner_reference("Job" if spec.kind == "train" else "Deployment", "n", "u-1")
    objects.append(kubernetes_spec.token_secret(spec, SETTINGS, "t0ken", owner))
    job = JOB_ID if spec.kind == "train" else spec.job_id
    expected = {"app.kubernetes.io/managed-by": "kaos", "kaos.io/platform": PLATFORM, "kaos.io/kind": spec.kind,
                "kaos.io/workspace": LONGEST_WORKSPACE if "longest" in case else "mnist", "kaos.io/job": job,
                "kaos.io/workload": spec.job_id}
    selector = dict(pair.split("=") for pair in kubernetes_names.platform_selector(PLATFORM).split(","))
    for obj in map(assert_valid, objects):
        assert obj["metadata"]["labels"] == expected
        assert selects(selector, obj["metadata"]["labels"])
        template = (obj.get("spec") or {}).get("template")
        if template:
            assert template["metadata"]["labels"] == expected


def test_cpu_and_memory_are_requests_and_limits_alike_and_gpus_a_limit_of_nvidia_com_gpu():
    pod = as_dict(kubernetes_spec.training_job(TRAIN_SPECS["gpus"], SETTINGS))["spec"]["template"]["spec"]
    train, fetch = containers(pod)["train"], containers(pod)["fetch"]
    assert train["resources"] == {"requests": {"cpu": "250m", "memory": "2Gi"},
                                  "limits": {"cpu": "250m", "memory": "2Gi", "nvidia.com/gpu": "2"}}
    assert fetch["resources"] == {"requests": {"cpu": "250m", "memory": "2Gi"},
                                  "limits": {"cpu": "250m", "memory": "2Gi"}}  # the pod asks for no more
    bare = as_dict(kubernetes_spec.training_job(TRAIN_SPECS["bare"], SETTINGS))["spec"]["template"]["spec"]
    assert all("resources" not in container for container in containers(bare).values())
    assert [kubernetes_pod.cpu_quantity(cores) for cores in (1.5, 2, 0.01, 0.0001, 0.5)] == \
        ["1500m", "2", "10m", "1m", "500m"]
    gpu_only = kubernetes_pod.resource_requirements(None, None, 1)
    assert as_dict(gpu_only) == {"limits": {"nvidia.com/gpu": "1"}}


def test_a_deadline_is_the_job_s_active_deadline_only_when_given():
    job = assert_valid(kubernetes_spec.training_job(TRAIN_SPECS["bare"], SETTINGS, active_deadline_seconds=600))
    assert job["spec"]["activeDeadlineSeconds"] == 600


@pytest.mark.parametrize("case", sorted(SERVE_SPECS))
def test_an_endpoint_is_a_deployment_of_one_ready_on_ping_and_a_service_on_8080(case):
    spec = SERVE_SPECS[case]
    deployment = assert_valid(kubernetes_spec.endpoint_deployment(spec, SETTINGS))
    owner = kubernetes_spec.owner_reference("Deployment", spec.job_id, "0b5f-uid")
    service = assert_valid(kubernetes_spec.endpoint_service(spec, SETTINGS, owner))
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == spec.job_id
    fetch, serve = deployed_pod(deployment, service, "serve")
    assert serve["command"] == ["./serve"] and serve["workingDir"] == "/pfs/code"
    assert serve["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert serve["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    env = env_of(serve)
    assert env["PORT"] == "8080" and env["HOST"] == "0.0.0.0" and env["KAOS_ENDPOINT"] == spec.job_id
    assert "KAOS_ARTIFACT_TOKEN" not in env and "KAOS_ARTIFACT_TOKEN" in env_of(fetch)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http"}]
    assert service["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.job_id, "uid": "0b5f-uid"}]


def test_the_token_secret_is_owned_by_its_job_and_is_what_the_pod_s_environment_names():
    spec = TRAIN_SPECS["longest ids"]
    job = as_dict(kubernetes_spec.training_job(spec, SETTINGS))
    owner = kubernetes_spec.owner_reference("Job", job["metadata"]["name"], "7d1e-uid")
    secret = assert_valid(kubernetes_spec.token_secret(spec, SETTINGS, "s3cret", owner))
    assert secret["metadata"]["name"] == f"kaos-token-train-{spec.job_id}"
    assert secret["type"] == "Opaque" and secret["stringData"] == {"token": "s3cret"}
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "uid": "7d1e-uid"}]
    fetch = containers(job["spec"]["template"]["spec"])["fetch"]
    assert env_of(fetch)["KAOS_ARTIFACT_TOKEN"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


def test_names_too_long_or_not_dns_labels_are_cut_and_hashed_valid_and_distinct():
    odd = ["notebook-ws-Jane_Doe", "notebook-ws-jane-doe", "notebook-ws-jane--doe", "train-" + "a" * 80 + "-1",
           "train-" + "a" * 80 + "-2", "serve-" + "b" * 57, "serve-" + "b" * 58, "notebook-ws-" + "_" * 70]
    names = [kubernetes_names.object_name(name) for name in odd]
    assert len(set(names)) == len(odd)
    for name in names:
        assert len(name) <= 63 and kubernetes_names.object_name(name) == name  # valid: kept as it is
    assert names[1] == "notebook-ws-jane-doe" and names[5] == "serve-" + "b" * 57  # valid ones unchanged
    assert names[0].startswith("notebook-ws-jane-doe-") and names[0] != names[1]
    assert len(names[3]) == 63 and names[3][:57] == ("train-" + "a" * 80)[:57]
    values = [kubernetes_names.label_value(value) for value in
              ("Jane_Doe.x", "-lead", "a" * 64, "a" * 63, "ü", "", "x" * 70 + "_")]
    assert values[0] == "Jane_Doe.x" and values[3] == "a" * 63 and values[5] == ""
    assert len(set(values)) == len(values) and all(len(value) <= 63 for value in values)
    spec = train_spec(job_id="J" * 70)  # an id kaos does not make today: still a valid, distinct name
    job = assert_valid(kubernetes_spec.training_job(spec, SETTINGS))
    secret = assert_valid(kubernetes_spec.token_secret(spec, SETTINGS, "t", kubernetes_spec.owner_reference(
        "Job", job["metadata"]["name"], "u")))
    assert job["metadata"]["name"] != as_dict(kubernetes_spec.training_job(train_spec(job_id="j" * 70),
                                                                         SETTINGS))["metadata"]["name"]
    assert secret["metadata"]["name"].startswith("kaos-token-train-jjj")


def test_the_checks_have_teeth():
    """An unknown field, a wrong type, a name that is no DNS label, a label value too long: each one caught."""
    job = as_dict(kubernetes_spec.training_job(TRAIN_SPECS["bare"], SETTINGS))
    job["spec"]["backofflimit"] = 0
    assert any("backofflimit" in problem for problem in problems(job))
    job = as_dict(kubernetes_spec.training_job(TRAIN_SPECS["bare"], SETTINGS))
    job["spec"]["backoffLimit"] = "none"
    assert problems(job)
    job = as_dict(kubernetes_spec.training_job(TRAIN_SPECS["bare"], SETTINGS))
    job["metadata"]["name"] = "train-Job_1"
    assert problems(job) == ["Job name 'train-Job_1' is not valid"]
    job = as_dict(kubernetes_spec.training_job(TRAIN_SPECS["bare"], SETTINGS))
    job["spec"]["template"]["metadata"]["labels"]["kaos.io/job"] = "x" * 64
    assert len(problems(job)) == 1


def test_with_a_registry_images_are_pulled_always_and_without_one_used_by_name():
    with_registry = kubernetes_spec.KubeSettings(platform=PLATFORM, registry="registry.example.com:5000/kaos/")
    assert kubernetes_spec.image_reference(with_registry, "build-train-mnist:1909d") == \
        "registry.example.com:5000/kaos/build-train-mnist:1909d"
    assert kubernetes_spec.image_reference(SETTINGS, "build-train-mnist:1909d") == "build-train-mnist:1909d"
    assert with_registry.pull_policy == "Always" and SETTINGS.pull_policy == "IfNotPresent"
    never = kubernetes_spec.KubeSettings(platform=PLATFORM, image_pull_policy="Never")
    pod = as_dict(kubernetes_spec.endpoint_deployment(serve_spec(), never))["spec"]["template"]["spec"]
    assert {container["imagePullPolicy"] for container in containers(pod).values()} == {"Never"}


def test_settings_come_from_the_backend_s_config_and_only_proxies_of_its_environment_reach_workloads(tmp_path):
    config = Config.from_env({"KAOS_NAMESPACE": "ml", "KAOS_REGISTRY": "reg:5000",
                              "KAOS_INTERNAL_URL": "http://kaos-internal.ml.svc:9000/",
                              "KAOS_IMAGE_PULL_POLICY": "IfNotPresent"}, data_dir=tmp_path)
    environ = {"HTTPS_PROXY": "http://proxy:3128", "PIP_INDEX_URL": "http://pypi.local/simple",
               "KAOS_TOKEN": "secret", "AWS_SECRET_ACCESS_KEY": "secret"}
    settings = kubernetes_spec.KubeSettings.from_config(config, environ)
    assert (settings.namespace, settings.platform, settings.registry, settings.pull_policy) == \
        ("ml", platform_id(tmp_path), "reg:5000", "IfNotPresent")
    assert settings.base_url == "http://kaos-internal.ml.svc:9000"
    default = kubernetes_spec.KubeSettings.from_config(Config.from_env({"KAOS_NAMESPACE": "ml"}, data_dir=tmp_path),
                                                       {})
    assert default.base_url == "http://kaos-backend.ml.svc:8081" and default.pull_policy == "IfNotPresent"
    job = as_dict(kubernetes_spec.training_job(train_spec(), settings))
    assert job["metadata"]["namespace"] == "ml"
    env = env_of(containers(job["spec"]["template"]["spec"])["train"])
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["PIP_INDEX_URL"] == "http://pypi.local/simple"
    assert "KAOS_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env


@pytest.mark.parametrize("env, message", [
    ({"KAOS_IMAGE_PULL_POLICY": "sometimes"}, "KAOS_IMAGE_PULL_POLICY must be one of Always, IfNotPresent, Never"),
    ({"KAOS_INTERNAL_URL": "kaos-backend:8081"}, "KAOS_INTERNAL_URL must be an http:// or https:// URL"),
])
def test_the_kubernetes_settings_are_checked_when_the_backend_reads_them(env, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env, data_dir="/x")


def test_a_spec_of_another_kind_or_without_an_image_is_refused():
    with pytest.raises(ValueError, match="not a train workload"):
        kubernetes_spec.training_job(serve_spec(), SETTINGS)
    with pytest.raises(ValueError, match="not a serve workload"):
        kubernetes_spec.endpoint_deployment(train_spec(), SETTINGS)
    with pytest.raises(ValueError, match="names no image"):
        kubernetes_spec.training_job(train_spec(image=None), SETTINGS)
    with pytest.raises(ValueError, match="no build workload"):
        kubernetes_names.workload_name(WorkloadSpec(job_id=JOB_ID, kind="build", log=f"jobs/{JOB_ID}"))
    assert isinstance(kubernetes_spec.owner_reference("Job", "n", "u"), client.V1OwnerReference)
