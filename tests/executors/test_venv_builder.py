"""The local image builder: virtualenvs keyed by requirements, shared, never half-built."""
import subprocess
import sys
from pathlib import Path

from kaos_backend.executors import venv_builder

BUILDER = str(Path(venv_builder.__file__))


def _build(envs: Path, key: str, *requirements: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, BUILDER, "--envs-dir", str(envs), "--key", key, *map(str, requirements)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_key_depends_on_the_requirements_only():
    assert venv_builder.requirements_key([b"six==1.16.0\n"]) == venv_builder.requirements_key([b"six==1.16.0\n"])
    assert venv_builder.requirements_key([b"six==1.16.0\n"]) != venv_builder.requirements_key([b"six==1.15.0\n"])
    assert venv_builder.requirements_key([b"a", b"b"]) != venv_builder.requirements_key([b"ab"])


def test_two_builds_of_the_same_key_at_once_share_one_environment(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six==1.16.0\n")
    envs = tmp_path / "envs"
    first, second = _build(envs, "k1", requirements), _build(envs, "k1", requirements)
    outputs = [process.communicate(timeout=300)[0] for process in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert sum("Using cached environment k1" in output for output in outputs) == 1, outputs
    assert [path.name for path in envs.iterdir() if path.is_dir()] == ["k1"]
    imported = subprocess.run([str(envs / "k1" / "bin" / "python"), "-c", "import six; print(six.__version__)"],
                              capture_output=True, text=True)
    assert imported.stdout.strip() == "1.16.0"


def test_a_failed_build_leaves_no_environment(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pandas=0.24\n")
    envs = tmp_path / "envs"
    output = _build(envs, "bad", requirements).communicate(timeout=300)[0]
    assert "pandas=0.24" in output
    assert "The command 'pip install -r requirements.txt' returned a non-zero code: 1" in output
    assert not (envs / "bad").exists()
    assert not venv_builder.is_built(envs, "bad")


def test_a_half_built_environment_is_rebuilt(tmp_path):
    envs = tmp_path / "envs"
    half = envs / "k2"
    half.mkdir(parents=True)
    (half / "left-by-a-killed-build").write_text("")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("")
    build = _build(envs, "k2", requirements)
    assert build.wait(timeout=120) == 0, build.stdout.read()
    assert venv_builder.is_built(envs, "k2")
    assert not (half / "left-by-a-killed-build").exists()
    assert (half / "bin" / "python").exists()
