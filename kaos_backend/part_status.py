"""The state of the backend's parts (front, api, scheduler) as the supervisor sees it, shared through one JSON
file in the runtime directory, and the health verdict drawn from it. Standard library only: the front door
reads it too, and must not need the database (or Flask) to say that the API is down.

The status file (written atomically by `kaos_backend.supervisor` on every change)::

    {"supervisor": <pid>, "parts": {"front": {"state": "up", "pid": 4242, "restarts": 0,
                                               "last_exit": "killed by signal 9 (SIGKILL)", "restart_at": null,
                                               "gave_up": false, "since": <epoch seconds>},
                               "api": {...}, "scheduler": {...}}}

`since` is when the part started, then when it was up; `restart_at` when a part that is down starts again;
`gave_up` when it will not (it could not start).

`state` is "starting" (its process runs, not up yet), "up", "down" (no process: restart pending, or given up)
or "stopping". The scheduler is also "down" while its process exists but its heartbeat (a file it writes after
every tick) is older than HEARTBEAT_STALE_SECONDS.

The scheduler also writes `engine.json` beside its heartbeat when the executor runs workloads on an engine (the
Docker engine, the Kubernetes API server):
`{"state": "up"|"down"|"waiting", "name": "the Docker engine", "since": <epoch seconds>, "reason", "error"}`,
shown as the part `engine` while the scheduler is up; "down" makes the health unhealthy, naming it. "waiting"
(control/engine_watch.py) says that a request of the scheduler's tick has not been answered yet, with
`"waiting": {"what": "POST /api/v1/namespaces/kaos/secrets", "since": <epoch seconds>, "bound": <seconds the
client waits at most>}`: the health names the engine, and the scheduler, whose heartbeat stops while it waits, is
up with `waiting_on: "engine"` for as long as the request may take and WAITING_GRACE_SECONDS more (a scheduler
still starting too: its first tick, which its first heartbeat follows, waits on the engine).

The heartbeat holds the scheduler's role among the replicas of a backend (kaos_backend.leadership), shown as the
scheduler part's `role` ("leader" or "standby") and `leader` (who leads, when known: on the leader, itself). A
standby is up: a replica needs no scheduler of its own to serve. It is "down" (the health verdict names it) once
it has seen no scheduler lead for NO_LEADER_SECONDS, the bound within which one takes over.
"""
import json
import os
import time
from pathlib import Path
from typing import Dict, NamedTuple, Optional

PART_NAMES = ("front", "api", "scheduler")
HEARTBEAT_STALE_SECONDS = 10.0
STATUS_FILE = "parts.json"
HEARTBEAT_FILE = "scheduler.heartbeat"
FRONT_HEARTBEAT_FILE = "front.heartbeat"  # touched by the front's event loop every FRONT_HEARTBEAT_SECONDS
FRONT_HEARTBEAT_SECONDS = 1.0
ENGINE_FILE = "engine.json"  # the engine the workloads run on, as the scheduler sees it (control/engine_watch.py)
NO_LEADER_SECONDS = 15.0  # kaos_backend.scheduler_lock.TAKEOVER_SECONDS
WAITING_GRACE_SECONDS = 10.0  # past a waiting request's bound: the scheduler is down (it should have ended it)


class Health(NamedTuple):
    """`healthy` when every part is up; `parts` as the health route shows them; `message` names the first part
    that is not up (None when healthy), e.g. "The kaos backend's scheduler is down (killed by signal 9 (SIGKILL),
    restarting)"; `part` is that part's name."""
    healthy: bool
    parts: Dict[str, dict]
    message: Optional[str]
    part: Optional[str]


def write_status(path: Path, status: dict) -> None:
    """Replace the status file atomically (readers never see half a file)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(status))
    os.replace(temporary, path)


def read_status(path: Path) -> Optional[dict]:
    """The status file's content, or None when it is missing or unreadable."""
    try:
        status = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def write_heartbeat(path: Path, role: dict, changed: bool = True) -> None:
    """The scheduler's heartbeat: `role` (kaos_backend.leadership's status) written when it `changed` (or the file
    is missing), else the file's modification time set to now."""
    if not changed:
        try:
            os.utime(path)
            return
        except FileNotFoundError:
            pass
    write_status(path, role)


