"""Times as the Kubernetes API writes them."""
import datetime
import time
from typing import Optional


def rfc3339(at: Optional[float] = None) -> str:
    """`at` (seconds since the epoch, default now) as metadata.creationTimestamp is written: whole seconds, UTC."""
    moment = datetime.datetime.fromtimestamp(time.time() if at is None else at, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(at: float) -> str:
    """`at` as the kubelet prefixes log lines with `timestamps=true`: nanoseconds (here microseconds, padded)."""
    moment = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (`sinceTime`, a condition's time). ValueError if malformed."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
