"""The pod agent's invocations (kaos_backend/executors/pod_commands.py): the fetch plan of a training and of an
endpoint at kaos 1.x's /pfs paths, the upload, and the train container's wrapper run for real with sh: train's
exit code wins, a lost hand-back fails a successful training, SIGTERM reaches train."""
import json
import os
import signal
import subprocess
import sys

import pytest

from kaos_backend.executors.base import Artifact, Hyperparameters, WorkloadSpec
from kaos_backend.executors.pod_commands import (TRAIN_WRAPPER, agent_source, fetch_command, fetch_plan,
                                                 train_and_upload_command, upload_command)

JOB = "b" * 32
BASE = "http://kaos-backend.kaos.svc:8080/"
WAIT_LIMIT = 30.0  # a bound against hanging, never a speed claim


def train_spec(hyperparameters=True) -> WorkloadSpec:
    return WorkloadSpec(
        job_id=f"{JOB}-1", kind="train", log=f"jobs/{JOB}",
        source=Artifact(Artifact.BUNDLE, "1" * 64, "tiny", "tiny:12345"),
        data=Artifact(Artifact.BUNDLE, "2" * 64, "features", "features:67890"),
        hyperparameters=Hyperparameters("c0ffe/scale=3.json", {"scale": 3}) if hyperparameters else None,
        output=Artifact.output_of(JOB, "abcdef"))


def serve_spec(model=True) -> WorkloadSpec:
    return WorkloadSpec(job_id="serve-ws-123abc", kind="serve", log="endpoints/serve-ws-123abc",
                        source=Artifact(Artifact.BUNDLE, "3" * 64, "tiny", "tiny:33333"),
                        model=Artifact.output_of(JOB, "abcdef") if model else None)


def test_a_training_fetches_code_data_and_hyperparameters_into_pfs():
    url = f"http://kaos-backend.kaos.svc:8080/internal/artifacts/{JOB}-1"
    assert fetch_plan(train_spec(), BASE) == {
        "artifacts": [{"name": "source", "url": f"{url}/source", "dest": "/pfs/code", "scripts": ["train"]},
                      {"name": "data", "url": f"{url}/data", "dest": "/pfs/data/features:67890", "scripts": []},
                      {"name": "hyperparameters", "url": f"{url}/hyperparameters", "dest": "/pfs/hyper",
                       "scripts": []}],
        "dirs": ["/pfs/out/abcdef"]}


def test_a_training_without_hyperparameters_still_gets_an_empty_hyper_directory():
    """1.x bundles list /pfs/hyper whether or not the job has hyperparameters: its fetch makes it (an empty zip)."""
    plan = fetch_plan(train_spec(hyperparameters=False), BASE)
    assert [(item["name"], item["dest"]) for item in plan["artifacts"]][-1] == ("hyperparameters", "/pfs/hyper")


def test_an_endpoint_fetches_its_code_then_its_model_beside_it():
    url = "http://kaos-backend.kaos.svc:8080/internal/artifacts/serve-ws-123abc"
    assert fetch_plan(serve_spec(), BASE, max_bytes=1024)["artifacts"] == [
        {"name": "source", "url": f"{url}/source", "dest": "/pfs/code", "scripts": ["serve"]},
        {"name": "model", "url": f"{url}/model", "dest": "/pfs/code", "scripts": ["serve"]}]
    assert fetch_plan(serve_spec(), BASE, max_bytes=1024)["max_bytes"] == 1024
    assert [item["name"] for item in fetch_plan(serve_spec(model=False), BASE)["artifacts"]] == ["source"]


def test_the_commands_run_the_agent_inline():
    command = fetch_command(train_spec(), BASE)
    assert command[:4] == ["python3", "-c", agent_source(), "fetch"]
    assert json.loads(command[4]) == fetch_plan(train_spec(), BASE)
    assert upload_command(train_spec(), BASE) == [
        "python3", "-c", agent_source(), "upload", "/pfs/out/abcdef",
        f"http://kaos-backend.kaos.svc:8080/internal/artifacts/{JOB}-1/output"]
    with pytest.raises(ValueError, match="no output"):
        upload_command(serve_spec(), BASE)


def run_wrapper(tmp_path, train: str, upload: str, start_only=False):
    """The train container's command as rendered, with `train` as ./train and `upload` as the agent's code."""
    (tmp_path / "train").write_text("#!/bin/sh\n" + train)
    (tmp_path / "train").chmod(0o755)
    command = train_and_upload_command(train_spec(), BASE)
    assert command[:4] == ["/bin/sh", "-c", TRAIN_WRAPPER, "kaos-train"]
    assert command[4:] == upload_command(train_spec(), BASE)
    out = tmp_path / "out"
    command[4], command[6], command[8] = sys.executable, upload, str(out)  # this python; its output dir here
    env = {"PATH": os.environ["PATH"], "KAOS_TRAIN_OUTPUT": str(out), "KAOS_ARTIFACT_TOKEN": "t0ken"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    if start_only:
        return process
    output, _ = process.communicate(timeout=WAIT_LIMIT)
    return process.returncode, output


UPLOAD_OK = "import sys; print('upload', *sys.argv[1:])"
UPLOAD_FAILS = "import sys; print('kaos: could not upload the output'); sys.exit(1)"


def test_the_output_is_handed_back_after_train_and_train_exit_code_wins(tmp_path):
    code, output = run_wrapper(tmp_path, 'echo trained into "$1"; exit 0\n', UPLOAD_OK)
    assert (code, output.splitlines()) == (0, [
        f"trained into {tmp_path / 'out'}",
        f"upload upload {tmp_path / 'out'} http://kaos-backend.kaos.svc:8080/internal/artifacts/{JOB}-1/output"])


def test_a_failed_training_still_hands_back_its_output_and_keeps_its_code(tmp_path):
    code, output = run_wrapper(tmp_path, "exit 3\n", UPLOAD_FAILS)
    assert code == 3 and "could not upload" in output


def test_a_successful_training_whose_output_is_lost_fails(tmp_path):
    code, output = run_wrapper(tmp_path, "exit 0\n", UPLOAD_FAILS)
    assert code == 1 and output.splitlines() == ["kaos: could not upload the output"]


def test_sigterm_reaches_train_and_the_output_is_still_handed_back(tmp_path):
    process = run_wrapper(tmp_path, "trap 'echo got TERM; exit 7' TERM\necho ready\nwhile :; do sleep 0.1; done\n",
                          UPLOAD_OK, start_only=True)
    assert process.stdout.readline() == "ready\n"  # train's trap is set, and sh's was before it started train
    os.kill(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=WAIT_LIMIT)
    assert process.returncode == 7
    assert output.splitlines()[0] == "got TERM" and output.splitlines()[1].startswith("upload upload ")
