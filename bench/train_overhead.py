"""Speed target: from `train deploy` with a warm build to JOB_SUCCESS, the platform adds under 0.5 s to running
the same `./train` directly in the same virtualenv (containment included: a cgroup of its own, the workload user
and its view of the files when run as root).

Against a real backend with a fresh data directory and the real mnist template. First, unmeasured: the cold
build of its requirements and one training. Then, in alternating rounds: the platform (zip and POST a source
whose `train` changed, same requirements; zip and POST the data; until the new train job is JOB_SUCCESS) and
the baseline (`./train <out>` in a copy of the bundle's model/ with the build's virtualenv first on PATH and
the KAOS_TRAIN_* variables set as a train job has them). Medians of both, and their difference."""
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _backend import (MNIST, BackendApi, BenchFailure, backend_log_problems, exit_on_sigterm, job_phases,
                      running_backend, temporary_directory, zip_bundle)

WORKSPACE = "bench-train"
ROUNDS = 3
TARGET_SECONDS = 0.5
COLD_TIMEOUT = 1800.0  # the first install of scikit-learn, scipy, numpy, pandas
TRAIN_TIMEOUT = 600.0
PRIVATE_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def environment_of(data_dir: Path, model_dir: Path) -> Path:
    """The virtualenv the local executor built for `model_dir/requirements.txt`."""
    from kaos_backend.executors import venv_builder
    key = venv_builder.requirements_key([(model_dir / "requirements.txt").read_bytes()])
    env = venv_builder.environment_dir(data_dir / "envs", key)
    if not venv_builder.is_built(data_dir / "envs", key):
        raise BenchFailure(f"no finished environment {env}")
    return env


def deploy(api: BackendApi, source: Path, data: Path, zips: Path, tag: str, timeout: float) -> tuple:
    """Zip and upload source then data, as `kaos train deploy -s -d` does; wait for the new train job.
    (seconds from before the first zip to JOB_SUCCESS, train job id, build job id)"""
    known = {job["job_id"] for job in api.train_list(WORKSPACE)["training"]}
    start = time.perf_counter()
    answer = api.post_zip(f"train/{WORKSPACE}", zip_bundle(source, zips / f"source-{tag}.zip"))
    api.post_zip(f"data/{WORKSPACE}/features", zip_bundle(data, zips / f"data-{tag}.zip"))
    if answer.get("job_id"):
        state, _ = api.wait_for_job(WORKSPACE, answer["job_id"], timeout)
        if state != "JOB_SUCCESS":
            raise BenchFailure(f"build {answer['job_id']} ended {state}:\n"
                               f"{api.job_log_tail(WORKSPACE, answer['job_id'])}")
    job_id, state, seen = api.wait_for_new_training(WORKSPACE, known, timeout)
    if state != "JOB_SUCCESS":
        raise BenchFailure(f"train job {job_id} ended {state}:\n{api.job_log_tail(WORKSPACE, job_id)}")
    return seen - start, job_id, answer.get("job_id")


def train_directly(model_dir: Path, env_dir: Path, work: Path) -> float:
    """Seconds of `./train <out>` in a copy of `model_dir`, as a train partition runs it, minus the platform."""
    code = work / "model"
    shutil.copytree(model_dir, code)
    out, hyper = work / "out", work / "hyper"
    out.mkdir()
    hyper.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("KAOS_") and key not in PRIVATE_ENV}
    env.update(VIRTUAL_ENV=str(env_dir), PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}",
               PYTHONUNBUFFERED="1", KAOS_TRAIN_DATA=str(MNIST / "data" / "features"),
               KAOS_TRAIN_HYPER=str(hyper), KAOS_TRAIN_OUTPUT=str(out))
    with open(work / "train.log", "wb") as log:
        start = time.perf_counter()
        code_ = subprocess.run(["./train", str(out)], cwd=code, env=env, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - start
    if code_ != 0 or not (out / "model").is_dir():
        raise BenchFailure(f"direct ./train exited {code_}:\n{(work / 'train.log').read_text()[-2000:]}")
    return seconds


def main() -> int:
    exit_on_sigterm()
    with temporary_directory("kaos-bench-train-") as tmp:
        tmp = Path(tmp)
        source, zips = tmp / "source", tmp / "zips"
        shutil.copytree(MNIST / "model-train", source)
        zips.mkdir()
        model = source / "mnist" / "model"
        data_dir = tmp / "data"
        with running_backend(data_dir) as backend:
            api = BackendApi(backend)
            api.create_workspace(WORKSPACE)
            print("cold build of the mnist requirements and a first training (not measured)...", flush=True)
            seconds, job_id, build_id = deploy(api, source, MNIST / "data", zips, "cold", COLD_TIMEOUT)
            print(f"cold deploy: {seconds:.1f} s (build {job_phases(data_dir, build_id)}; "
                  f"train {job_phases(data_dir, job_id)})")
            env_dir = environment_of(data_dir, model)
            platform, direct = [], []
            for run in range(1, ROUNDS + 1):
                with open(model / "train", "a") as train:
                    train.write(f"# overhead run {run}\n")  # a new source bundle, the same requirements
                seconds, job_id, build_id = deploy(api, source, MNIST / "data", zips, str(run), TRAIN_TIMEOUT)
                platform.append(seconds)
                build = job_phases(data_dir, build_id) if build_id else "none needed"
                print(f"round {run}: platform {seconds:.2f} s (build {build}; train {job_phases(data_dir, job_id)})",
                      flush=True)
                work = tmp / f"direct-{run}"
                work.mkdir()
                direct.append(train_directly(model, env_dir, work))
                print(f"round {run}: direct ./train {direct[-1]:.2f} s", flush=True)
            problems = backend_log_problems(backend)
        platform_median, direct_median = statistics.median(platform), statistics.median(direct)
        overhead = platform_median - direct_median
        print(f"platform (deploy -> JOB_SUCCESS) median {platform_median:.2f} s, direct ./train median "
              f"{direct_median:.2f} s -> difference {overhead:.2f} s, ratio {platform_median / direct_median:.2f}")
        for line in problems:
            print(f"backend log: {line}")
        met = overhead < TARGET_SECONDS
        print(f"overhead <{TARGET_SECONDS:g} s: {'OK' if met else 'MISSED'}")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
