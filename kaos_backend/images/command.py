"""`kaos-backend base-image` (also `python -m kaos_backend.images`): make the base image when it is missing or
stale, print one line saying which, exit 0; `Error - ...` and exit 1 when it cannot."""
import argparse
import os
import sys

from kaos_backend.images import base_image, ca_bundle

NO_SDK = "the base image needs the docker SDK: pip install 'kaos[docker]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tag", default=base_image.DEFAULT_TAG, help=f"image name (default {base_image.DEFAULT_TAG})")
    parser.add_argument("--suite", default=base_image.DEFAULT_SUITE, help="Debian suite (default %(default)s)")
    parser.add_argument("--mirror", default=base_image.DEFAULT_MIRROR, help="Debian mirror (default %(default)s)")
    parser.add_argument("--ca-bundle", help="CA file to trust inside (default: the host's, e.g. SSL_CERT_FILE or "
                                            "/etc/ssl/certs/ca-certificates.crt)")
    parser.add_argument("--rebuild", action="store_true", help="make it even when an up-to-date one exists")
    parser.add_argument("--workdir", help="where the root filesystem is made (default /var/tmp)")


def run(args: argparse.Namespace) -> int:
    try:
        import docker
        import docker.errors
    except ImportError:
        return _error(NO_SDK)
    try:
        recipe = base_image.Recipe(tag=args.tag, suite=args.suite, mirror=args.mirror,
                                   ca_bundle=ca_bundle.host_bundle_path(args.ca_bundle))
    except ca_bundle.CABundleError as error:
        return _error(str(error))
    try:
        client = docker.from_env(timeout=base_image.IMPORT_TIMEOUT)
        client.ping()
    except docker.errors.DockerException as error:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return _error(f"no Docker engine answers at {where} ({_first_line(error)}): start one, e.g. "
                      "scripts/start-dockerd.sh")
    if recipe.ca_bundle is None:
        print("Warning - no CA bundle found on this host: the image trusts Debian's CAs only", flush=True)
    try:
        outcome = base_image.ensure_base_image(client, recipe, rebuild=args.rebuild, workdir=args.workdir,
                                               log=lambda line: print(f"Info - {line}", flush=True))
    except base_image.BaseImageError as error:
        return _error(str(error))
    if not outcome.built:
        print(f"Info - the base image {outcome.tag} is up to date ({outcome.image_id}): reused", flush=True)
        return 0
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in outcome.timings.items())
    print(f"Info - made the base image {outcome.tag} ({outcome.image_id}) in {sum(outcome.timings.values()):.1f} s "
          f"({steps})", flush=True)
    return 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kaos_backend.images",
                                     description="Make the Docker base image of kaos's builds when it is missing or "
                                                 "stale.")
    add_arguments(parser)
    sys.exit(run(parser.parse_args(argv)))


def _error(message: str) -> int:
    print(f"Error - {message}", file=sys.stderr)
    return 1


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
