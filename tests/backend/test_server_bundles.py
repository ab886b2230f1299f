"""Bundle bounds on the real backend (`python -m kaos_backend serve`, gunicorn workers, scheduler) over HTTP:
a deeply nested member is refused without costing the API worker memory, one at the depth limit trains."""
import os
import time
from pathlib import Path
from typing import Dict, List

from kaos_model.bundles import MAX_BUNDLE_DEPTH

from tests.backend.helpers import features_zip, zip_bytes
from tests.backend.test_server import api, assert_error, blob_files, new_name

MB = 1024 * 1024
TRAIN = """#!/usr/bin/env python3
import os, pathlib, sys
data = pathlib.Path(os.environ["KAOS_TRAIN_DATA"])
deepest = max(data.rglob("*.csv"), key=lambda path: len(path.parts))
print("deepest member:", len(deepest.relative_to(data.parent).parts), "levels,", deepest.read_text().strip())
(pathlib.Path(sys.argv[1]) / "model").mkdir(parents=True, exist_ok=True)
"""


def nested(depth: int, leaf: str = "leaf.csv") -> str:
    """`features/d/d/.../<leaf>`: a member path of exactly `depth` components."""
    return "/".join(["features"] + ["d"] * (depth - 2) + [leaf])


def descendants(pid: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, ()))
    return found


def peak_rss_kb(pid: int) -> Dict[int, int]:
    """VmHWM (the peak resident set, kB) of the backend and every process under it (gunicorn workers...)."""
    peaks = {}
    for process in descendants(pid):
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[process] = int(line.split()[1])
    return peaks


def test_deep_members_are_refused_without_memory_growth(module_backend):
    ws = new_name()
    assert api(module_backend, "POST", f"workspace/{ws}").status_code == 201
    unsafe = zip_bytes({"features/a.csv": "1", "features/../../evil.csv": "x"})
    for _ in range(6):  # warm both workers up: their first requests load code and open connections
        assert api(module_backend, "POST", f"data/{ws}/features", data=features_zip()).status_code == 200
        assert_error(api(module_backend, "POST", f"data/{ws}/features", data=unsafe), 400, "INVALID_BUNDLE")
    blobs_before = blob_files(module_backend)
    before = peak_rss_kb(module_backend.process.pid)
    answers = []
    for attempt in range(3):
        deep = zip_bytes({nested(8_000, leaf=f"leaf{attempt}.csv"): "x", "features/a.csv": "1"})
        assert len(deep) < 40_000  # a few KB of zip: the whole cost is in how the check reads it
        answers.append(api(module_backend, "POST", f"data/{ws}/features", data=deep))
    after = peak_rss_kb(module_backend.process.pid)
    growth = sum(after[pid] - before.get(pid, 0) for pid in after)
    assert growth < 50 * 1024, f"the backend's processes grew their peak memory by {growth} kB"
    for attempt, answer in enumerate(answers):
        message = assert_error(answer, 400, "INVALID_BUNDLE")
        assert message.startswith("Bundle member features/d/d/d/") and "nested 8000 levels deep" in message
        assert f"leaf{attempt}.csv" in message and len(message) < 700
    assert blob_files(module_backend) == blobs_before  # a refused upload leaves nothing


def test_a_member_over_the_depth_limit_is_refused(module_backend):
    ws = new_name()
    api(module_backend, "POST", f"workspace/{ws}")
    for depth in (2_100, MAX_BUNDLE_DEPTH + 1):
        data = zip_bytes({nested(depth): "x"})
        for route in ("features", "notebook"):
            message = assert_error(api(module_backend, "POST", f"data/{ws}/{route}", data=data), 400,
                                   "INVALID_BUNDLE")
            assert f"nested {depth} levels deep, the limit is {MAX_BUNDLE_DEPTH}" in message


def _wait_for_training(server, ws: str, timeout: float = 600.0) -> dict:
    """The workspace's first training job once it ended (a bound against hanging, not a speed check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = api(server, "GET", f"train/{ws}").json()["response"]
        for kind in ("building", "training"):
            if listing[kind] and listing[kind][0]["state"] == "JOB_FAILURE":
                return listing[kind][0]
        if listing["training"] and listing["training"][0]["state"] in ("JOB_SUCCESS", "JOB_KILLED"):
            return listing["training"][0]
        time.sleep(0.5)
    raise AssertionError(f"no training of {ws} ended")


def test_a_member_at_the_depth_limit_is_accepted_and_trains(module_backend):
    ws = new_name()
    api(module_backend, "POST", f"workspace/{ws}")
    source = zip_bytes({"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": "",
                        "tiny/model/requirements.txt": "", "tiny/model/train": TRAIN})
    assert api(module_backend, "POST", f"train/{ws}", data=source).status_code == 200
    data = zip_bytes({nested(MAX_BUNDLE_DEPTH): "the deepest row\n"})
    uploaded = api(module_backend, "POST", f"data/{ws}/features", data=data)
    assert uploaded.status_code == 200, uploaded.text
    job = _wait_for_training(module_backend, ws)
    log = api(module_backend, "GET", f"train/{ws}/{job['job_id']}/logs").json()
    assert job["state"] == "JOB_SUCCESS", log
    assert f"deepest member: {MAX_BUNDLE_DEPTH} levels, the deepest row" in str(log)
    assert os.path.isdir(module_backend.data_dir / "extracted")
