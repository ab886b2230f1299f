"""Readiness probes as the kubelet runs them against a container of the fake's pod network: `httpGet` (a status
from 200 to 399 is a success) and `tcpSocket` (a connection is), on 127.0.0.1 at the local port the container's
declared port was published on. `exec` probes are not modelled (they count as a success)."""
import http.client
import socket
from typing import Dict, Optional


def resolve_port(port, container: dict) -> Optional[int]:
    """A probe's or a Service's targetPort (a number, or the name of one of the container's ports)."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return declared["containerPort"]
    return None


def probe(spec: dict, container: dict, published: Dict[int, int]) -> bool:
    """Whether one run of the probe `spec` succeeds now."""
    timeout = min(float(spec.get("timeoutSeconds", 1)), 1.0)
    for kind in ("httpGet", "tcpSocket"):
        if kind in spec:
            port = resolve_port(spec[kind].get("port"), container)
            local = published.get(port, port)
            try:
                if kind == "tcpSocket":
                    socket.create_connection(("127.0.0.1", local), timeout=timeout).close()
                    return True
                connection = http.client.HTTPConnection("127.0.0.1", local, timeout=timeout)
                try:
                    connection.request("GET", spec[kind].get("path") or "/",
                                       headers={h["name"]: h["value"] for h in spec[kind].get("httpHeaders") or []})
                    return 200 <= connection.getresponse().status < 400
                finally:
                    connection.close()
            except (OSError, http.client.HTTPException):
                return False
    return True
