"""Issue 7, input 5 and item 7: SQLite under load. While trainings run, 20 data uploads and 20 `kaos train deploy`
(each from its own project directory, into its own workspace) happen at once: no "database is locked", no 5xx,
and every one of the 20 train jobs is accounted for (it ends, successfully)."""
import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support.cli import kaos
from tests.support.platform import LocalPlatform, tiny_data_bundle, tiny_train_bundle, wait_for, wait_terminal

CLIENTS = 20


def _data_zip(index: int) -> bytes:
    """A data bundle of ~2 MB (incompressible), different for each index: uploads and extractions that take a while."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("features/training/data.csv", f"{index}\n".encode() + os.urandom(2 * 1024 * 1024))
    return buffer.getvalue()


def test_twenty_uploads_and_twenty_deploys_at_once(tmp_path):
    platform = LocalPlatform(tmp_path / "project")
    platform.project.mkdir()
    platform.deploy()
    try:
        context = platform._context()
        platform.workspace("busy")  # trainings that run through it all
        busy = tiny_train_bundle(tmp_path / "busy", "import os, sys, time\ntime.sleep(20)\n"
                                                    "os.makedirs(sys.argv[1] + '/model')\n")
        grid = tmp_path / "grid.json"
        grid.write_text('{"a": [1, 2, 3, 4]}')
        assert platform.kaos("train", "deploy", "-s", str(busy), "-d", str(tiny_data_bundle(tmp_path / "bd")),
                             "-h", str(grid), "-p", "4").code == 0
        wait_for(lambda: platform.jobs("busy")["training"] and
                 platform.jobs("busy")["training"][0]["state"] == "JOB_RUNNING", what="the busy trainings")
        platform.workspace("uploads")

        code = tiny_train_bundle(tmp_path / "code", "import os, sys\nos.makedirs(sys.argv[1] + '/model')\n")
        projects = []
        for index in range(CLIENTS):
            project = tmp_path / f"client{index}"
            project.mkdir()
            assert kaos(project, "init", "-e", context["url"], "-t", context["token"]).code == 0
            assert kaos(project, "workspace", "create", "-n", f"ws{index}").code == 0
            projects.append((project, tiny_data_bundle(tmp_path / f"data{index}", marker=str(index))))

        def deploy(item):
            project, data = item
            return kaos(project, "train", "deploy", "-s", str(code), "-d", str(data), timeout=600)

        def upload(index):
            return requests.post(f"{context['url']}data/uploads/features", data=_data_zip(index),
                                 headers={"X-Token": context["token"]}, timeout=600)

        with ThreadPoolExecutor(max_workers=2 * CLIENTS) as pool:
            deploys = [pool.submit(deploy, item) for item in projects]
            uploads = [pool.submit(upload, index) for index in range(CLIENTS)]
            deployed = [future.result() for future in deploys]
            uploaded = [future.result() for future in uploads]

        assert [result for result in deployed if result.code != 0] == []
        assert [(r.status_code, r.text) for r in uploaded if r.status_code != 200] == []
        assert len({response.json()["glob_name"] for response in uploaded}) == CLIENTS
        for index in range(CLIENTS):
            workspace = f"ws{index}"
            jobs = wait_for(lambda: platform.jobs(workspace)["training"], what=f"the train job of {workspace}")
            assert len(jobs) == 1
            assert wait_terminal(platform, workspace, jobs[0]["job_id"])["state"] == "JOB_SUCCESS"
        log = (platform.project / ".kaos" / "LOCAL" / "backend.log").read_text()
        assert "database is locked" not in log
        assert " 500 " not in log and "Traceback" not in log
    finally:
        platform.destroy()
