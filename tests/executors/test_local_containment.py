"""What the local executor adds to the contract on a machine like CI's (root, cgroups writable): limits enforced
by a cgroup of each workload's own, the out-of-memory reason, the unprivileged workload user that cannot read the
backend's database, token or environment, and one line in the log where limits cannot be enforced."""
import os
import sys
import time
from pathlib import Path

import pytest

from kaos_backend.control.hints import script_hints
from kaos_backend.executors import containment, sandbox
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.executors.local import LocalExecutor

JOB = "1" * 32
ROOT = os.geteuid() == 0
CGROUPS = containment.platform_parents("probe") is not None

needs_root = pytest.mark.skipif(not ROOT, reason="workloads change user only when the backend runs as root")
needs_cgroups = pytest.mark.skipif(not CGROUPS, reason="no writable cgroup hierarchy on this machine")


def _spec(data: Path, command, **extra) -> WorkloadSpec:
    job_dir = data / "jobs" / JOB
    work = job_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    return WorkloadSpec(job_id=JOB, kind="train", command=command, workdir=str(work), log_path=str(job_dir / "log"),
                        preamble=["processing job x", "beginning to run user code"], **extra)


def _run(executor, spec, timeout=60.0) -> int:
    executor.start(spec)
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
    executor.start(spec)
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
    assert contained == ["kaos: the training is contained by its runner as child subreaper (no cgroups available "
                         "to kaos on this machine): memory 50Mi, cpu 1 not enforced"]


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
    identity, _ = sandbox.workload_identity()
    assert f"uid {identity.uid}" in texts and identity.uid != 0
    assert not [text for text in texts if text.startswith("READ")], texts
    assert len([text for text in texts if text.startswith("refused")]) == 3
    assert (out / "model.txt").read_text() == "a model"
    assert any(text.startswith(f"kaos: running as the user {identity.user}") for text in texts)


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
