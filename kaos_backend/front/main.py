"""The front door's process: `python -m kaos_backend.front --fd N --api PATH [--run-dir DIR] [--ready-fd N]`,
started by `kaos-backend serve` (kaos_backend.parts) on the inherited public socket. Bounds come from
`KAOS_FRONT_*` (config.py), the API's upload limit from `KAOS_MAX_UPLOAD_MB`. With --run-dir it beats there
(front.heartbeat, every second) for the supervisor, which kills a front whose loop stopped turning."""
import asyncio
import gc
import os
import signal
import socket
import sys
from pathlib import Path

from kaos_backend import log_handoff
from kaos_backend.front import routing
from kaos_backend.front.config import FrontConfig, FrontConfigError
from kaos_backend.front.endpoints import endpoint_lookup
from kaos_backend.front.follow import Follows, api_handoff, finished_query, log_reader
from kaos_backend.front.health import api_health
from kaos_backend.front.server import Front
from kaos_backend.part_status import FRONT_HEARTBEAT_FILE, FRONT_HEARTBEAT_SECONDS


def _exit_with_parent() -> None:
    """The front door lives as long as `kaos-backend serve`: a SIGTERM when its parent dies (Linux)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (the `speed` extra: less CPU per request), else asyncio's own.
    KAOS_FRONT_UVLOOP=0 keeps asyncio's even when uvloop is there."""
    if os.environ.get("KAOS_FRONT_UVLOOP", "").strip() != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def internal_front(public: Front, fd: int):
    """(a Front for the internal listener on the inherited socket `fd`, the socket): it relays the internal artifact
    routes to the same API and answers everything else 404 itself (no API, no gateway, no express lane: that
    lane is for workloads' routes)."""
    from dataclasses import replace
    internal = Front(public.loop, public.api_address, lambda name: None, replace(public.config, express=False))
    internal.api_max_body, internal.api_limit_message = public.api_max_body, public.api_limit_message
    internal.token = public.token
    internal.internal_only = True
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return internal, sock


async def _serve_both(front: Front, sock: socket.socket, internal, ready) -> None:
    """Serve the public listener and then the internal one; `ready()` once both serve."""
    internal_front_, internal_sock = internal
    public_serving = asyncio.get_running_loop().create_future()
    public = asyncio.ensure_future(front.serve(sock, lambda: public_serving.done() or public_serving.set_result(1)))
    await asyncio.wait([public, public_serving], return_when=asyncio.FIRST_COMPLETED)
    if public.done():  # it could not serve: its error
        return await public
    await asyncio.gather(public, internal_front_.serve(internal_sock, ready))


def _beat(loop: asyncio.AbstractEventLoop, heartbeat: Path) -> None:
    """Touch `heartbeat` now and every FRONT_HEARTBEAT_SECONDS from the event loop: the supervisor kills a front
    whose loop no longer turns (stopped, deadlocked; kaos_backend.parts.stale_heartbeat) and starts it again."""
    try:
        heartbeat.touch()
    except OSError:
        pass
    loop.call_later(FRONT_HEARTBEAT_SECONDS, _beat, loop, heartbeat)


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m kaos_backend.front",
                                     description="The kaos backend's front door (started by kaos-backend serve). "
                                                 "The database URL is KAOS_DATABASE_URL, the token KAOS_TOKEN.")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, inherited")
    parser.add_argument("--api", required=True, help="the API server's unix socket")
    parser.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--run-dir", help="the supervisor's runtime directory: /api/health is answered here "
                                          "while the parts' status there says the API is not up")
    parser.add_argument("--ready-fd", type=int, help="a pipe to write one byte to once serving, then close")
    parser.add_argument("--internal-fd", type=int, help="a second listening socket, inherited, where only the "
                                                        "internal artifact routes (/internal/artifacts/) answer")
    args = parser.parse_args(argv)
    database_url = os.environ.get("KAOS_DATABASE_URL", "").strip()
    if not database_url:
        parser.error("KAOS_DATABASE_URL is not set")
    try:
        config = FrontConfig.from_env()
        from kaos_backend.config import Config
        backend_config = Config.from_env()
    except (FrontConfigError, ValueError) as error:
        parser.error(str(error))
    _exit_with_parent()
    parent = os.getppid() if args.parent is None else args.parent
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    front = Front(loop, args.api, endpoint_lookup(database_url), config, backend_config.max_upload_mb)
    token = os.environ.get("KAOS_TOKEN")
    if token:
        front.token = token.encode("utf-8", "surrogateescape")
    if args.run_dir:
        front.api_down = api_health(args.run_dir, token)
    # log follows handed off by the API (kaos_backend.log_handoff) are streamed from here
    follows = Follows(loop, finished_query(database_url), log_reader(backend_config), front.log)
    routing.API_HANDOFFS[log_handoff.HEADER_NAME] = api_handoff(follows)

    def ready():
        if args.ready_fd is not None:
            try:
                os.write(args.ready_fd, b"1")
                os.close(args.ready_fd)
            except OSError:
                pass
    # Everything imported so far (SQLAlchemy's models, the standard library) lives as long as the process: out of
    # the collector's way, so that its full collections (triggered by each request's short-lived objects) do not
    # walk it again and again (it showed in the front's profile).
    gc.collect()
    gc.freeze()
    if args.internal_fd is not None:
        serving = loop.create_task(_serve_both(front, sock, internal_front(front, args.internal_fd), ready))
    else:
        serving = loop.create_task(front.serve(sock, ready))
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, serving.cancel)

    def watch_parent():
        if os.getppid() != parent:
            serving.cancel()  # the parent is gone and the death signal did not come (not Linux)
        else:
            loop.call_later(1.0, watch_parent)
    watch_parent()
    if args.run_dir:
        _beat(loop, Path(args.run_dir) / FRONT_HEARTBEAT_FILE)
    try:
        loop.run_until_complete(serving)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
