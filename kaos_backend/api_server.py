"""The API part of the backend: the Flask app under gunicorn (gthread workers) on a unix socket, behind the
front door. Started by `kaos-backend serve` as `python -m kaos_backend.api_server --socket PATH`; its settings
(token and database URL among them) come from the `KAOS_*` environment, never from the command line.

Nothing may wrap `run()` here in a `try/finally` or a `with`: gunicorn forks its workers from inside its
master loop, and a worker leaves by raising SystemExit through that same stack, so every cleanup of the master
would run in each worker too (the old `kaos-backend serve` stopped its front from there and waited 10 s).
"""
import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional

from kaos_backend.config import Config, ConfigError

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
REQUEST_TIMEOUT = 3600
GRACEFUL_TIMEOUT = 10
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaos_backend.api_server",
                                     description="The kaos REST API under gunicorn (started by kaos-backend serve).")
    parser.add_argument("--socket", required=True, help="the unix socket to serve on")
    parser.add_argument("--run-dir", help="the runtime directory of the supervisor (parts' status for health)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    exit_with_parent()
    try:
        config = Config.from_env()
    except ConfigError as error:
        print(f"Error - {error}", file=sys.stderr)
        return 1
    from kaos_backend.app import create_app
    app = create_app(config)                # in the master, before any fork (preload_app)
    # Its socket is the front door's alone, and the front serves log follows: the API hands them off
    # (kaos_backend.log_handoff) instead of holding a worker thread per follower.
    from kaos_backend.log_handoff import APP_FLAG
    app.extensions[APP_FLAG] = True
    if args.run_dir:
        from kaos_backend.part_status import evaluate
        run_dir = Path(args.run_dir)
        app.extensions["kaos_parts"] = lambda: evaluate(run_dir)
    services = app.extensions["kaos"]
    services.dispose()                      # no connection may cross the fork into the workers
    application(app, services, args.socket, args.workers, args.threads).run()
    return 0


def exit_with_parent(signum: int = signal.SIGTERM) -> None:
    """Get `signum` when the parent process dies (Linux prctl PR_SET_PDEATHSIG; elsewhere nothing)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signum)
    except (OSError, AttributeError):
        pass


def application(app, services, socket_path: str, workers: int, threads: int):
    """A gunicorn application serving `app` on `unix:<socket_path>`."""
    from gunicorn.app.base import BaseApplication

    def post_fork(server, worker):
        # A stop signal that arrives before the worker has its own handlers would hit the master's inherited
        # ones and be lost (the worker then lingers until killed): hold them until post_worker_init.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        exit_with_parent()  # a worker whose master is killed stops at once (gthread also checks every second)
        services.dispose(close=False)
        json_error_pages()

    def post_worker_init(worker):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def worker_exit(server, worker):
        # A worker told to stop has answered its last request (gthread waits for its connections first):
        # nothing is left but the interpreter's teardown of Flask and SQLAlchemy, a few hundred ms of a stop.
        # A worker that failed to boot keeps its exit code (the master halts on it).
        if worker.booted and not worker.alive:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    class KaosGunicorn(BaseApplication):
        def load_config(self):
            options = {
                "bind": [f"unix:{socket_path}"],
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "timeout": REQUEST_TIMEOUT,
                "graceful_timeout": GRACEFUL_TIMEOUT,
                "preload_app": True,
                # The front door bounds the request target (KAOS_FRONT_MAX_TARGET_BYTES, 414 URI_TOO_LONG) and the
                # head (431) before the API sees a request: a second, smaller bound here answered targets between
                # 4 and 8 KiB with gunicorn's own wording instead.
                "limit_request_line": 0,
                "limit_request_field_size": 8190,  # gunicorn's most (0 also means 8190); the front's bound
                "limit_request_fields": 32768,  # gunicorn's most; the front allows 100 plus what it adds
                "accesslog": "-",
                # gunicorn's format with the client as the front door saw it (X-Forwarded-For, set on every request
                # it relays) where the peer (`%(h)s`) would be: every request comes through the API's unix socket
                "access_log_format": '%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
                "errorlog": "-",
                "logconfig_dict": gunicorn_logging(),
                "post_fork": post_fork,
                "post_worker_init": post_worker_init,
                "worker_exit": worker_exit,
                "proc_name": "kaos-backend-api",
                "control_socket_disable": True,  # gunicorn >= 24: one shared socket in $HOME otherwise
            }
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self):
            return app

    return KaosGunicorn()


def json_error_pages() -> None:
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


def gunicorn_logging(level: Optional[str] = "INFO") -> dict:
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {"console": handler, "error_console": handler},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["console"], "propagate": False},
            "gunicorn.access": {"level": level, "handlers": ["console"], "propagate": False},
        },
        "root": {"level": level, "handlers": ["console"]},
    }


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=LOG_FORMAT)
    sys.exit(main())
