"""Build (or reuse) the virtualenv of a bundle: `python -m kaos_backend.executors.venv_builder
--envs-dir D --key K REQUIREMENTS...`

Environments live in `D/K/`, keyed by the hash of the requirements (see `requirements_key`). Identical
requirements share one environment; a lock file serialises two builds of the same key; an environment
becomes visible (renamed into place) only once pip succeeded, so a failed or killed build leaves nothing half
built. Output goes to stdout, which the runner writes to the build job's log. Standard library only.
"""
import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable

COMPLETE_MARKER = ".kaos-complete"


def requirements_key(requirement_texts: Iterable[bytes]) -> str:
    """The environment key: the interpreter's version and the bytes of every requirements file."""
    digest = hashlib.sha256(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    for text in requirement_texts:
        digest.update(hashlib.sha256(text).digest())
    return digest.hexdigest()[:16]


_LOCAL_PREFIXES = (".", "/", "~", "file:", "-e", "--editable", "-r", "--requirement", "-c", "--constraint",
                   "-f", "--find-links")
_ARCHIVES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".zip")


def refers_to_local_files(text: bytes) -> bool:
    """Does this requirements file name files of the bundle (`./pkg`, `-r other.txt`, `-e .`, a wheel beside it)?
    Then its bytes do not say what it installs, and its environment must not be shared by key alone."""
    for raw in text.decode("utf-8", errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement = line.split(";", 1)[0].strip()
        if line.startswith(_LOCAL_PREFIXES) or "file:" in line or \
                (requirement.endswith(_ARCHIVES) and "://" not in requirement):
            return True
    return False


def tree_digest(directory) -> str:
    """sha256 over the relative paths and bytes of the regular files under `directory` (links not followed)."""
    digest = hashlib.sha256()
    root = Path(directory)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        digest.update(str(path.relative_to(root)).encode("utf-8", "surrogateescape") + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def environment_dir(envs_dir, key: str) -> Path:
    return Path(envs_dir) / key


def is_built(envs_dir, key: str) -> bool:
    return (environment_dir(envs_dir, key) / COMPLETE_MARKER).exists()


def _say(text: str) -> None:
    print(text, flush=True)


def _run(command) -> int:
    return subprocess.call(command, stdin=subprocess.DEVNULL)


def build(envs_dir: Path, key: str, requirements) -> int:
    envs_dir.mkdir(parents=True, exist_ok=True)
    target = environment_dir(envs_dir, key)
    with open(envs_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second build of the same key waits here, then reuses
        if is_built(envs_dir, key):
            _say(f"Using cached environment {key}")
            return 0
        shutil.rmtree(target, ignore_errors=True)  # whatever a killed build left
        building = target
        succeeded = False
        try:
            _say(f"Creating environment {key}")
            if _run([sys.executable, "-m", "venv", "--without-pip", str(building)]) != 0:
                _say("The command 'python -m venv' returned a non-zero code: 1")
                return 1
            files = [str(path) for path in requirements if Path(path).exists()]
            if files:
                pip = [sys.executable, "-m", "pip", "--python", str(building / "bin" / "python"), "install",
                       "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
                for path in files:
                    pip += ["-r", path]
                names = " ".join(f"-r {Path(path).name}" for path in files)
                _say(f"Step 1/1 : RUN pip install {names}")
                code = _run(pip)
                if code != 0:
                    _say(f"The command 'pip install {names}' returned a non-zero code: {code}")
                    return code
            (building / COMPLETE_MARKER).write_text(key)
            succeeded = True
            _say(f"Successfully built environment {key}")
            return 0
        finally:
            if not succeeded:
                shutil.rmtree(building, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs-dir", required=True, type=Path)
    parser.add_argument("--key", required=True)
    parser.add_argument("requirements", nargs="*")
    args = parser.parse_args(argv)
    return build(args.envs_dir, args.key, args.requirements)


if __name__ == "__main__":
    sys.exit(main())
