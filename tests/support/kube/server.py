"""The fake API server's HTTP side: werkzeug's threaded WSGI server on 127.0.0.1 (a free port), HTTP/1.1 with
keep-alive and chunked streaming (watches, log follows), serving `routes.Routes` in a thread of its own."""
import threading

from werkzeug.serving import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass  # one line per request on stderr would drown a test's output


class HttpServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
        self.server.daemon_threads = True
        self.host, self.port = host, self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="kubefake-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HttpServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
