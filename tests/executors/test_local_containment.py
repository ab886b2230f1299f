"""What the local executor adds to the contract on a machine like CI's (root, cgroups writable): limits enforced
by a cgroup of each workload's own, the out-of-memory reason, the unprivileged workload user that cannot read the
backend's database, token or environment, and one line in the log where limits cannot be enforced."""
import io
import os
import sys
import time
import zipfile
from pathlib import Path

import pytest

from kaos_backend.executors import containment, sandbox
from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_backend.executors.hints import script_hints
from kaos_backend.executors.local import LocalExecutor
from kaos_backend.executors.local_process import ProcessSpec
from kaos_backend.storage import BlobStore

JOB = "1" * 32
ROOT = os.geteuid() == 0
CGROUPS = containment.platform_parents("probe") is not None

needs_root = pytest.mark.skipif(not ROOT, reason="workloads change user only when the backend runs as root")
needs_cgroups = pytest.mark.skipif(not CGROUPS, reason="no writable cgroup hierarchy on this machine")


def _spec(data: Path, command, **extra) -> ProcessSpec:
    job_dir = data / "jobs" / JOB
    work = job_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(job_id=JOB, kind="train", command=command, workdir=str(work), log=f"jobs/{JOB}",
                        preamble=["processing job x", "beginning to run user code"], **extra)


def _run(executor, spec, timeout=60.0) -> int:
    executor.launch(spec)
    deadline = time.monotonic() + timeout
    while (code := executor.poll()) is None:
        assert time.monotonic() < deadline, "the workload did not end"
        time.sleep(0.05)
    return code


def _texts(executor):
    return [line.split("] ", 1)[1] for line in executor.logs()]


@needs_cgroups
def test_a_training_over_its_memory_limit_is_out_of_memory(tmp_path):
    executor = LocalExecutor(tmp_path / "data")
    script = "print('epoch 1', flush=True); hog = bytearray(300 * 1024 * 1024); print('survived')"
    code = _run(executor, _spec(tmp_path / "data", [sys.executable, "-c", script], memory="50Mi"))
    assert code != 0
    assert executor.reason() == "out of memory (limit 50Mi)"
    texts = _texts(executor)
    assert "survived" not in texts
    assert texts[-1] == "kaos: the training ended: out of memory (limit 50Mi)"
    assert any("memory 50Mi" in text for text in texts if text.startswith("kaos: the training is contained"))


@needs_cgroups
def test_the_cpu_and_memory_limits_are_the_cgroups(tmp_path):
    executor = LocalExecutor(tmp_path / "data")
    spec = _spec(tmp_path / "data", [sys.executable, "-c", "import time; time.sleep(60)"], memory="256Mi", cpu=0.5)
    executor.launch(spec)
    try:
        group = containment.group_from_state(executor.get_state()["group"])
        assert group.kind.startswith("cgroup")
        if group.kind == "cgroup-v1":
            memory = Path(group.paths["memory"], "memory.limit_in_bytes").read_text().strip()
            quota = Path(group.paths["cpu"], "cpu.cfs_quota_us").read_text().strip()
            assert (memory, quota) == (str(256 * 2 ** 20), "50000")
        else:
            assert Path(group.path, "memory.max").read_text().strip() == str(256 * 2 ** 20)
            assert Path(group.path, "cpu.max").read_text().split() == ["50000", "100000"]
        deadline = time.monotonic() + 20
        while len(group.pids()) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        executor.stop(now=True)
    assert group.pids() == []


def test_without_cgroups_the_log_says_the_limits_are_not_enforced(tmp_path):
    executor = LocalExecutor(tmp_path / "data", containment_mode="subreaper")
    code = _run(executor, _spec(tmp_path / "data", [sys.executable, "-c", "pass"], memory="50Mi", cpu=1))
    assert code == 0
    contained = [text for text in _texts(executor) if text.startswith("kaos: the training is contained")]
    assert contained == ["kaos: the training is contained by its runner as child subreaper (kaos is configured "
                         "without cgroups: KAOS_CONTAINMENT=subreaper): memory 50Mi, cpu 1 not enforced"]


@needs_root
def test_the_workload_runs_as_the_workload_user_and_cannot_read_the_backends_secrets(tmp_path, monkeypatch):
    """Input 13 of the issue: a training that reads /proc/<backend pid>/environ and opens kaos.db fails."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "kaos.db").write_text("the database")
    (data / "token").write_text("the token")
    monkeypatch.setenv("KAOS_TOKEN", "the-backend-token")
    out = data / "jobs" / JOB / "out"
    out.mkdir(parents=True)
    script = f"""
