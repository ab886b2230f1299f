"""Helpers for the front door's tests: raw exchanges over a socket, a tiny serve bundle whose server (standard
library only) can hang, answer a head without a body, or speak WebSocket, and finding the front's process."""
import base64
import hashlib
import http.client
import io
import os
import socket
import struct
import time
import zipfile
from typing import Optional, Tuple

import psutil
import requests

from tests.support.backend import BackendProcess

# Small bounds, so that timeouts are reached in a test (never their defaults).
FRONT_ENV = {"KAOS_FRONT_CLIENT_HEADER_TIMEOUT": "2", "KAOS_FRONT_CLIENT_BODY_TIMEOUT": "2",
             "KAOS_FRONT_PROXY_READ_TIMEOUT": "2", "KAOS_FRONT_PROXY_CONNECT_TIMEOUT": "2",
             "KAOS_FRONT_LINGERING_TIMEOUT": "1", "KAOS_FRONT_SERVE_MAX_BODY_MB": "1",
             "KAOS_FRONT_TUNNEL_IDLE_TIMEOUT": "5", "KAOS_FRONT_HEAD_HOLD_SECONDS": "1",
             "KAOS_FRONT_CLIENT_BODY_MIN_RATE": "1"}  # the slow bodies of test_buffering trickle on

# A serial server (one request at a time, as a sync worker): slow clients reaching it would stop it. /hang,
# /headonly and /ws are served in threads of their own, found by peeking at the request line.
SERVE = r'''#!/usr/bin/env python3
import base64, hashlib, http.server, json, os, socket, struct, threading, time
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hang":
            time.sleep(3600)
        if self.path == "/headonly":
            self.send_response(200); self.send_header("Content-Length", "100"); self.end_headers()
            self.wfile.flush(); time.sleep(3600)
        if self.path == "/ws":
            return self.websocket()
        if self.path == "/split":  # the head, then a moment later the body, in two writes
            self.send_response(200); self.send_header("Content-Length", "5"); self.end_headers()
            self.wfile.flush(); time.sleep(0.05); self.wfile.write(b"split"); return
        if self.path == "/unasked-101":  # switches protocols though the request did not offer to
            self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            self.wfile.flush(); time.sleep(2); return
        if self.path == "/status-99":
            self.wfile.write(b"HTTP/1.1 099 Weird\r\nContent-Length: 0\r\n\r\n"); return
        self.answer(b"")
    def do_POST(self):
        self.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
    def answer(self, body):
        out = json.dumps({"path": self.path, "size": len(body), "headers": dict(self.headers.items())}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(out))); self.end_headers()
        self.wfile.write(out)
    def websocket(self):
        accept = base64.b64encode(hashlib.sha1(self.headers["Sec-WebSocket-Key"].encode() + GUID).digest())
        self.send_response(101); self.send_header("Upgrade", "websocket"); self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode()); self.end_headers(); self.wfile.flush()
        read = self.rfile.read
        while True:
            first, second = read(2)
            size = second & 0x7F
            if size == 126: size = struct.unpack("!H", read(2))[0]
            elif size == 127: size = struct.unpack("!Q", read(8))[0]
            mask = read(4); data = bytes(b ^ mask[i % 4] for i, b in enumerate(read(size)))
            head = bytes([first]) + (bytes([size]) if size < 126 else b"\x7e" + struct.pack("!H", size))
            self.wfile.write(head + data); self.wfile.flush()
            if first & 0x0F == 8: return
    def log_message(self, *args): pass
class Server(http.server.HTTPServer):
    request_queue_size = 128
    def process_request(self, request, address):
        line = request.recv(16, socket.MSG_PEEK)
        if line.startswith((b"GET /hang", b"GET /headonly", b"GET /ws")):
            threading.Thread(target=super().process_request, args=(request, address), daemon=True).start()
        else:
            super().process_request(request, address)
print("serving", flush=True)
Server((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
'''


def serve_zip(serve: str = SERVE) -> bytes:
    buffer = io.BytesIO()
    files = {"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": "",
             "tiny/model/requirements.txt": "", "tiny/model/web-requirements.txt": "", "tiny/model/serve": serve}
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name.endswith("/serve") else 0o100644) << 16
            archive.writestr(info, text)
    return buffer.getvalue()


def deploy_endpoint(backend: BackendProcess, workspace: str, timeout: float = 300, serve: str = SERVE) -> str:
    """A running endpoint of the tiny serve bundle (`serve`, its server script) in a new workspace: its name."""
    headers = {"X-Token": backend.token}
    assert requests.post(backend.url + f"workspace/{workspace}", headers=headers, timeout=60).ok
    answer = requests.post(backend.url + f"inference/{workspace}/None", data=serve_zip(serve), timeout=60,
                           headers={**headers, "Content-Type": "application/zip"})
    assert answer.ok, answer.text
    name = answer.json()["endpoint"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        endpoints = requests.get(backend.url + f"inference/{workspace}", headers=headers, timeout=60).json()
        states = [e["state"] for e in endpoints["response"]["endpoints"] if e["name"] == name]
        if states == ["PIPELINE_RUNNING"]:
            return name
        time.sleep(0.5)
    raise AssertionError(f"endpoint {name} did not run: {backend.log()[-3000:]}")


def read_response(sock: socket.socket, method: str = "GET") -> Optional[Tuple[int, bytes, http.client.HTTPResponse]]:
    """(status, body, response) of the next response on `sock`, or None if the connection closed first."""
    response = http.client.HTTPResponse(sock, method=method)
    try:
        response.begin()
    except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
        return None
    return response.status, response.read(), response


def health_request(backend: BackendProcess) -> bytes:
    return (b"GET /api/health HTTP/1.1\r\nHost: kaos\r\nX-Token: %s\r\n\r\n" % backend.token.encode())


def exchange(backend: BackendProcess, data: bytes, timeout: float = 20) -> Tuple[Optional[int], bytes, bool]:
    """Send `data` raw; (status or None, body, whether the connection was closed after the answer): a connection
    still open answers a follow-up /api/health."""
    with socket.create_connection(("127.0.0.1", backend.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        first = read_response(sock)
        if first is None:
            return None, b"", True
        if first[2].will_close:
            return first[0], first[1], True
        try:
            sock.sendall(health_request(backend))
        except (BrokenPipeError, ConnectionResetError):
            return first[0], first[1], True
        second = read_response(sock)
        return first[0], first[1], second is None


def front_process(backend: BackendProcess) -> psutil.Process:
    for child in psutil.Process(backend.process.pid).children(recursive=True):
        try:
            if "kaos_backend.front" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("no front process")


# -- a WebSocket client, just enough for an echo: masked frames out, unmasked in
def websocket_handshake(sock: socket.socket, path: bytes) -> bytes:
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: kaos\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n" % (path, key))
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        if not data:
            break
        head += data
    expected = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    assert b"sec-websocket-accept: " + expected.lower() in head.lower(), head
    return head


def websocket_send(sock: socket.socket, data: bytes, opcode: int = 1) -> None:
    mask = os.urandom(4)
    size = len(data)
    length = bytes([0x80 | size]) if size < 126 else b"\xfe" + struct.pack("!H", size)
    sock.sendall(bytes([0x80 | opcode]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            raise ConnectionError("closed")
        data += piece
    return data


def websocket_receive(sock: socket.socket) -> Tuple[int, bytes]:
    first, second = _exactly(sock, 2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", _exactly(sock, 2))[0]
    return first & 0x0F, _exactly(sock, size)
