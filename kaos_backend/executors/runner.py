"""The per-workload runner: `python -m kaos_backend.executors.runner SPEC.json`, started by the local executor.

It runs the workload's command in its containment group (`containment.py`), as its user in its own view of the
files when the backend is root (`sandbox.py`), and writes every output line to the job log as `[timestamp]
line`. The workload ends when its main process exits: its output is drained for at most `drain_seconds`, every
process it left running is stopped (and named in the log), the last log record says how it ended, and the exit
record (`outcome.py`) is written atomically. SIGTERM (the executor's stop) is passed to every process of the group
and marks the end as requested. The runner is a child subreaper, so orphans of the workload are its children.

It does not depend on the backend process: its own session, SIGHUP ignored; when the backend dies and comes
back, the workload goes on and its exit record is still found.

The log is bounded: past `max_log_bytes` of output, lines are counted but not written, and one record says how
many were dropped; a line longer than 64 KiB is written in pieces.

SPEC (JSON): {"log", "exit_file", "command": [...], "cwd", "env": {...}, "what": "training", "preamble": [records
to log first, the last one "beginning to run user code"], "notes": [records that go just before that last one],
"group": containment state (`Group.to_state()`), "drain_seconds", "max_log_bytes",
"sandbox": null | {"user", "hide": [...], "writable": [...], "readable": [...], "tmp": its private /tmp,
"seal": [outputs made root's and read-only once it ends]},
"remove_at_end": [directories removed once it ends: an endpoint's socket directory],
"notify": abstract unix socket name or null,
"pid_file": null | where to write "<pid> <start ticks>" of the runner first thing (local_claim.py)}
"""
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import List, Optional, Tuple

from kaos_backend import wakeup
from kaos_backend.executors import containment, outcome, sandbox
from kaos_backend.executors.local_claim import write_pid
from kaos_backend.executors.local_process import start_ticks

PR_SET_CHILD_SUBREAPER = 36
READ_CHUNK = 65536
MAX_LINE = 64 * 1024  # a line longer than this is logged in pieces
MAX_LOG_BYTES = 64 * 1024 * 1024
LEFTOVERS_NAMED = 10  # processes named in the log line of those stopped at the end
START_RECORD = "beginning to run user code"


def _stamp(text: str) -> bytes:
    """One log record: one line, whatever `text` holds."""
    text = text.replace("\r", " ").replace("\n", " ")
    return f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {text}\n".encode("utf-8", errors="replace")


