"""The start claim of a local workload: what makes a second start of the same workload (the same job id, beside
the same log) find the first instead of running it again. A scheduler can be killed between starting a workload
and recording its executor state in SQL; the next leader then starts it again, and must get the first one back.

Three files beside the log, named after the workload's job id:

    <job>.claim   an flock taken by the start and inherited by the runner, which holds it for its whole life
    <job>.state   the executor state of that start (JSON, without the runner's pid), written before the runner is
    <job>.pid     the runner's "<pid> <start ticks>", written by the start once it is spawned and by the runner
                  itself as its first act (the start may be killed in between)

A start that gets the flock knows that no runner of the workload is alive and no other start is under way; a
start that cannot get it waits (at most CLAIM_WAIT_SECONDS) for the pid of the runner that holds it, and adopts
it. A workload that runs once (a build, an ingestion, a training partition) is adopted even after it ended (its
exit record tells how); an endpoint or a notebook (`restartable`) is started anew once its runner is gone, as a
restart is a new workload under the same name. Standard library only.
"""
import json
import os
import time
from pathlib import Path
from typing import Optional, Tuple

from kaos_backend.file_locks import try_lock

CLAIM_WAIT_SECONDS = 30.0


class ClaimBusy(RuntimeError):
    """Another start of the workload holds its claim and has not started its runner in time."""


def write_pid(path, pid: int, ticks: Optional[int]) -> None:
    """`<pid> <start ticks>` into `path`, atomically."""
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w") as handle:
        handle.write(f"{pid} {ticks if ticks is not None else ''}")
    os.replace(temporary, path)


class StartClaim:
    """`with StartClaim(log_dir, job_id, restartable) as claim:` either `claim.adopted` is the (state, pid,
    start ticks) of a start found, or this start holds the claim (`claim.fd`, to pass to the runner) and
    records what it starts (`record_state`, `record_pid`)."""

    def __init__(self, log_dir: Path, job_id: str, restartable: bool, wait: float = CLAIM_WAIT_SECONDS):
        self.restartable = restartable
        self.wait = wait
        self.claim_path = Path(log_dir) / f"{job_id}.claim"
        self.state_path = Path(log_dir) / f"{job_id}.state"
        self.pid_path = Path(log_dir) / f"{job_id}.pid"
        self.fd: Optional[int] = None
        self.adopted: Optional[Tuple[dict, int, Optional[int]]] = None

    def __enter__(self) -> "StartClaim":
        self.claim_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait
        while True:
            fd = try_lock(self.claim_path)
            if fd is None:
                self.adopted = self._recorded()
                if self.adopted is not None:  # its runner (alive: it holds the claim)
                    return self
                if time.monotonic() > deadline:
                    raise ClaimBusy(f"another start of the workload holds {self.claim_path} and has not started "
                                    f"its runner within {self.wait:.0f} s") from None
                time.sleep(0.05)
                continue
            self.adopted = None if self.restartable else self._recorded()
            if self.adopted is not None:  # it ran (or runs no more: its exit record says how)
                os.close(fd)
                return self
            self.fd = fd
            for stale in (self.state_path, self.pid_path):  # an earlier start's, whose runner is gone
                stale.unlink(missing_ok=True)
            return self

    def __exit__(self, *_exc) -> None:
        if self.fd is not None:  # the runner keeps its own descriptor of the claim, and with it the lock
            os.close(self.fd)
            self.fd = None

    def record_state(self, state: dict) -> None:
        temporary = f"{self.state_path}.{os.getpid()}"
        with open(temporary, "w") as handle:
            json.dump(state, handle)
        os.replace(temporary, self.state_path)

    def record_pid(self, pid: int, ticks: Optional[int]) -> None:
        write_pid(self.pid_path, pid, ticks)

    def _recorded(self) -> Optional[Tuple[dict, int, Optional[int]]]:
        """The state and runner of the start recorded here, or None when there is none (yet)."""
        try:
            state = json.loads(self.state_path.read_text())
            fields = self.pid_path.read_text().split()
            pid, ticks = int(fields[0]), (int(fields[1]) if len(fields) > 1 else None)
        except (OSError, ValueError, IndexError):
            return None
        return (state, pid, ticks) if isinstance(state, dict) else None
