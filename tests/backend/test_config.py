from pathlib import Path

import pytest

from kaos_backend.config import Config, ConfigError


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = Config.from_env({})
    assert config.data_dir == tmp_path / ".kaos-backend"
    assert config.database_url == f"sqlite:///{tmp_path}/.kaos-backend/kaos.db"
    assert config.executor == "local"
    assert config.token is None
    assert (config.max_cpu, config.max_memory, config.max_gpu) == (None, None, None)
    assert config.max_upload_mb == 1024 and config.max_upload_bytes == 1024 * 1024 * 1024
    assert config.max_bundle_mb == 4096
    assert config.base_image == ""  # the Docker executor then looks for kaos's own base image
    assert config.namespace == "kaos"
    assert config.registry == "" and config.service_host == ""


def test_environment(tmp_path):
    config = Config.from_env({
        "KAOS_DATA_DIR": str(tmp_path / "d"), "KAOS_DATABASE_URL": "postgresql+psycopg://u:p@db:5432/kaos",
        "KAOS_EXECUTOR": "Docker", "KAOS_TOKEN": "secret", "KAOS_MAX_CPU": "3.5", "KAOS_MAX_MEMORY": "7.5",
        "KAOS_MAX_GPU": "0", "KAOS_MAX_UPLOAD_MB": "10", "KAOS_MAX_BUNDLE_MB": "20",
        "KAOS_BASE_IMAGE": "python:3.12", "KAOS_NAMESPACE": "ml", "KAOS_REGISTRY": "reg:5000",
        "KAOS_SERVICE_HOST": "kaos.example.com"})
    assert config.data_dir == tmp_path / "d"
    assert config.database_url == "postgresql+psycopg://u:p@db:5432/kaos"
    assert config.executor == "docker"
    assert (config.token, config.max_cpu, config.max_memory, config.max_gpu) == ("secret", 3.5, 7.5, 0)
    assert (config.max_upload_mb, config.max_bundle_mb) == (10, 20)
    assert (config.base_image, config.namespace, config.registry, config.service_host) == \
        ("python:3.12", "ml", "reg:5000", "kaos.example.com")


def test_overrides_win_and_move_the_default_database(tmp_path):
    config = Config.from_env({"KAOS_DATA_DIR": "/elsewhere", "KAOS_MAX_CPU": "2"}, data_dir=tmp_path, max_cpu=None,
                             token="t")
    assert config.data_dir == tmp_path
    assert config.database_url == f"sqlite:///{tmp_path}/kaos.db"
    assert config.max_cpu is None and config.token == "t"
    assert Config.from_env({}, data_dir="rel").data_dir == Path.cwd() / "rel"


def test_empty_values_are_unset():
    config = Config.from_env({"KAOS_MAX_GPU": "", "KAOS_TOKEN": " ", "KAOS_EXECUTOR": ""}, data_dir="/x")
    assert config.max_gpu is None and config.token is None and config.executor == "local"


def test_frozen():
    config = Config.from_env({}, data_dir="/x")
    with pytest.raises(Exception):
        config.token = "changed"


@pytest.mark.parametrize("env, message", [
    ({"KAOS_MAX_CPU": "lots"}, "KAOS_MAX_CPU must be a number, not 'lots'"),
    ({"KAOS_MAX_CPU": "-1"}, "KAOS_MAX_CPU must be at least 0"),
    ({"KAOS_MAX_MEMORY": "nan"}, "KAOS_MAX_MEMORY must be a finite number"),
    ({"KAOS_MAX_GPU": "1.5"}, "KAOS_MAX_GPU must be a whole number, not '1.5'"),
    ({"KAOS_MAX_UPLOAD_MB": "0"}, "KAOS_MAX_UPLOAD_MB must be at least 1"),
    ({"KAOS_MAX_BUNDLE_MB": "x"}, "KAOS_MAX_BUNDLE_MB must be a whole number"),
    ({"KAOS_EXECUTOR": "slurm"}, "KAOS_EXECUTOR must be one of local, docker, kubernetes, not 'slurm'"),
    ({"KAOS_DATABASE_URL": "kaos.db"}, "KAOS_DATABASE_URL 'kaos.db' is not a database URL"),
])
def test_invalid(env, message):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env, data_dir="/x")
    assert message in str(caught.value)


def test_unknown_override():
    with pytest.raises(TypeError, match="unknown Config fields: nope"):
        Config.from_env({}, nope=1)
