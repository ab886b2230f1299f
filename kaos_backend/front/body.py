"""A request body buffered before it goes upstream (nginx's `proxy_request_buffering on`): held in memory up to
a limit, then in a temporary file, so a slow client costs the front and not a model server's or the API's
workers. A chunked body is stored de-chunked and sent with a Content-Length. (A plain bytearray while small:
most bodies, predictions, never need a file, and making one per request showed in the front's profile.)"""
import tempfile
import time
from typing import Iterator

from kaos_backend.front.heads import HttpError

READ_SIZE = 256 * 1024


class Body:
    """`write(data)` as the body comes (HttpError 413 past `limit` bytes), then `size` and `pieces()`."""
    __slots__ = ("limit", "size", "memory", "buffer", "file", "message", "started")

    def __init__(self, limit: int, memory: int, message: str):
        self.limit = limit        # bytes the body may have
        self.size = 0
        self.memory = memory      # bytes kept in memory before the body moves to a temporary file
        self.buffer = bytearray()
        self.file = None          # a temporary file, once past `memory`
        self.message = message    # the 413's message
        self.started = time.monotonic()  # when its request's head was read

    def write(self, data) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise HttpError(413, "PAYLOAD_TOO_LARGE", self.message)
        if self.file is not None:
            self.file.write(data)
        elif self.size <= self.memory:
            self.buffer += data
        else:
            self.file = tempfile.TemporaryFile(prefix="kaos-front-body-")
            self.file.write(self.buffer)
            self.file.write(data)
            self.buffer = bytearray()

    @property
    def in_memory(self) -> bool:
        return self.file is None

    def pieces(self) -> Iterator[bytes]:
        """The body from its start, in pieces of at most READ_SIZE bytes."""
        if self.file is None:
            for start in range(0, len(self.buffer), READ_SIZE):
                yield bytes(self.buffer[start:start + READ_SIZE])
            return
        self.file.seek(0)
        while True:
            piece = self.file.read(READ_SIZE)
            if not piece:
                return
            yield piece

    def whole(self) -> bytes:
        """The body in one piece (for a body held in memory)."""
        return bytes(self.buffer) if self.file is None else b"".join(self.pieces())

    def close(self) -> None:
        self.buffer = bytearray()
        if self.file is not None:
            self.file.close()
            self.file = None
