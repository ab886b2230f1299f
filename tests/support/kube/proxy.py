"""The fake cluster's kube-proxy: a Service's cluster IP and port accept TCP connections on this machine and
forward each to a ready pod the Service selects (at the local port the kubelet published the pod's targetPort
on), as kube-proxy's rules do inside a cluster.

Cluster IPs come from 127.77.0.0/16 (the fake's service CIDR): Linux treats all of 127.0.0.0/8 as this machine,
so the proxy can listen on each Service's own address without configuring anything, and two Services can both
have port 8080. So a client in the "cluster" (the backend under test) reaches a Service at `spec.clusterIP` and
its `port`, exactly as it would in a real cluster. (A Service's DNS name does not resolve here.)

One asyncio loop in a thread of its own serves every listener; a connection to a Service with no ready endpoint
is closed at once (a real cluster's would be refused).
"""
import asyncio
import ipaddress
import logging
import random
import threading
from typing import Dict, List, Optional, Tuple

from .kinds import SERVICES

log = logging.getLogger("kubefake")
SERVICE_CIDR = ipaddress.ip_network("127.77.0.0/16")


def allocate_cluster_ip(taken) -> str:
    """A free address of SERVICE_CIDR, picked at random (as the real allocator does): two fake clusters on one
    machine (tests of two checkouts at once) then seldom want the same address and port for their proxies."""
    hosts = SERVICE_CIDR.num_addresses - 2
    for _ in range(1000):
        address = str(SERVICE_CIDR.network_address + 1 + random.randrange(hosts))
        if address not in taken:
            return address
    raise RuntimeError("the fake's service CIDR is full")


class KubeProxy:
    def __init__(self, store, resolve):
        """`resolve(namespace, service, port)` → (host, port) of a ready endpoint, or None."""
        self.store = store
        self.resolve = resolve
        self.loop = asyncio.new_event_loop()
        self.listeners: Dict[Tuple[str, str], List[asyncio.AbstractServer]] = {}
        self.errors: List[str] = []   # listeners that could not be opened (an address in use), for a test to see
        self.thread = threading.Thread(target=self.loop.run_forever, name="kubefake-proxy", daemon=True)

    def routes(self, change):
        if change.resource == SERVICES:
            yield "proxy", change.obj["metadata"]["namespace"], change.obj["metadata"]["name"]

    def register(self, manager) -> None:
        manager.register("proxy", self.reconcile, self.routes)

    def start(self) -> "KubeProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        for key in list(self.listeners):
            self._call(self._close(key))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def reconcile(self, key: tuple) -> Optional[float]:
        _, namespace, name = key
        service = self.store.find(SERVICES, namespace, name)
        self._call(self._close((namespace, name)))
        if service is None or service["metadata"].get("deletionTimestamp"):
            return None
        address = service["spec"].get("clusterIP")
        if not address or address == "None" or ipaddress.ip_address(address) not in SERVICE_CIDR:
            return None
        self._call(self._open(namespace, name, address, [p["port"] for p in service["spec"].get("ports") or []]))
        return None

    async def _open(self, namespace: str, name: str, address: str, ports: List[int]) -> None:
        servers = []
        for port in ports:
            try:
                servers.append(await asyncio.start_server(
                    lambda reader, writer, port=port: self._forward(namespace, name, port, reader, writer),
                    address, port))
            except OSError as error:
                self.errors.append(f"{namespace}/{name} {address}:{port}: {error}")
        self.listeners[namespace, name] = servers

    async def _close(self, key) -> None:
        for server in self.listeners.pop(key, []):
            server.close()
            await server.wait_closed()

    async def _forward(self, namespace, name, port, reader, writer) -> None:
        target = self.resolve(namespace, name, port)
        if target is None:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                if writer.can_write_eof():
                    writer.write_eof()
            except (ConnectionError, OSError):
                writer.close()
