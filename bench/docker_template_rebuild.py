"""Speed target (issue 10): a rebuild after a code-only change takes at most 20% of the cold build.

On the Docker engine, for the mnist template's train and serve Dockerfiles on the base image (KAOS_BASE_IMAGE,
else kaos-base-python:bookworm, made when missing), with the host network as kaos builds: the cold build
(`nocache`: every step runs, pip downloads and installs the requirements) is the baseline, measured in the same
run; then REBUILDS builds, each after a change to the code alone (a comment appended to `train` or
`predict.py`), with the layer cache. Prints both times and the ratio of the median rebuild to the cold build.
Without an engine it says so and exits 0 (nothing to measure)."""
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kaos_backend.images import base_image as base, ca_bundle  # noqa: E402

TARGET_RATIO = 0.20
REBUILDS = 3
CODE_FILE = {"train": "train", "serve": "predict.py"}
LABEL = {"io.kaos.test": "bench"}


class BuildFailed(RuntimeError):
    pass


def build(client, context: Path, tag: str, base_tag: str, nocache: bool) -> float:
    """Seconds `docker build --network host --build-arg BASE_IMAGE=...` of `context` took."""
    started = time.perf_counter()
    for chunk in client.api.build(path=str(context), tag=tag, buildargs={"BASE_IMAGE": base_tag},
                                  network_mode="host", rm=True, forcerm=True, pull=False, nocache=nocache,
                                  decode=True, labels=LABEL):
        if "error" in chunk:
            raise BuildFailed(f"build of {context} failed: {chunk['error']}")
    return time.perf_counter() - started


def measure(client, base_tag: str, kind: str, tmp: Path, tags: list) -> bool:
    context = tmp / kind
    shutil.copytree(REPO / "templates" / "mnist" / f"model-{kind}" / "mnist" / "model", context)
    shutil.copy(REPO / "templates" / "mnist" / f"model-{kind}" / "mnist" / "Dockerfile", context / "Dockerfile")
    if kind == "serve":
        (context / "model.pkl").write_bytes(b"a model, for building only")
    def new_tag():  # one per build, all removed at the end (a reused tag would leave the last image dangling)
        tags.append(f"kaos-bench-{kind}:{uuid.uuid4().hex[:8]}")
        return tags[-1]
    cold = build(client, context, new_tag(), base_tag, nocache=True)
    rebuilds = []
    for run in range(1, REBUILDS + 1):
        with open(context / CODE_FILE[kind], "a") as code:
            code.write(f"\n# code-only change {run}\n")
        rebuilds.append(build(client, context, new_tag(), base_tag, nocache=False))
    rebuild = statistics.median(rebuilds)
    ratio = rebuild / cold
    verdict = "OK" if ratio <= TARGET_RATIO else "MISSED"
    print(f"mnist {kind} image: rebuild after a code-only change {rebuild:.2f} s (median of {REBUILDS}) vs cold "
          f"build {cold:.2f} s -> ratio {ratio:.3f} (target <= {TARGET_RATIO}) {verdict}", flush=True)
    return ratio <= TARGET_RATIO


def main() -> int:
    try:
        import docker
        client = docker.from_env(timeout=900)
        client.ping()
    except Exception as error:  # noqa: BLE001 - no SDK or no engine: nothing to measure here
        print(f"docker_template_rebuild: skipped, no Docker engine ({str(error).splitlines()[0][:150]})")
        return 0
    base_tag = os.environ.get("KAOS_BASE_IMAGE") or base.DEFAULT_TAG
    if base_tag == base.DEFAULT_TAG:
        outcome = base.ensure_base_image(client, base.Recipe(ca_bundle=ca_bundle.host_bundle_path()))
        if outcome.built:
            print(f"made the base image {base_tag}: {outcome.timings}")
    tags = []
    try:
        with tempfile.TemporaryDirectory(prefix="kaos-bench-docker-") as tmp:
            met = [measure(client, base_tag, kind, Path(tmp), tags) for kind in ("train", "serve")]
    except BuildFailed as error:
        print(f"Error - {error}", file=sys.stderr)
        return 1
    finally:
        for tag in tags:
            try:
                client.images.remove(tag, force=True)
            except docker.errors.APIError:
                pass
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
