"""How a client connection (client.Client) waits and ends: its one deadline (`arm`, checked by the server's tick),
what counts as waiting between requests (the connection cap may close those), the answer the front gives itself
before closing (`refuse`, then lingering as nginx does), and closing: a close waits for the bytes written to be
sent, for the send timeout at most (a client that reads none of them is aborted then)."""
import time
from typing import Callable

from kaos_backend.front.heads import HttpError
from kaos_backend.front.reading import CLOSED, HEAD, LINGER


class ConnectionLifetime:
    """The waiting and ending side of client.Client (a mixin: Client holds the attributes)."""
    __slots__ = ()

    # -- the deadline
    def arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self.deadline, self.on_deadline = time.monotonic() + seconds, callback

    def disarm(self) -> None:
        self.deadline = self.on_deadline = None

    def expire(self, now: float) -> None:
        """Called by the server's tick: run the deadline's action if it has passed."""
        if self.deadline is not None and now >= self.deadline:
            callback = self.on_deadline
            self.disarm()
            callback()

    def waiting(self) -> bool:
        """Between requests: nothing in progress, held or being read, nothing left to send (a connection that may
        be closed to make room at the connection cap: one with bytes unsent would stay open, out of the count, for
        as long as its client does not read them)."""
        return (self.state == HEAD and self.active is None and not self.queue and not self.backlog
                and self.reader.request is None and self.refusal is None
                and not self.transport.get_write_buffer_size())

    def _idle(self) -> None:
        self.arm(self.config.keepalive_timeout, self.close)

    # -- ending
    def refuse(self, error: HttpError) -> None:
        """A request the front answers itself and then closes: the answer, a FIN, and the rest of what the client
        sends is read and dropped for a moment (a close with unread bytes would reset the connection and could
        destroy the answer on its way)."""
        if self.state in (LINGER, CLOSED):
            return
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        self.state = LINGER
        self.transport.write(error.response())
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.linger_until = time.monotonic() + self.config.lingering_time
        self._linger()

    def _linger(self) -> None:
        """While lingering: closed once nothing came for `lingering_timeout`, or `lingering_time` after the answer
        however much comes (nginx's lingering_timeout and lingering_time)."""
        self.deadline = min(time.monotonic() + self.config.lingering_timeout, self.linger_until)
        self.on_deadline = self.close

    def close(self) -> None:
        """Close once the bytes written are sent; aborted if the client takes none of them for the send
        timeout."""
        if self.state != CLOSED:
            self.state = CLOSED
            self.disarm()
            self.transport.close()
            if self.transport.get_write_buffer_size():
                self.arm(self.config.send_timeout, self._drop_unsent)

    def _drop_unsent(self) -> None:
        """A closed connection's client read none of what was left to send for the send timeout (`close`)."""
        self.transport.abort()

    def abort(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self.disarm()
            self.transport.abort()
