"""Who builds the kubernetes executor's images (config `image_builder`, KAOS_IMAGE_BUILDER):

    docker       the docker executor's build (a Docker engine the backend reaches: DOCKER_HOST) of the bundle's
                 Dockerfile, tagged `<registry>/build-train-<ws>:<hash5>` (kubernetes_spec.image_reference) and,
                 with a registry (KAOS_REGISTRY), pushed there by the build's watcher with the engine's
                 credentials; without one (minikube's docker-env) the image stays on the engine pods use. An
                 image counts as built when the engine has it from this platform and, with a registry, the
                 registry has it too.
    local-venv   for tests against the fake cluster (tests/support/kube), whose kubelet runs pods as processes of
                 this machine: the local executor's virtualenv of the bundle's requirements, named
                 `kaos-venv:<key>`; the fake's image resolver runs a pod of that image with `<data>/envs/<key>/bin`
                 first on PATH (tests/support/kube_platform.py). Not for a real cluster.

Kaniko (building inside the cluster without a privileged engine) is a later option (infrastructure/kubernetes).
"""
from pathlib import Path

from kaos_backend.executors.base import Executor, WorkloadSpec

VENV_PREFIX = "kaos-venv"


class DockerImages:
    def __init__(self, config, settings):
        self.config = config
        self.settings = settings

    def builder(self) -> Executor:
        """An idle docker executor that builds (and pushes, with a registry)."""
        from kaos_backend.executors.docker import DockerExecutor
        executor = DockerExecutor.from_config(self.config)
        executor.push = bool(self.settings.registry)
        return executor

    def spec_for(self, spec: WorkloadSpec) -> WorkloadSpec:
        """The build spec as the docker executor gets it: its image named with the registry."""
        from dataclasses import replace

        from kaos_backend.executors.kubernetes_spec import image_reference
        return replace(spec, image_name=image_reference(self.settings, spec.image_name)) if spec.image_name else spec

    def image_for(self, spec: WorkloadSpec) -> str:
        return self.builder().image_for(self.spec_for(spec))

    def is_image_ready(self, image: str) -> bool:
        if not self.builder().is_image_ready(image):
            return False
        if not self.settings.registry:
            return True
        from kaos_backend.executors import docker_client
        try:
            docker_client.engine().images.get_registry_data(image)
        except docker_client.errors().APIError:
            return False  # not pushed (or the registry is unreachable): built again, from the layer cache
        return True


class LocalVenvImages:
    def __init__(self, config, settings):
        self.config = config

    def builder(self) -> Executor:
        from kaos_backend.executors.local import LocalExecutor
        return LocalExecutor.from_config(self.config)

    def spec_for(self, spec: WorkloadSpec) -> WorkloadSpec:
        return spec

    def image_for(self, spec: WorkloadSpec) -> str:
        return venv_reference(self.builder().image_for(spec))

    def is_image_ready(self, image: str) -> bool:
        from kaos_backend.layout import DataLayout
        return self.builder().is_image_ready(str(DataLayout(self.config.data_dir).envs_dir / image.rpartition(":")[2]))


def venv_reference(environment: str) -> str:
    """The image reference of a local virtualenv (`<data>/envs/<key>`): `kaos-venv:<key>`."""
    return f"{VENV_PREFIX}:{Path(environment).name}"


def image_builder(config, settings):
    """The builder `config.image_builder` names."""
    return LocalVenvImages(config, settings) if config.image_builder == "local-venv" else \
        DockerImages(config, settings)
