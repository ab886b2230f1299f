"""A LOCAL platform deployed by the real CLI (`kaos build deploy -c LOCAL`) in a project directory, with
direct API access for waiting on states (assertions go through the CLI). With `cloud="DOCKER"` the same for a
DOCKER platform (`kaos build deploy -c DOCKER`, extra deploy options in `deploy_options`)."""
import configparser
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import requests

from tests.support.backend import free_port
from tests.support.cli import Result, kaos

REPO = Path(__file__).resolve().parents[2]


class LocalPlatform:
    def __init__(self, project: Path, port: Optional[int] = None, cloud: str = "LOCAL",
                 deploy_options: Sequence[str] = ()):
        self.project = Path(project)
        self.port = port or free_port()
        self.cloud = cloud
        self.deploy_options = list(deploy_options)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def deploy(self, force: bool = False) -> Result:
        args = ["build", "deploy", "-c", self.cloud, "-y", "--port", str(self.port), *self.deploy_options]
        result = self.kaos(*args, *(["-f"] if force else []))
        assert result.code == 0, result
        return result

    def destroy(self) -> Result:
        return self.kaos("destroy", "-c", self.cloud, "-y")

    def kill_backend(self) -> None:
        """SIGKILL the backend's whole process group (gunicorn master, workers, scheduler), as a crash would."""
        os.killpg(int(self._context()["pid"]), signal.SIGKILL)

    # -- access ---------------------------------------------------------------------------------------------
    def kaos(self, *args, **kwargs) -> Result:
        return kaos(self.project, *args, **kwargs)

    def _context(self) -> dict:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(self.project / ".kaos" / "config")
        return dict(parser[f"context:{self.cloud}"])

    @property
    def data_dir(self) -> Path:
        return Path(self._context()["data_dir"])

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        context = self._context()
        return requests.request(method, context["url"] + path, headers={"X-Token": context["token"]},
                                timeout=60, **kwargs)

    def job(self, workspace: str, job_id: str) -> dict:
        return self.api("GET", f"job/{workspace}/{job_id}").json()["response"]

    def jobs(self, workspace: str) -> dict:
        return self.api("GET", f"train/{workspace}").json()["response"]

    # -- helpers --------------------------------------------------------------------------------------------
    def workspace(self, name: str) -> str:
        result = self.kaos("workspace", "create", "-n", name)
        assert result.code == 0, result
        return name

    def copy_template(self, relative: str, name: str) -> Path:
        """A private copy of a template folder (e.g. `mnist/model-train`) to edit."""
        target = self.project / name
        shutil.copytree(REPO / "templates" / relative, target)
        return target


def wait_for(predicate: Callable, timeout: float = 600.0, interval: float = 0.2, what: str = "condition"):
    """Poll until `predicate()` returns something truthy; a bound against hanging, not a speed check."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


TERMINAL = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED")


def wait_terminal(platform: LocalPlatform, workspace: str, job_id: str, timeout: float = 600.0) -> dict:
    return wait_for(lambda: (lambda job: job if job["state"] in TERMINAL else None)(platform.job(workspace, job_id)),
                    timeout, what=f"job {job_id} to end")


def tiny_train_bundle(root: Path, train_script: str, requirements: str = "") -> Path:
    """A minimal train source bundle: `<root>/tiny/{Dockerfile, model/{__init__.py, requirements.txt, train}}`."""
    model = root / "tiny" / "model"
    model.mkdir(parents=True)
    (root / "tiny" / "Dockerfile").write_text("FROM python:3.11-slim\nWORKDIR /opt/program\nCOPY . .\n")
    (model / "__init__.py").write_text("")
    (model / "requirements.txt").write_text(requirements)
    train = model / "train"
    train.write_text("#!/usr/bin/env python3\n" + train_script)
    train.chmod(0o755)
    return root


def tiny_data_bundle(root: Path, marker: str = "1") -> Path:
    """A data bundle `<root>/features/training/data.csv`; a different marker makes different data."""
    training = root / "features" / "training"
    training.mkdir(parents=True)
    (training / "data.csv").write_text(f"{marker},0,0\n")
    return root
