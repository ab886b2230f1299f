"""Speed target: a grid of 32 trainings that each sleep 2 s, deployed with parallelism 4, takes at most 1.1x the
time of the same 32 runs started directly, 4 at a time, in the same virtualenv.

Against a real backend with a fresh data directory. First, unmeasured: the build of the bundle's (empty)
requirements and one training without hyperparameters. Then, in alternating rounds: the platform (POST the
hyperparameters file with parallelism 4, until the new train job is JOB_SUCCESS) and the baseline (32 times
`./train <out>` in a copy of model/ with the build's virtualenv first on PATH, 4 at a time). Medians of both."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _backend import BackendApi, BenchFailure, exit_on_sigterm, running_backend, temporary_directory, zip_bundle

from kaos_backend.executors import venv_builder

WORKSPACE = "bench-grid"
PARTITIONS = 32
PARALLELISM = 4
SLEEP_SECONDS = 2
ROUNDS = 2
TARGET_RATIO = 1.1
TIMEOUT = 600.0
TRAIN = f"""#!/usr/bin/env python3
import os, sys, time
time.sleep({SLEEP_SECONDS})
os.makedirs(os.path.join(sys.argv[1], "model"), exist_ok=True)
"""


def bundles(root: Path) -> tuple:
    model = root / "source" / "sleeper" / "model"
    model.mkdir(parents=True)
    (root / "source" / "sleeper" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (model / "__init__.py").write_text("")
    (model / "requirements.txt").write_text("")
    (model / "train").write_text(TRAIN)
    (model / "train").chmod(0o755)
    data = root / "data" / "features" / "training"
    data.mkdir(parents=True)
    (data / "data.csv").write_text("1,2,3\n")
    return root / "source", root / "data"


def wait_new_success(api: BackendApi, known: set) -> str:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for job in api.train_list(WORKSPACE)["training"]:
            if job["job_id"] not in known and job["state"] in ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED"):
                if job["state"] != "JOB_SUCCESS":
                    raise BenchFailure(f"train job {job['job_id']} ended {job['state']}: {job.get('reason')}")
                return job["job_id"]
        time.sleep(0.02)
    raise BenchFailure("the train job did not end")


def platform_round(api: BackendApi, tmp: Path, run: int) -> float:
    """Seconds from posting a new grid (parallelism 4) to its train job's JOB_SUCCESS."""
    params = tmp / f"params-{run}.json"
    params.write_text(json.dumps({"i": list(range(PARTITIONS)), "round": [run]}))
    known = {job["job_id"] for job in api.train_list(WORKSPACE)["training"]}
    start = time.perf_counter()
    with open(params, "rb") as body:
        api.call("POST", f"data/{WORKSPACE}/params?parallelism={PARALLELISM}", data=body)
    wait_new_success(api, known)
    return time.perf_counter() - start


def direct_round(model: Path, env_dir: Path, work: Path) -> float:
    """Seconds of 32 `./train <out>` runs, 4 at a time, in copies of model/ with the build's virtualenv."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KAOS_")}
    env.update(VIRTUAL_ENV=str(env_dir), PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}",
               PYTHONUNBUFFERED="1")
    copies = []
    for index in range(PARTITIONS):
        code = work / f"code-{index}"
        shutil.copytree(model, code)
        copies.append(code)

    def run(code: Path) -> int:
        return subprocess.run(["./train", str(code / "out")], cwd=code, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=PARALLELISM) as pool:
        codes = list(pool.map(run, copies))
    seconds = time.perf_counter() - start
    if any(codes):
        raise BenchFailure(f"direct ./train exit codes {codes}")
    return seconds


def main() -> int:
    exit_on_sigterm()
    with temporary_directory("kaos-bench-grid-") as tmp:
        tmp = Path(tmp)
        source, data = bundles(tmp)
        data_dir = tmp / "platform"
        with running_backend(data_dir) as backend:
            api = BackendApi(backend)
            api.create_workspace(WORKSPACE)
            print("build and a first training (not measured)...", flush=True)
            answer = api.post_zip(f"train/{WORKSPACE}", zip_bundle(source, tmp / "source.zip"))
            api.post_zip(f"data/{WORKSPACE}/features", zip_bundle(data, tmp / "data.zip"))
            if answer.get("job_id"):
                state, _ = api.wait_for_job(WORKSPACE, answer["job_id"], TIMEOUT)
                if state != "JOB_SUCCESS":
                    raise BenchFailure(f"build ended {state}: {api.job_log_tail(WORKSPACE, answer['job_id'])}")
            wait_new_success(api, set())
            env_dir = venv_builder.environment_dir(data_dir / "envs", venv_builder.requirements_key([b""]))
            platform, direct = [], []
            for run in range(1, ROUNDS + 1):
                platform.append(platform_round(api, tmp, run))
                print(f"round {run}: platform {platform[-1]:.2f} s", flush=True)
                work = tmp / f"direct-{run}"
                work.mkdir()
                direct.append(direct_round(source / "sleeper" / "model", env_dir, work))
                print(f"round {run}: direct {direct[-1]:.2f} s", flush=True)
    platform_median, direct_median = statistics.median(platform), statistics.median(direct)
    ratio = platform_median / direct_median
    met = ratio <= TARGET_RATIO
    print(f"{PARTITIONS} trainings of {SLEEP_SECONDS} s, {PARALLELISM} at a time: platform {platform_median:.2f} s, "
          f"direct {direct_median:.2f} s -> ratio {ratio:.3f} (target <= {TARGET_RATIO}) {'OK' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
