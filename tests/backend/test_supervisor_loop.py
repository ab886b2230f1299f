"""The supervisor's loop (kaos_backend.supervisor) over small real child processes: backoff, giving up on a part
that cannot start, the status file. Run in this process's main thread; a timer's SIGTERM ends the run."""
import json
import os
import signal
import sys
import threading
import time

from kaos_backend.parts import Launch, PartSpec
from kaos_backend.supervisor import Supervisor


def python_part(name: str, code: str, is_up=lambda: True) -> PartSpec:
    return PartSpec(name, lambda: Launch([sys.executable, "-c", code], dict(os.environ), is_up=is_up),
                    start_seconds=None)


def run_until(supervisor: Supervisor, done=lambda: False, timeout: float = 30.0) -> int:
    """Run until `done()` (then a SIGTERM to this process stops it), a part cannot start, or `timeout` passes."""
    finished = threading.Event()

    def stop_when_done():
        deadline = time.monotonic() + timeout
        while not finished.wait(0.05):
            if done() or time.monotonic() > deadline:
                os.kill(os.getpid(), signal.SIGTERM)
                return
    watcher = threading.Thread(target=stop_when_done, daemon=True)
    watcher.start()
    try:
        return supervisor.run()
    finally:
        finished.set()
        watcher.join()


def test_a_part_that_keeps_dying_is_restarted_with_doubling_backoff(tmp_path, caplog):
    caplog.set_level("INFO", logger="kaos_backend.supervisor")
    status = tmp_path / "parts.json"
    supervisor = Supervisor([python_part("flaky", "import time; time.sleep(0.2)")], status)

    def delays():
        return [message.rsplit(" in ", 1)[1] for message in caplog.messages if message.startswith("Restarting")]
    assert run_until(supervisor, lambda: len(delays()) >= 4) == 0
    assert delays()[:4] == ["0.5 s", "1.0 s", "2.0 s", "4.0 s"], caplog.messages
    assert "The flaky ended: exited with code 0" in caplog.messages
    part = json.loads(status.read_text())["parts"]["flaky"]
    assert part["restarts"] == 3 and part["last_exit"] == "exited with code 0" and part["state"] == "down"


def test_a_part_that_cannot_start_ends_the_run_with_its_error(tmp_path, caplog, capfd):
    code = "import sys; print('Traceback (most recent call last):', file=sys.stderr); sys.exit('KeyError: boom')"
    steady = python_part("steady", "import time; time.sleep(60)")
    supervisor = Supervisor([python_part("broken", code, is_up=lambda: False), steady], tmp_path / "parts.json")
    assert run_until(supervisor) == 1
    assert ("The broken cannot start: KeyError: boom (3 attempts in a row): stopping the backend"
            in caplog.messages), caplog.messages
    assert capfd.readouterr().err.count("KeyError: boom") == 3  # the part's stderr, passed on
    parts = json.loads((tmp_path / "parts.json").read_text())["parts"]
    assert parts["broken"]["state"] == "down" and parts["broken"]["gave_up"]
    assert parts["steady"]["state"] == "down" and supervisor.parts["steady"].process is None  # stopped too
