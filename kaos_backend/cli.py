"""`kaos-backend serve`: the backend on one machine. This process binds the public address (and the internal port,
KAOS_INTERNAL_PORT, when set), prepares the data directory and then supervises the parts (kaos_backend.supervisor):
the front door on that address (kaos_backend.front), the API under gunicorn behind it on a unix socket
(kaos_backend.api_server) and the scheduler (kaos_backend.scheduler). SIGTERM, SIGINT or SIGHUP stop it all; it
exits 1 when a part cannot start.
"""
import argparse
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Optional, Tuple

from kaos_backend import __version__, docker_platform
from kaos_backend.config import Config, ConfigError
from kaos_backend.images import command as base_image_command

DEPENDENCIES = ("flask", "sqlalchemy", "gunicorn", "alembic")
MISSING_DEPENDENCIES = "Error - the kaos backend needs its dependencies: pip install 'kaos[backend]'"
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"

log = logging.getLogger("kaos_backend.cli")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="kaos-backend", description="The kaos backend.")
    parser.add_argument("--version", action="version", version=f"kaos-backend {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the REST API and run the scheduler")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument("--data-dir", help="where the database, blobs and token live (default KAOS_DATA_DIR "
                                          "or ~/.kaos-backend)")
    serve.add_argument("--workers", type=_positive, default=2, help="gunicorn worker processes (default 2)")
    serve.add_argument("--threads", type=_positive, default=4, help="threads per worker (default 4)")
    stop = commands.add_parser("stop-workloads", help="stop every build, training and endpoint of a data directory "
                                                       "(they outlive the backend by design)")
    stop.add_argument("--data-dir", required=True, help="the backend's data directory")
    docker_platform.add_check_arguments(commands.add_parser(
        "docker-check", help="does a Docker engine answer, with the base image of builds? (before `kaos build deploy "
                             "-c DOCKER`)"))
    docker_platform.add_destroy_arguments(commands.add_parser(
        "destroy-platform", help="remove the containers, images, networks and volumes kaos labelled for a data "
                                 "directory's platform on the Docker engine (`kaos destroy -c DOCKER`)"))
    base_image_command.add_arguments(commands.add_parser(
        "base-image", help="make the Docker base image of builds when it is missing or stale (debootstrap)"))
    args = parser.parse_args(argv)
    if args.command == "base-image":
        sys.exit(base_image_command.run(args))
    if args.command == "stop-workloads":
        sys.exit(stop_workloads_command(args))
    if args.command == "docker-check":
        sys.exit(docker_platform.check_command(args))
    if args.command == "destroy-platform":
        sys.exit(docker_platform.destroy_command(args))
    if args.command != "serve":
        parser.print_help()
        sys.exit(2)
    sys.exit(serve_command(args))


def stop_workloads_command(args) -> int:
    """`kaos-backend stop-workloads --data-dir D`: what `kaos destroy -c LOCAL` runs once the backend is stopped."""
    from kaos_backend.config import platform_id
    from kaos_backend.executors.containment import stop_platform

    stopped = stop_platform(platform_id(args.data_dir))
    print(f"Info - stopped {len(stopped)} workload process{'' if len(stopped) == 1 else 'es'}"
          + (f": {'; '.join(stopped)}" if stopped else ""))
    return 0


def serve_command(args) -> int:
    if not _dependencies_importable():
        print(MISSING_DEPENDENCIES, file=sys.stderr)
        return 1
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=LOG_FORMAT)
    try:
        config = Config.from_env(**({"data_dir": args.data_dir} if args.data_dir else {}))
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        token, token_path = resolve_token(config)
        config = Config.from_env(**({"data_dir": args.data_dir} if args.data_dir else {}), token=token)
    except (ConfigError, OSError) as error:
        print(f"Error - {error}", file=sys.stderr)
        return 1
    if token_path:
        print(f"Info - the API token (X-Token) is in {token_path}", flush=True)
    from kaos_backend import pid_file

    try:
        pid_file.write(config.data_dir, args.host, args.port)
    except OSError as error:
        print(f"Error - cannot write {config.data_dir / pid_file.PID_FILE}: {error}", file=sys.stderr)
        return 1
    try:
        return _serve_prepared(args, config)
    finally:
        pid_file.remove(config.data_dir)


def _serve_prepared(args, config: Config) -> int:
    error = prepare(config)
    if error:
        print(f"Error - {error}", file=sys.stderr)
        return 1
    listeners = []
    for port in (args.port, config.internal_port):
        if port is None:
            continue
        try:
            listeners.append(_listen(args.host, port))
        except OSError as failure:
            for listener in listeners:
                listener.close()
            print(f"Error - cannot listen on {args.host}:{port}: {failure.strerror or failure}", file=sys.stderr)
            return 1
    return supervise(config, listeners[0], args.workers, args.threads, internal=listeners[1:])


def prepare(config: Config) -> Optional[str]:
    """Before any part runs: bring the schema to the newest migration (so the scheduler, which does not
    migrate, finds it), drop the temporary files of interrupted uploads and the runtime directories of
    backends that are gone. Returns what went wrong, or None."""
    from kaos_backend import runtime_dir
    from kaos_backend.db import Database
    from kaos_backend.migrations import SchemaError
    from kaos_backend.storage import BlobStore

    for stale in runtime_dir.remove_stale():
        log.info("Removed the runtime directory of a backend that is gone: %s", stale)
    try:
        Database(config.database_url).dispose()
    except SchemaError as error:  # a database this kaos cannot upgrade: says why
        return str(error)
    except Exception as error:  # noqa: BLE001 - any driver's error: one line, not a traceback
        return f"cannot open the database: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    try:
        BlobStore(config.blob_dir).clear_temp()
    except OSError as error:
        return f"cannot prepare the blob store in {config.blob_dir}: {error}"
    return None


def supervise(config: Config, listener: socket.socket, workers: int, threads: int, internal=()) -> int:
    """Run the parts under a Supervisor until a stop signal (0) or a part that cannot start (1). `internal`: the
    listener of KAOS_INTERNAL_PORT, if any (the front serves only the internal artifact routes there)."""
    from kaos_backend import runtime_dir
    from kaos_backend.part_status import STATUS_FILE
    from kaos_backend.parts import backend_parts
    from kaos_backend.supervisor import Supervisor

    run_dir = runtime_dir.create()
    log.info("kaos-backend %s (pid %s): runtime directory %s", __version__, os.getpid(), run_dir)
    try:
        with listener:
            specs = backend_parts(config, run_dir, listener, workers, threads,
                                  internal_listener=internal[0] if internal else None)
            return Supervisor(specs, run_dir / STATUS_FILE).run()
    finally:
        for extra in internal:
            extra.close()
        runtime_dir.remove(run_dir)


def resolve_token(config: Config) -> Tuple[str, Optional[Path]]:
    """`KAOS_TOKEN`, else the token kept in `<data-dir>/token` (created, mode 0600, on first start)."""
    if config.token:
        return config.token, None
    path = config.token_path
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if not token:
            raise ConfigError(f"The token file {path} is empty: delete it to get a new token")
        return token, path
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip(), path


def _listen(host: str, port: int) -> socket.socket:
    """The backend's public socket, bound here (a port in use is an error now) and handed to the front door."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)


def _dependencies_importable() -> bool:
    import importlib
    try:
        for name in DEPENDENCIES:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
