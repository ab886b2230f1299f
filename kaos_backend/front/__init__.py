"""The backend's front door: one asyncio process on the backend's public address. `/serve-<ws>-<hex6>/<path>`
(and `/notebook-<ws>-<user>/<path>`) go to that workload's own server (the serving gateway), everything else to
the API's gunicorn on an internal socket.

Why a process of its own rather than a WSGI middleware: a prediction through gunicorn would cost a worker thread
and WSGI's plumbing; here it costs a parse and a relay. Why buffering: a request is read whole (its body in
memory, then a temporary file) before it goes upstream, so slow clients cost the front, not a model server's few
workers (nginx's proxy_request_buffering); responses stream back with backpressure.

Modules: config (bounds, KAOS_FRONT_*), parsing (llhttp via httptools), heads (heads rebuilt, JSON answers),
body (buffered request bodies), routing (where a request goes; hand-off hooks), endpoints (address cache, SQL
lookup), client (a client connection's state machine), upstream (one request upstream), tunnel (WebSocket byte
tunnels), answers (the gateway's error answers), health (the API-down answer), server (the listener, the
connection cap, deadlines), main (the process).
"""
from kaos_backend.front.config import FrontConfig
from kaos_backend.front.heads import HttpError, json_response
from kaos_backend.front.server import Front

__all__ = ["Front", "FrontConfig", "HttpError", "json_response"]