import os
print('uid', os.getuid())
for path in ({str(data / 'kaos.db')!r}, {str(data / 'token')!r}, '/proc/{os.getpid()}/environ'):
    try:
        open(path, 'rb').read()
        print('READ', path)
    except OSError as error:
        print('refused', path, type(error).__name__)
open({str(out / 'model.txt')!r}, 'w').write('a model')
open('scratch.txt', 'w').write('the work directory is writable')
"""
    executor = LocalExecutor(data)
    code = _run(executor, _spec(data, [sys.executable, "-c", script], outputs=[str(out)]))
    texts = _texts(executor)
    assert code == 0, texts
    uid = int(next(text for text in texts if text.startswith("uid ")).split()[1])
    assert sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SLOTS
    assert uid < 2 ** 31  # gunicorn, for one, masks ids to 31 bits
    assert not [text for text in texts if text.startswith("READ")], texts
    assert len([text for text in texts if text.startswith("refused")]) == 3
    assert (out / "model.txt").read_text() == "a model"
    assert f"kaos: running as uid {uid}, a user of its own" in texts


@needs_root
def test_inputs_are_read_only(tmp_path):
    data = tmp_path / "data"
    inputs = data / "extracted" / "abc" / "features"
    inputs.mkdir(parents=True)
    (inputs / "train.csv").write_text("1,2\n")
    script = f"""
print(open({str(inputs / 'train.csv')!r}).read().strip())
try:
    open({str(inputs / 'new.csv')!r}, 'w')
    print('WROTE')
except OSError as error:
    print('refused', type(error).__name__)
"""
    executor = LocalExecutor(data)
    assert _run(executor, _spec(data, [sys.executable, "-c", script], inputs=[str(inputs)])) == 0
    texts = _texts(executor)
    assert "1,2" in texts and "WROTE" not in texts and any(text.startswith("refused") for text in texts)


def test_a_script_with_windows_line_endings_gets_a_hint(tmp_path):
    script = tmp_path / "train"
    script.write_bytes(b"#!/usr/bin/env python3\r\nprint('hi')\r\n")
    hints = script_hints(script)
    assert len(hints) == 1 and "Windows line endings" in hints[0] and "dos2unix train" in hints[0]
    script.write_bytes(b"#!/usr/bin/env python3\nprint('hi')\n")
    assert script_hints(script) == []


def _start_sleeper(data: Path, job: str, script: str, **extra) -> LocalExecutor:
    job_dir = data / "jobs" / job
    work = job_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    executor = LocalExecutor(data)
    executor.launch(ProcessSpec(job_id=job, kind="serve", command=[sys.executable, "-c", script],
                                workdir=str(work), log=f"jobs/{job}", **extra))
    return executor


@needs_root
def test_workloads_cannot_reach_each_other(tmp_path):
    """Two workloads have users of their own: one can neither signal the other, nor read its environment, nor
    reach its files through /proc; their /tmp are their own."""
    data = tmp_path / "data"
    victim = _start_sleeper(data, "victim", "import os, time\nopen('/tmp/victim-was-here', 'w').write('x')\n"
                                            "print('pid', os.getpid(), flush=True)\ntime.sleep(120)")
    try:
        pid = wait_line(victim, "pid ").split()[1]
        script = f"""
import os
for what, act in (('signal', lambda: os.kill({pid}, 0)), ('environ', lambda: open('/proc/{pid}/environ').read()),
                  ('root', lambda: os.listdir('/proc/{pid}/root/')), ('cwd', lambda: os.listdir('/proc/{pid}/cwd'))):
    try:
        act()
        print('REACHED', what)
    except OSError as error:
        print('refused', what, type(error).__name__)
print('tmp', os.path.exists('/tmp/victim-was-here'))
"""
        attacker = LocalExecutor(data)
        code = _run(attacker, _spec(data, [sys.executable, "-c", script]))
        texts = _texts(attacker)
        assert code == 0, texts
        assert not [text for text in texts if text.startswith("REACHED")], texts
        assert len([text for text in texts if text.startswith("refused")]) == 4
        assert "tmp False" in texts
        assert not Path("/tmp/victim-was-here").exists()
    finally:
        victim.stop(now=True)


def wait_line(executor, prefix: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = [text for text in _texts(executor) if text.startswith(prefix)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, _texts(executor)
        time.sleep(0.05)


def test_the_backends_environment_stays_with_the_backend(tmp_path, monkeypatch):
    """Only locale, time zone and the package index and proxy settings pass from the backend to a workload."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "backend-secret")
    monkeypatch.setenv("PIP_INDEX_URL", "https://pypi.example/simple")
    executor = LocalExecutor(tmp_path / "data")
    script = "import os; print(sorted(k for k in os.environ if 'SECRET' in k)); print(os.environ['PIP_INDEX_URL'])"
    assert _run(executor, _spec(tmp_path / "data", [sys.executable, "-c", script])) == 0
    assert "[]" in _texts(executor) and "https://pypi.example/simple" in _texts(executor)