class Runner:
    def __init__(self, spec: dict):
        self.spec = spec
        self.group = containment.group_from_state(spec["group"])
        if isinstance(self.group, containment.SubreaperGroup):
            self.group.runner_pid = os.getpid()
        self.requested = False
        self.last_line = None
        self.log = None
        self.child: Optional[subprocess.Popen] = None
        self.box: Optional[dict] = None   # the sandbox as the child applies it: identity, plan, isolate_files
        self.uid_claim: Optional[int] = None
        self.log_budget = int(spec.get("max_log_bytes") or MAX_LOG_BYTES)
        self.dropped = [0, 0]   # output lines and bytes not logged (over the budget)

    # -- logging --------------------------------------------------------------------------------------------
    def record(self, text: str) -> None:
        self.log.write(_stamp(text))

    def _output(self, raw: bytes) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        if text.strip():
            self.last_line = text.strip()
        record = _stamp(text)
        if len(record) > self.log_budget:
            self.dropped[0] += 1
            self.dropped[1] += len(raw)
            return
        self.log_budget -= len(record)
        self.log.write(record)

    # -- the sandbox ----------------------------------------------------------------------------------------
    def prepare_sandbox(self) -> list:
        """Root only: claim the workload's own uid (else the shared user), give it its writable paths, plan its
        mounts. The log records that say how it runs."""
        spec = self.spec["sandbox"]
        notes = []
        try:
            identity, self.uid_claim = sandbox.claim_identity(self.group.name, spec["user"])
            who = f"uid {identity.uid}, a user of its own"
        except (OSError, RuntimeError) as error:
            identity, note = sandbox.shared_identity(spec["user"])
            notes += [f"kaos: cannot claim a uid of its own ({error}): it runs as the shared user {identity.user}"]
            notes += [f"kaos: {note}"] if note else []
            who = f"the user {identity.user} (uid {identity.uid})"
        for path in spec["writable"]:
            sandbox.chown_tree(path, identity)
        problem = sandbox.namespace_problem()
        plan = sandbox.plan_mounts(identity, spec["hide"], [(path, True) for path in spec["writable"]] +
                                   [(path, False) for path in spec["readable"]],
                                   private_tmp=spec.get("tmp") if problem is None else None)
        self.box = {"identity": identity, "plan": plan, "isolate_files": problem is None}
        return notes + [f"kaos: running as {who}" + (f"; its files are not isolated: {problem}" if problem else "")]

    # -- the workload's process -----------------------------------------------------------------------------
    def _child_setup(self) -> None:
        """In the child, before exec: join the group, then (root) the sandbox. A failure is reported on the
        output pipe and ends the child with 126."""
        try:
            self.group.attach()
            if self.box:
                sandbox.apply_in_child(self.box["plan"], self.box["identity"], self.spec["cwd"],
                                       self.box["isolate_files"])
        except BaseException as error:  # noqa: BLE001 - reported, then the child ends
            os.write(2, f"kaos: cannot start the workload in its sandbox: {error}\n".encode(errors="replace"))
            os._exit(126)

    def start(self) -> bool:
        spec = self.spec
        command = spec["command"]
        try:
            self.child = subprocess.Popen(command, cwd=spec["cwd"], env=spec.get("env"), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          preexec_fn=self._child_setup)
        except OSError as error:
            self.record(f"cannot start {command[0]!r}: {error.strerror}")
            return False
        return True

    def _on_stop(self, signum, _frame) -> None:
        self.requested = True
        self.group.signal(signum)

    def relay(self) -> None:
        """Log the child's output until it exits, then drain what is left for at most `drain_seconds`."""
        pipe = self.child.stdout.fileno()
        os.set_blocking(pipe, False)
        try:
            exited = os.pidfd_open(self.child.pid)
        except (AttributeError, OSError):
            exited = None
        pending = b""
        deadline = None
        poller = select.poll()
        poller.register(pipe, select.POLLIN)
        if exited is not None:
            poller.register(exited, select.POLLIN)
        open_pipe = True
        while open_pipe:
            if deadline is None and self.child.poll() is not None:
                deadline = time.monotonic() + float(self.spec.get("drain_seconds", 2.0))
            timeout = 200 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if deadline is not None and timeout == 0:
                break
            try:
                events = poller.poll(timeout)
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == exited:
                    poller.unregister(exited)
                    os.close(exited)
                    exited = None
                    continue
                try:
                    chunk = os.read(pipe, READ_CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    open_pipe = False
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._output(line)
                while len(pending) > MAX_LINE:
                    self._output(pending[:MAX_LINE])
                    pending = pending[MAX_LINE:]
            self._reap_orphans()
        if pending:
            self._output(pending)
        if exited is not None:
            os.close(exited)
        self.child.wait()

    def _reap_orphans(self) -> None:
        """Reap exited orphans re-parented to this subreaper (never the main child: Popen reaps that one)."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0 or (self.child and info.si_pid == self.child.pid):
                return
            try:
                os.waitpid(info.si_pid, os.WNOHANG)
            except ChildProcessError:
                return

    def stop_leftovers(self) -> Tuple[int, List[str]]:
        """Stop every process the workload left running: how many there were, and the labels of the first
        LEFTOVERS_NAMED of them."""
        pids = self.group.pids()
        labels = [containment.process_label(pid) for pid in pids[:LEFTOVERS_NAMED]]
        if pids:
            self.group.kill()
        self._reap_orphans()
        return len(pids), labels

    # -- the whole life -------------------------------------------------------------------------------------
    def run(self) -> int:
        spec = self.spec
        if spec.get("pid_file"):  # the start that spawned it may be gone before it wrote this
            write_pid(spec["pid_file"], os.getpid(), start_ticks(os.getpid()))
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        what = spec.get("what") or "workload"
        with open(spec["log"], "ab", buffering=0) as self.log:
            notes = list(spec.get("notes", []))
            if spec.get("sandbox"):
                notes += self.prepare_sandbox()
            for text in _with_notes(spec.get("preamble", []), notes):
                self.record(text)
            if self.start():
                self.relay()
                status = self.child.returncode
            else:
                status = 127
            if self.dropped[0]:
                self.record(f"kaos: {self.dropped[0]} lines ({self.dropped[1]} bytes) of output were not logged: "
                            f"the log of a workload holds at most {int(spec.get('max_log_bytes') or MAX_LOG_BYTES)}"
                            " bytes")
            count, left = self.stop_leftovers()
            for path in (spec.get("sandbox") or {}).get("seal", []):
                sandbox.seal(path)  # what it made for others is the backend's now
            for path in spec.get("remove_at_end", []):
                shutil.rmtree(path, ignore_errors=True)
            if count:
                more = f"; and {count - len(left)} more" if count > len(left) else ""
                self.record(f"kaos: stopped {count} process{'es' if count > 1 else ''} that the {what} "
                            f"left running: {'; '.join(left)}{more}")
            record = outcome.record_for(status, oom_kills=self.group.oom_kills(), memory=self.group.limits.memory,
                                        requested=self.requested, left_running=left, last_line=self.last_line)
            self.record(f"kaos: the {what} ended: {outcome.describe(record)}")
        self.group.remove()
        outcome.write_record(spec["exit_file"], record)
        wakeup.wake(spec.get("notify"))
        return 0


def _with_notes(preamble: list, notes: list) -> list:
    """The preamble with `notes` just before its last record when that is "beginning to run user code"."""
    at = len(preamble) - 1 if preamble and preamble[-1] == START_RECORD else len(preamble)
    return preamble[:at] + notes + preamble[at:]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m kaos_backend.executors.runner SPEC.json", file=sys.stderr)
        return 2
    with open(argv[0]) as handle:
        spec = json.load(handle)
    return Runner(spec).run()


if __name__ == "__main__":
    sys.exit(main())
