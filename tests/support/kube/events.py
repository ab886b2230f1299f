"""Events (core/v1) as the scheduler, the kubelet and the controllers record them: `involvedObject`, `reason`,
`message`, `type` (Normal or Warning), `source.component`; a repeat of the same event counts up."""
from . import clock
from .kinds import EVENTS


def record(store, obj: dict, event_type: str, reason: str, message: str, component: str, host: str = "") -> None:
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    name = f"{meta['name']}.{reason.lower()}"[:253]
    now = clock.rfc3339()

    def again(event):
        event["count"] = event.get("count", 1) + 1
        event["lastTimestamp"] = now
        event["message"] = message
    if store.mutate(EVENTS, namespace, name, again) is not None:
        return
    source = {"component": component, **({"host": host} if host else {})}
    try:
        store.create(EVENTS, namespace, {
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": obj["kind"], "apiVersion": obj["apiVersion"], "namespace": namespace,
                               "name": meta["name"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": event_type, "source": source, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "reportingComponent": component})
    except Exception:
        pass  # the namespace is being deleted: the event has nowhere to go
