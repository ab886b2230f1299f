"""A second start of the same local workload finds the first (executors/local_claim.py): what makes a scheduler
killed between starting a workload and recording it harmless, as the next one starts it again. Real runners
and processes; a second LocalExecutor plays the next scheduler."""
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_backend.executors.local import LocalExecutor
from kaos_backend.executors.local_claim import ClaimBusy, StartClaim, write_pid
from kaos_backend.executors.local_process import is_running, start_ticks
from kaos_backend.layout import DataLayout
from kaos_backend.storage import BlobStore

ROOT = Path(__file__).resolve().parents[2]
HEX6 = "abcdef"
WAIT_LIMIT = 60.0  # a bound against hanging, never a speed claim
# Runs until the test lets it go, and counts its runs in its output.
HELD = """\
import os, sys, time
out = os.environ["KAOS_TRAIN_OUTPUT"]
os.makedirs(out + "/model", exist_ok=True)
with open(out + "/model/runs", "a") as runs:
    runs.write("run\\n")
print("training started", flush=True)
deadline = time.monotonic() + 120
while not os.path.exists({go!r}) and time.monotonic() < deadline:
    time.sleep(0.05)
"""
SERVE = """\
import http.server, os
class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Ping).serve_forever()
"""


def _bundle(store: BlobStore, files: dict, root: str) -> Artifact:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    buffer.seek(0)
    digest = store.put_stream(buffer).digest
    return Artifact(Artifact.BUNDLE, digest, root, f"{root}:{digest[:5]}")


def _source(store: BlobStore, script: str, name: str) -> Artifact:
    return _bundle(store, {"bundle/Dockerfile": "FROM python:3.11-slim\n", "bundle/model/requirements.txt": "",
                           f"bundle/model/{name}": "#!/usr/bin/env python3\n" + script}, "bundle")


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


def _held(go: Path) -> str:
    """A training that runs until the file `go` exists (the `shared_dir` fixture's, which it can see)."""
    return HELD.format(go=str(go))


def _training(data: Path, script: str) -> WorkloadSpec:
    store = BlobStore(data / "blobs")
    job = uuid.uuid4().hex
    return WorkloadSpec(job_id=f"{job}-0", kind="train", log=f"jobs/{job}", preamble=[f"processing job {job}"],
                        source=_source(store, script, "train"),
                        data=_bundle(store, {"features/training/a.csv": "1\n"}, "features"),
                        output=Artifact.output_of(job, HEX6))


def _output(data: Path, spec: WorkloadSpec) -> Path:
    return DataLayout(data).output_dir(*spec.output.output_parts())


def _wait(predicate):
    deadline = time.monotonic() + WAIT_LIMIT
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def _texts(executor):
    return [line.split("] ", 1)[1] for line in executor.logs()]


def test_a_second_start_of_a_running_training_finds_the_first(data, shared_dir):
    spec = _training(data, _held(shared_dir / "go"))
    first = LocalExecutor(data)
    first.start(spec)
    _wait(lambda: "training started" in _texts(first))
    second = LocalExecutor(data)  # the next scheduler, which never saw the first start recorded
    assert second.start(spec) is None
    assert second.get_state() == first.get_state()
    assert second.poll() is None
    (shared_dir / "go").write_text("")
    _wait(lambda: second.poll() is not None)
    assert second.poll() == 0 and first.poll() == 0
    assert (_output(data, spec) / "model" / "runs").read_text() == "run\n"
    texts = _texts(second)
    assert texts.count("training started") == 1 and texts.count(f"processing job {spec.log[5:]}") == 1, texts


def test_a_second_start_of_a_training_that_ended_takes_its_end_and_runs_nothing(data):
    spec = _training(data, "import sys\nprint('ran', flush=True)\nsys.exit(3)\n")
    first = LocalExecutor(data)
    first.start(spec)
    _wait(lambda: first.poll() is not None)
    assert first.poll() == 3
    second = LocalExecutor(data)
    second.start(spec)
    assert second.get_state() == first.get_state() and second.poll() == 3
    assert second.reason() == first.reason()
    assert _texts(second).count("ran") == 1


def test_an_endpoint_is_found_while_it_runs_and_started_anew_once_it_ended(data):
    store = BlobStore(data / "blobs")
    name = f"serve-ws-{uuid.uuid4().hex[:6]}"
    spec = WorkloadSpec(job_id=name, kind="serve", log=f"endpoints/{name}", preamble=[f"processing job {name}"],
                        source=_source(store, SERVE, "serve"))
    first = LocalExecutor(data)
    address = first.start(spec)
    again = LocalExecutor(data)
    assert again.start(spec) == address and again.get_state() == first.get_state()
    first.stop()
    assert first.poll() is not None
    restarted = LocalExecutor(data)
    try:
        assert restarted.start(spec).port is not None  # a restart is a new workload under the same name
        assert restarted.get_state()["pid"] != first.get_state()["pid"] and restarted.poll() is None
    finally:
        restarted.stop()


def test_a_start_killed_once_its_runner_was_spawned_is_found_by_the_next(data, shared_dir):
    """The scheduler's process dies right after the start, before anything records it."""
    spec = _training(data, _held(shared_dir / "go"))
    script = ("import os, pickle, signal, sys\nfrom kaos_backend.executors.local import LocalExecutor\n"
              "spec = pickle.loads(bytes.fromhex(sys.argv[2]))\nLocalExecutor(sys.argv[1]).start(spec)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    import pickle
    killed = subprocess.run([sys.executable, "-c", script, str(data), pickle.dumps(spec).hex()], cwd=ROOT,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL
    found = LocalExecutor(data)
    found.start(spec)
    state = found.get_state()
    assert is_running(state["pid"], state["start_ticks"]) and found.poll() is None
    (shared_dir / "go").write_text("")
    _wait(lambda: found.poll() is not None)
    assert found.poll() == 0
    assert (_output(data, spec) / "model" / "runs").read_text() == "run\n"


def test_a_claim_held_by_a_runner_not_yet_recorded_waits_for_its_pid(tmp_path):
    """The start was killed between spawning the runner and writing its pid: the runner writes it itself."""
    holder = StartClaim(tmp_path, "job-0", restartable=False).__enter__()
    holder.record_state({"log": "jobs/job", "group": {"kind": "subreaper"}})
    later = threading.Timer(0.3, lambda: write_pid(holder.pid_path, os.getpid(), start_ticks(os.getpid())))
    later.start()
    try:
        with StartClaim(tmp_path, "job-0", restartable=False) as claim:
            assert claim.adopted == ({"log": "jobs/job", "group": {"kind": "subreaper"}}, os.getpid(),
                                     start_ticks(os.getpid()))
            assert claim.fd is None
        with pytest.raises(ClaimBusy):
            holder.pid_path.unlink()
            with StartClaim(tmp_path, "job-0", restartable=False, wait=0.2):
                pass
    finally:
        later.join()
        holder.__exit__()
    with StartClaim(tmp_path, "job-0", restartable=False) as free:  # state but no runner: nothing ran
        assert free.adopted is None and free.fd is not None and not free.state_path.exists()
