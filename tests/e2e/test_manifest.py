"""Data manifests end to end: `kaos train deploy -m data.mf` on a LOCAL platform downloads the manifest's files
(an INGESTING job) from an HTTP server on 127.0.0.1, then trains on them; a URL that cannot be fetched fails the
ingestion, says which URL in its log, and trains nothing."""
import functools
import hashlib
import http.server
import json
import re
import threading
import time

import pytest

from tests.support.backend import free_port
from tests.support.platform import LocalPlatform, tiny_train_bundle, wait_for, wait_terminal

CSV = {"training/x.csv": "1,2,3\n", "training/y.csv": "4,5,6\n7,8,9\n", "validation/v.csv": "0,0,0\n"}
CHECKING_TRAIN = (
    "import os, sys\n"
    "data = os.environ['KAOS_TRAIN_DATA']\n"
    "for name in ('x.csv', 'y.csv'):\n"
    "    path = os.path.join(data, 'training', name)\n"
    "    if not os.path.isfile(path):\n"
    "        sys.exit(f'missing {path}')\n"
    "    print('found', name, len(open(path).read().splitlines()), 'rows', flush=True)\n"
    "os.makedirs(sys.argv[1] + '/model')\n")


class _Handler(http.server.SimpleHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self):
        if self.path.startswith("/slow/"):  # starts a transfer that never ends (until the tests are over)
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"0" * 100)
            self.wfile.flush()
            self.release.wait(300)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def csv_server(tmp_path_factory):
    """The CSV files served on 127.0.0.1 from a thread of the test process; its base URL."""
    root = tmp_path_factory.mktemp("served")
    for name, text in CSV.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Handler.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    deployed = LocalPlatform(tmp_path_factory.mktemp("manifest-project"))
    deployed.deploy()
    yield deployed
    deployed.destroy()


def write_manifest(path, entries):
    path.write_text("".join(json.dumps({"url": url, "path": target}) + "\n" for url, target in entries))
    return path


def newest(platform, workspace, kind):
    return wait_for(lambda: (platform.jobs(workspace)[kind] or [None])[0], what=f"a {kind} job in {workspace}")


def test_manifest_is_ingested_then_trained_on(platform, csv_server, tmp_path):
    platform.workspace("manifest")
    manifest = write_manifest(tmp_path / "data.mf", [(f"{csv_server}/{name}", name) for name in CSV])
    manifest_hash = hashlib.sha256(manifest.read_bytes()).hexdigest()[:5]
    code = tiny_train_bundle(tmp_path / "code", CHECKING_TRAIN)

    deployed = platform.kaos("train", "deploy", "-s", str(code), "-m", str(manifest))
    assert deployed.code == 0, deployed
    assert f"Info - Submitting data manifest bundle: {manifest}" in deployed.out
    assert f"✔ Setting data manifest bundle: /manifest:{manifest_hash}" in deployed.out

    ingestion = wait_terminal(platform, "manifest", newest(platform, "manifest", "ingesting")["job_id"])
    assert ingestion["state"] == "JOB_SUCCESS", platform.kaos("train", "logs", "-j", ingestion["job_id"]).out
    training = wait_terminal(platform, "manifest", newest(platform, "manifest", "training")["job_id"])
    assert training["state"] == "JOB_SUCCESS", platform.kaos("train", "logs", "-j", training["job_id"]).out

    listed = platform.kaos("train", "list")
    assert listed.code == 0, listed
    assert "INGESTING" in listed.out and ingestion["job_id"] in listed.out
    files = len(CSV)
    assert f"Progress: {files} / {files} (100%)" in listed.out, listed.out
    assert "TRAINING" in listed.out and training["job_id"] in listed.out

    logs = platform.kaos("train", "logs", "-j", ingestion["job_id"])
    assert logs.code == 0, logs
    assert f"processing job {ingestion['job_id']}" in logs.out
    for name, text in CSV.items():
        assert f"downloaded {name} ({len(text)} bytes)" in logs.out
    train_logs = platform.kaos("train", "logs", "-j", training["job_id"]).out
    assert "found x.csv 1 rows" in train_logs and "found y.csv 2 rows" in train_logs

    info = platform.kaos("train", "info", "-j", training["job_id"])
    assert info.code == 0, info
    assert re.search(rf"\b[0-9a-f]{{5}}_{manifest_hash}:[0-9a-f]{{6}}\b", info.out), info.out  # the model id
    assert f"/manifest:{manifest_hash}" in info.out

    again = platform.kaos("train", "deploy", "-m", str(manifest))  # the same manifest: nothing new to do
    assert again.code == 0, again
    time.sleep(2)
    jobs = platform.jobs("manifest")
    assert len(jobs["ingesting"]) == 1 and len(jobs["training"]) == 1


def test_an_unreachable_url_fails_the_ingestion_and_trains_nothing(platform, csv_server, tmp_path):
    platform.workspace("unreachable")
    gone = f"http://127.0.0.1:{free_port()}/training/gone.csv"  # nothing listens there
    manifest = write_manifest(tmp_path / "data.mf", [(f"{csv_server}/training/x.csv", "training/x.csv"),
                                                      (gone, "training/gone.csv")])
    code = tiny_train_bundle(tmp_path / "code", CHECKING_TRAIN)
    assert platform.kaos("train", "deploy", "-s", str(code), "-m", str(manifest)).code == 0

    ingestion = wait_terminal(platform, "unreachable", newest(platform, "unreachable", "ingesting")["job_id"])
    assert ingestion["state"] == "JOB_FAILURE"
    assert gone in (ingestion["reason"] or "")
    build = wait_terminal(platform, "unreachable", newest(platform, "unreachable", "building")["job_id"])
    assert build["state"] == "JOB_SUCCESS"

    logs = platform.kaos("train", "logs", "-j", ingestion["job_id"])
    assert logs.code == 0, logs
    assert f"cannot download {gone}" in logs.out
    listed = platform.kaos("train", "list")
    assert "INGESTING" in listed.out and "JOB_FAILURE" in listed.out and ingestion["job_id"] in listed.out
    time.sleep(2)  # many scheduler ticks to (wrongly) start a training
    assert platform.jobs("unreachable")["training"] == []


def test_kill_a_running_ingestion(platform, csv_server, tmp_path):
    platform.workspace("kill-ingestion")
    manifest = write_manifest(tmp_path / "data.mf", [(f"{csv_server}/slow/a.csv", "training/a.csv")])
    assert platform.kaos("train", "deploy", "-m", str(manifest)).code == 0
    job_id = newest(platform, "kill-ingestion", "ingesting")["job_id"]
    wait_for(lambda: platform.job("kill-ingestion", job_id)["state"] == "JOB_RUNNING", what="the ingestion to run")

    killed = platform.kaos("train", "kill", "-j", job_id)
    assert killed.code == 0, killed
    assert f"Job {job_id} successfully killed" in killed.text
    assert platform.job("kill-ingestion", job_id)["state"] == "JOB_KILLED"
    assert not list((platform.data_dir / "ingested").glob("*/.manifest.partial-*"))