@needs_root
def test_a_build_writes_its_own_environment_and_nothing_else(tmp_path):
    """A build runs pip, which runs code of the requirements (here a local package's setup.py): it may write its
    own environment, never another one."""
    data = tmp_path / "data"
    other = data / "envs" / "0123456789abcdef"
    (other / "bin").mkdir(parents=True)
    (other / ".kaos-complete").write_text("another environment")
    setup_py = f"""
import glob, os
from setuptools import setup
for target in ({str(other)!r}, {str(other / 'bin')!r}):
    try:
        open(os.path.join(target, 'planted'), 'w').write('x')
        print('PLANTED', target)
    except OSError as error:
        print('refused', target, type(error).__name__)
setup(name='pkg', version='1', py_modules=[])
"""
    executor = LocalExecutor(data)
    spec = _build_spec(data, setup_py)
    image = executor.build(spec)
    deadline = time.monotonic() + 300
    while executor.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    log = "\n".join(executor.logs())
    assert not list(other.rglob("planted")), log
    assert executor.poll() == 0, log
    assert executor.is_image_ready(image)
    changed = _build_spec(data, "from setuptools import setup\nsetup(name='pkg', version='2')\n")
    assert executor.image_for(changed) != image  # requirements naming local files: their content is in the key


@needs_root
def test_a_build_whose_envs_directory_is_a_link_elsewhere_builds(tmp_path):
    """An operator who puts the images (<data>/envs) on another disk links them there: a sandboxed build bound the
    linked path back into its view, where the link led nowhere ("PermissionError: [Errno 13] Permission denied:
    '<data>/envs'", found when a test shared one backend's envs with another's). The real path is bound now."""
    data, elsewhere = tmp_path / "data", tmp_path / "another-disk" / "envs"
    elsewhere.mkdir(parents=True)
    data.mkdir()
    (data / "envs").symlink_to(elsewhere, target_is_directory=True)
    executor = LocalExecutor(data)
    image = executor.build(_build_spec(data, "from setuptools import setup\nsetup(name='pkg', version='1')\n"))
    deadline = time.monotonic() + 300
    while executor.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert executor.poll() == 0, "\n".join(executor.logs())
    assert executor.is_image_ready(image) and Path(image).parent == elsewhere


def _build_spec(data: Path, setup_py: str) -> WorkloadSpec:
    """A build of a bundle whose requirements.txt names its own package (`./pkg`, with `setup_py`), stored."""
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("bundle/Dockerfile", "FROM python:3.11-slim\n")
        archive.writestr("bundle/model/requirements.txt", "./pkg\n")
        archive.writestr("bundle/model/pkg/setup.py", setup_py)
    bundle.seek(0)
    digest = BlobStore(data / "blobs").put_stream(bundle).digest
    return WorkloadSpec(job_id=JOB, kind="build", log=f"jobs/{JOB}",
                        source=Artifact(Artifact.BUNDLE, digest, "bundle"), requirements=["requirements.txt"])


def test_the_log_of_a_workload_is_bounded(tmp_path):
    executor = LocalExecutor(tmp_path / "data", max_log_bytes=2000)
    script = "for i in range(200):\n    print('x' * 99, flush=True)\nprint('the end')"
    assert _run(executor, _spec(tmp_path / "data", [sys.executable, "-c", script])) == 0
    texts = _texts(executor)
    assert sum(len(text) for text in texts if text.startswith("x")) < 2000
    dropped = [text for text in texts if "of output were not logged" in text]
    assert len(dropped) == 1 and "the log of a workload holds at most 2000 bytes" in dropped[0]
    assert texts[-1] == "kaos: the training ended: exit code 0"
    assert executor.reason() == "exit code 0"


def test_the_processes_left_running_are_counted_and_the_first_named(tmp_path):
    executor = LocalExecutor(tmp_path / "data")
    script = ("import subprocess\nfor i in range(15):\n"
              "    subprocess.Popen(['sleep', str(600 + i)], start_new_session=True)")
    assert _run(executor, _spec(tmp_path / "data", [sys.executable, "-c", script])) == 0
    stopped = [text for text in _texts(executor) if text.startswith("kaos: stopped ")]
    assert len(stopped) == 1 and stopped[0].startswith("kaos: stopped 15 processes that the training left running: ")
    assert stopped[0].endswith("; and 5 more") and stopped[0].count("sleep 6") == 10
