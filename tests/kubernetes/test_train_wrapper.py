"""The train container's wrapper (pod_commands.TRAIN_WRAPPER) run as its container runs it, `/bin/sh -c WRAPPER
kaos-train <upload argv>` in the code's directory: ./train into KAOS_TRAIN_OUTPUT, then the upload, train's exit
code (the upload's when train succeeded and the upload failed), SIGTERM passed on to ./train."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kaos_backend.executors.pod_commands import TRAIN_WRAPPER

UPLOAD = """\
import json, os, sys
out = os.environ["KAOS_TRAIN_OUTPUT"]
record = {"token": os.environ.get("KAOS_ARTIFACT_TOKEN"), "files": sorted(os.listdir(out))}
open(sys.argv[1], "w").write(json.dumps(record))
sys.exit(int(sys.argv[2]))
"""


def start(tmp_path: Path, train: str, upload_code: int = 0) -> subprocess.Popen:
    code = tmp_path / "code"
    code.mkdir(parents=True)
    (code / "train").write_text(train)
    (code / "train").chmod(0o755)
    (tmp_path / "upload.py").write_text(UPLOAD)
    env = {"PATH": os.environ["PATH"], "KAOS_TRAIN_OUTPUT": str(tmp_path / "pfs/out/abcdef"),
           "KAOS_ARTIFACT_TOKEN": "t0ken", "RECORDS": str(tmp_path)}
    upload = [sys.executable, str(tmp_path / "upload.py"), str(tmp_path / "uploaded.json"), str(upload_code)]
    return subprocess.Popen(["/bin/sh", "-c", TRAIN_WRAPPER, "kaos-train", *upload], cwd=code, env=env)


def uploaded(tmp_path: Path):
    import json
    path = tmp_path / "uploaded.json"
    return json.loads(path.read_text()) if path.exists() else None


TRAIN = """\
#!/bin/sh
echo "${KAOS_ARTIFACT_TOKEN:-none}" > "$RECORDS/train-saw-token"
echo model > "$1/model.txt"
exit %d
"""


def test_train_writes_its_output_then_the_upload_sends_it_with_the_token_train_did_not_see(tmp_path):
    wrapper = start(tmp_path, TRAIN % 0)
    assert wrapper.wait(timeout=60) == 0
    assert uploaded(tmp_path) == {"token": "t0ken", "files": ["model.txt"]}
    assert (tmp_path / "train-saw-token").read_text().strip() == "none"


def test_a_failed_training_is_still_uploaded_and_its_exit_code_is_the_container_s(tmp_path):
    wrapper = start(tmp_path, TRAIN % 3, upload_code=0)
    assert wrapper.wait(timeout=60) == 3
    assert uploaded(tmp_path) == {"token": "t0ken", "files": ["model.txt"]}


def test_a_training_whose_upload_fails_fails(tmp_path):
    assert start(tmp_path / "ok", TRAIN % 0, upload_code=5).wait(timeout=60) == 5
    assert start(tmp_path / "failed", TRAIN % 7, upload_code=5).wait(timeout=60) == 7  # train's failure counts


def test_sigterm_reaches_train_and_the_container_ends_as_train_did(tmp_path):
    """A deleted Job's pod gets SIGTERM in its first process, the shell: ./train must get it (not run on until
    the kill after the grace period), and the container end with 128 + 15 as a shell reports it."""
    train = """\
#!/bin/sh
echo $$ > "$RECORDS/train.pid"
exec sleep 600
"""
    wrapper = start(tmp_path, train)
    pid_file = tmp_path / "train.pid"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "./train did not start"
        assert wrapper.poll() is None
        time.sleep(0.05)
    train_pid = int(pid_file.read_text())
    try:
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(timeout=60) == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):
            os.kill(train_pid, 0)
        assert uploaded(tmp_path) == {"token": "t0ken", "files": []}
    finally:  # a wrapper that let ./train run on leaves nothing behind (the pid checked: it may be reused)
        if wrapper.poll() is None:
            wrapper.kill()
        wrapper.wait(timeout=60)
        try:
            if b"sleep" in Path(f"/proc/{train_pid}/cmdline").read_bytes():
                os.kill(train_pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass
