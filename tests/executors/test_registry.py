"""Executors are registered by kind and the configuration chooses one (kaos_backend/executors/registry.py)."""
import pytest

from kaos_backend.config import Config
from kaos_backend.executors import registry
from kaos_backend.executors.local import LocalExecutor


def _config(tmp_path, executor):
    return Config.from_env({}, data_dir=tmp_path / "data", executor=executor)


def test_the_local_executor_is_registered_and_chosen_by_the_configuration(tmp_path):
    assert "local" in registry.kinds()
    executor = registry.make_executor(_config(tmp_path, "local"))
    assert isinstance(executor, LocalExecutor) and executor.kind == "local"
    assert executor.get_state() == {}


def test_a_registered_kind_is_what_the_configuration_names(tmp_path, monkeypatch):
    class Stub(LocalExecutor):
        kind = "stub"
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))  # the registration ends with the test
    monkeypatch.setattr(registry, "_classes", dict(registry._classes))
    registry.register("stub", Stub, lambda config: Stub(config.data_dir))
    config = type("StubConfig", (), {"executor": "stub", "data_dir": tmp_path / "data"})()
    assert type(registry.make_executor(config)) is Stub
    assert "stub" in registry.kinds() and registry.executor_class("stub") is Stub


def test_the_docker_executor_is_registered_and_reads_logs_without_an_engine(tmp_path, monkeypatch):
    """The API process reads and adds to logs through an idle executor of the configured kind: for docker that
    needs neither the engine nor the docker SDK (imported on first use by what runs workloads)."""
    from kaos_backend.executors import docker_client
    from kaos_backend.executors.docker import DockerExecutor
    monkeypatch.setattr(docker_client, "engine", lambda: pytest.fail("the engine was asked"))
    assert "docker" in registry.kinds() and registry.executor_class("docker") is DockerExecutor
    log = registry.log_of(_config(tmp_path, "docker"), "jobs/0123abcd")
    log.append_log("kaos: a record")
    assert [line.split("] ", 1)[1] for line in log.logs()] == ["kaos: a record"]
    assert log.get_state() == {} and log.poll() is None


def test_the_kubernetes_executor_is_registered_and_reads_logs_without_a_cluster(tmp_path):
    """As for docker: an API worker reads and adds to logs through an idle kubernetes executor, which needs no
    cluster (and does not even import the kubernetes client for it)."""
    import subprocess
    import sys
    code = """
import sys
from pathlib import Path
from kaos_backend.config import Config
from kaos_backend.executors import registry
from kaos_backend.executors.kubernetes import KubernetesExecutor
assert registry.executor_class("kubernetes") is KubernetesExecutor
config = Config.from_env({}, data_dir=Path(sys.argv[1]), executor="kubernetes", kubeconfig="/nonexistent")
log = registry.log_of(config, "jobs/0123abcd")
log.append_log("kaos: a record")
assert [line.split("] ", 1)[1] for line in log.logs()] == ["kaos: a record"]
assert log.get_state() == {} and log.poll() is None and log.reason() is None
log.stop()
assert "kubernetes" not in sys.modules, "the client was imported"
"""
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_kind_that_is_not_registered_is_refused_in_words(tmp_path):
    config = type("NomadConfig", (), {"executor": "nomad", "data_dir": tmp_path / "data"})()
    with pytest.raises(registry.ExecutorNotAvailable, match="the nomad executor is not available in this version"):
        registry.make_executor(config)
