"""Run the real `kaos` console script as a subprocess, in a given working directory."""
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple, Optional

KAOS = str(Path(sys.executable).with_name("kaos"))


class Result(NamedTuple):
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def kaos(cwd: Path, *args: str, input: Optional[str] = None, env: dict = None, timeout: float = 120,
         tty: bool = False, raw: bool = False) -> Result:
    """`kaos *args` in `cwd`; stdout and stderr are pipes, or with `tty` stdout is a pseudo-terminal (as for a
    person at a terminal: `out` then has the terminal's `\r\n` line ends). With `raw` the output is decoded as
    it was written (a `\r` stays one; by default line ends are translated to `\n`)."""
    full_env = dict(os.environ, USER="tester", COLUMNS="200", **(env or {}))
    full_env.pop("KAOS_STATE_DIR", None)
    if tty:
        return _with_terminal_stdout([KAOS, *args], cwd, input, full_env, timeout)
    if raw:
        proc = subprocess.run([KAOS, *args], cwd=cwd, input=(input or "").encode(), capture_output=True,
                              env=full_env, timeout=timeout)
        return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    proc = subprocess.run([KAOS, *args], cwd=cwd, input=input if input is not None else "",
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _with_terminal_stdout(argv, cwd, input: Optional[str], env: dict, timeout: float) -> Result:
    import pty
    import threading

    master, slave = pty.openpty()
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(argv, cwd=cwd, input=(input or "").encode(), stdout=slave, stderr=subprocess.PIPE,
                              env=env, timeout=timeout)
    finally:
        os.close(slave)
    reader.join(timeout=30)
    os.close(master)
    return Result(proc.returncode, b"".join(chunks).decode("utf-8", errors="replace"),
                  proc.stderr.decode(errors="replace"))


def assert_one_line_failure(result: Result) -> None:
    """A failure is exit 1 with exactly one non-empty line of output and no traceback."""
    lines = [line for line in result.text.splitlines() if line.strip()]
    assert result.code == 1, result
    assert "Traceback" not in result.text, result
    assert len(lines) == 1, result