def heartbeat_age(path: Path, now: Optional[float] = None) -> Optional[float]:
    """Seconds since a part's last heartbeat (the modification time of its file: HEARTBEAT_FILE for the
    scheduler, FRONT_HEARTBEAT_FILE for the front), None without one."""
    try:
        modified = os.stat(path).st_mtime
    except OSError:
        return None
    return max(0.0, (time.time() if now is None else now) - modified)


def evaluate(run_dir: Path, now: Optional[float] = None) -> Health:
    """The health of a supervised backend from the status file and heartbeat in `run_dir`."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    status = read_status(run_dir / STATUS_FILE)
    if status is None or not isinstance(status.get("parts"), dict):
        return Health(False, {}, "The kaos backend's supervisor status is unavailable", "supervisor")
    parts = {}
    engine = read_status(run_dir / ENGINE_FILE)
    for name in PART_NAMES:
        part = dict(status["parts"].get(name) or {"state": "down"})
        if name == "scheduler":
            age = heartbeat_age(run_dir / HEARTBEAT_FILE, now)
            part["heartbeat_age"] = None if age is None else round(age, 2)
            if part.get("state") == "up" and (age is None or age > HEARTBEAT_STALE_SECONDS):
                if waits_on_engine(engine, now):
                    part["waiting_on"] = "engine"
                else:
                    part["state"] = "down"
                    part["reason"] = (f"no heartbeat for {age:.0f} s" if age is not None else "no heartbeat")
            elif part.get("state") == "starting" and waits_on_engine(engine, now) \
                    and engine["waiting"]["since"] >= (part.get("since") or 0):  # this start's, not one before
                part["state"], part["waiting_on"] = "up", "engine"  # its first tick waits on the engine
            _add_role(part, read_status(run_dir / HEARTBEAT_FILE) or {}, now)
        parts[name] = part
    if engine is not None and parts["scheduler"].get("state") == "up":  # else nobody looks at the engine
        parts["engine"] = engine
    for name, part in parts.items():
        if part.get("state") != "up":
            return Health(False, parts, describe(name, part), name)
    return Health(True, parts, None, None)


def waits_on_engine(engine: Optional[dict], now: float) -> bool:
    """The engine's status says that the scheduler's tick waits for its answer, within the request's bound and
    WAITING_GRACE_SECONDS more."""
    if not isinstance(engine, dict) or engine.get("state") != "waiting" or not isinstance(engine.get("waiting"), dict):
        return False
    since, bound = engine["waiting"].get("since"), engine["waiting"].get("bound")
    if not isinstance(since, (int, float)) or not isinstance(bound, (int, float)):
        return False
    return now <= since + bound + WAITING_GRACE_SECONDS


def _add_role(part: dict, role: dict, now: float) -> None:
    """The scheduler part's `role` and `leader` from its heartbeat; down when no scheduler has led for too long."""
    if role.get("role") not in ("leader", "standby"):
        return
    part["role"], part["leader"] = role["role"], role.get("leader")
    if role["role"] != "standby":
        return
    since = role.get("no_leader_since")
    if part.get("state") == "up" and isinstance(since, (int, float)) and now - since > NO_LEADER_SECONDS:
        part["state"] = "down"
        part["reason"] = (f"standing by, and no replica's scheduler has led for {now - since:.0f} s: "
                          f"{role.get('no_leader_reason') or 'no leader'}")


def describe(name: str, part: dict) -> str:
    """One sentence on a part that is not up, with how it ended and what happens next."""
    if name == "engine" and part.get("state") == "waiting":
        reason = part.get("reason") or f"{part.get('name') or 'the engine'} has not answered the scheduler"
        return (f"{reason[:1].upper()}{reason[1:]} ({part.get('error') or 'no answer yet'}): no workload is "
                "started, watched or stopped meanwhile")
    if name == "engine":
        reason = part.get("reason") or f"{part.get('name') or 'the engine'} does not answer"
        return (f"{reason[:1].upper()}{reason[1:]} ({part.get('error') or 'no answer'}): no workload is started, "
                "watched or stopped until it answers")
    state = part.get("state") or "down"
    details = [part["reason"]] if part.get("reason") else []
    if state == "down" and part.get("last_exit"):
        details.append(part["last_exit"])
    if state == "down" and part.get("restart_at") is not None:
        details.append("restarting")
    elif state == "down" and part.get("gave_up"):
        details.append("gave up restarting")
    elif state == "starting" and part.get("last_exit"):
        details.append(f"restarting after: {part['last_exit']}")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"The kaos backend's {name} is {state}{suffix}"
