"""How one request's upstream exchange (upstream.Upstream, a part of that class kept apart by responsibility) ends
when it fails: the client leaving (abort), a connect or read timeout (502/504 from the front), a body cut short
(the client's connection cut: its status is out), an endpoint refusing or breaking off (404/503/502 with the
endpoint's state as the database has it now)."""
from kaos_backend.front import answers


class UpstreamFailures:
    """The failure side of upstream.Upstream (a mixin: Upstream holds the attributes)."""
    __slots__ = ()

    def abort(self) -> None:
        """The client is gone (or the request is abandoned): drop the upstream connection now."""
        self.done = True
        if self.hold_timer is not None:
            self.hold_timer.cancel()
        if self.transport is not None:
            self.transport.abort()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.writable is not None:
            self.writable.set()

    def _give_up(self, answer: bytes) -> None:
        self.done = True
        if self.transport is not None:
            self.transport.abort()
        self.client.answer_for(self, answer)

    def _connect_timeout(self) -> None:
        reason = f"no connection within {self.config.proxy_connect_timeout:g} s"
        self.abort()
        self.client.answer_for(self, answers.api_error(reason) if self.name is None
                               else answers.endpoint_error(self.name, reason))

    def _read_timeout(self) -> None:
        seconds = self.config.proxy_read_timeout
        self.abort()
        self.client.answer_for(self, answers.api_timeout(seconds) if self.name is None
                               else answers.endpoint_timeout(self.name, seconds))

    def _body_timeout(self) -> None:
        self.abort()
        self.client.abort()  # the status is out: only a cut connection tells the client the body is short

    async def _failed_before_head(self, reason: str) -> None:
        self.done = True
        if self.name is None:
            self.client.answer_for(self, self.client.api_down_answer(self.request) or answers.api_error(reason))
        else:
            await self._endpoint_failed(reason, refused=False)

    async def _endpoint_failed(self, reason: str, refused: bool) -> None:
        """Refused: killed a moment ago (404) or not accepting connections (503); else broke off (502, with
        the endpoint's state now: it may have crashed)."""
        self.done = True
        endpoints = self.client.front.endpoints
        endpoints.forget(self.name)
        try:
            address = await endpoints.get(self.name)
        except Exception:  # noqa: BLE001 - the database is down: the answer still goes out
            address = None if not refused else ("PIPELINE_UNKNOWN", None, None)
        if refused and self._moved(address):
            # restarted on a new socket or port since the address was cached: the request never reached the old
            # one, so it goes to the new one (once)
            self.request.rerouted = True
            self.client.reroute(self, self.request, address)
            return
        if refused:
            answer = answers.not_found(self.name) if address is None else answers.unavailable_at(self.name, address)
        else:
            answer = answers.endpoint_error(self.name, reason, address[0] if address else "PIPELINE_UNKNOWN")
        self.client.answer_for(self, answer)

    def _moved(self, address) -> bool:
        """`address` (endpoints.Address) is a running endpoint's, elsewhere than this request was sent."""
        if address is None or address[2] is None or self.request.rerouted:
            return False
        return (address[3] if len(address) > 3 and address[3] else (address[1], address[2])) != self.address
