"""`kaos-backend serve`: the front door (kaos_backend.front) on the public address, the API under gunicorn
behind it on a unix socket, plus the scheduler, on one machine."""
import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional, Tuple

from kaos_backend import __version__
from kaos_backend.config import Config, ConfigError

DEPENDENCIES = ("flask", "sqlalchemy", "gunicorn", "alembic")
MISSING_DEPENDENCIES = "Error - the kaos backend needs its dependencies: pip install 'kaos[backend]'"
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
REQUEST_TIMEOUT = 3600
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


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
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        sys.exit(2)
    sys.exit(serve_command(args))


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

    from kaos_backend.app import create_app
    from kaos_backend.migrations import SchemaError
    try:
        app = create_app(config)           # migrates the schema here, in the master, before any fork
    except SchemaError as error:
        print(f"Error - {error}", file=sys.stderr)
        return 1
    services = app.extensions["kaos"]
    services.store.clear_temp()             # leftovers of a crash; no upload runs yet
    services.dispose()                      # no connection may cross the fork into the workers

    try:
        listener = _listen(args.host, args.port)
    except OSError as error:
        print(f"Error - cannot listen on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    run_dir = Path(tempfile.mkdtemp(prefix="kaos-backend-"))  # short: a unix socket path has ~100 bytes
    api_socket = run_dir / "api.sock"
    scheduler = _start_scheduler(config)
    front = None
    try:
        with listener:
            front = _start_front(listener, api_socket, config)
        _gunicorn(app, args, services, api_socket).run()
    finally:
        _stop_child(front)
        _stop_scheduler(scheduler)
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """The backend's public socket, bound here (a port in use is an error now) and handed to the front door."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)


def _start_front(listener: socket.socket, api_socket: Path, config: Config) -> subprocess.Popen:
    """`kaos_backend.front` on the public socket: /serve-* to the endpoints, the rest to gunicorn's unix socket.
    Should it die, the backend stops (a backend nobody can reach is worse than one that is visibly down)."""
    fd = listener.fileno()
    process = subprocess.Popen([sys.executable, "-m", "kaos_backend.front", "--fd", str(fd), "--api",
                                str(api_socket), "--database-url", config.database_url,
                                "--parent", str(os.getpid())], pass_fds=(fd,))

    def watch():
        # Killed by SIGTERM/SIGINT, the front was stopped with the rest of the process group: the master got the
        # same signal, and a second one in the middle of its graceful stop would hold the stop up.
        if process.wait() not in (0, -signal.SIGTERM, -signal.SIGINT) and not _stopping.is_set():
            logging.getLogger("kaos_backend.cli").error(
                "The front process exited with %s: stopping the backend", process.returncode)
            os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="front-watch", daemon=True).start()
    return process


_stopping = threading.Event()


def _stop_child(process: Optional[subprocess.Popen]) -> None:
    _stopping.set()
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


def _start_scheduler(config: Config) -> subprocess.Popen:
    env = dict(os.environ, KAOS_DATA_DIR=str(config.data_dir), KAOS_DATABASE_URL=config.database_url,
               KAOS_TOKEN=config.token)
    return subprocess.Popen([sys.executable, "-m", "kaos_backend.scheduler", "--data-dir", str(config.data_dir)],
                            env=env)


def _stop_scheduler(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _gunicorn(app, args, services, api_socket: Path):
    from gunicorn.app.base import BaseApplication

    def _post_fork(server, worker):
        # A stop signal that arrives before the worker has its own handlers would hit the master's inherited
        # ones and be lost (the worker then lingers until killed): hold them until post_worker_init.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        services.dispose(close=False)
        _json_error_pages()

    def _post_worker_init(worker):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    class KaosGunicorn(BaseApplication):
        def load_config(self):
            options = {
                "bind": [f"unix:{api_socket}"],  # behind the front door (kaos_backend.front)
                "workers": args.workers,
                "threads": args.threads,
                "worker_class": "gthread",
                "timeout": REQUEST_TIMEOUT,
                "graceful_timeout": 10,
                "preload_app": True,
                "accesslog": "-",
                "errorlog": "-",
                "logconfig_dict": _gunicorn_logging(),
                "post_fork": _post_fork,
                "post_worker_init": _post_worker_init,
                "proc_name": "kaos-backend",
                "control_socket_disable": True,  # gunicorn ≥ 24: one shared socket in $HOME otherwise
            }
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self):
            return app

    return KaosGunicorn()


def _json_error_pages() -> None:
    """Requests gunicorn refuses itself (a request line above 4 KiB, broken headers) get the API's JSON errors
    instead of gunicorn's HTML page: `gunicorn.util.write_error` is what its workers call for those."""
    import json

    from gunicorn import util

    def write_error(sock, status_int, reason, mesg):
        code = "INTERNAL_ERROR" if status_int >= 500 else "BAD_REQUEST"
        message = mesg or (reason if status_int < 500 else
                           "Internal error of the kaos backend: see the backend log for details")
        body = json.dumps({"error_code": code, "message": message}).encode("utf-8")
        head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        util.write_nonblock(sock, head.encode("latin-1") + body)

    util.write_error = write_error


def _gunicorn_logging() -> dict:
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {"console": handler, "error_console": handler},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
        "root": {"level": "INFO", "handlers": ["console"]},
    }
