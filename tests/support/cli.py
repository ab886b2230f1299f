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


def kaos(cwd: Path, *args: str, input: Optional[str] = None, env: dict = None, timeout: float = 120) -> Result:
    full_env = dict(os.environ, USER="tester", COLUMNS="200", **(env or {}))
    full_env.pop("KAOS_STATE_DIR", None)
    proc = subprocess.run([KAOS, *args], cwd=cwd, input=input if input is not None else "",
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_failure(result: Result) -> None:
    """A failure is exit 1 with exactly one non-empty line of output and no traceback."""
    lines = [line for line in result.text.splitlines() if line.strip()]
    assert result.code == 1, result
    assert "Traceback" not in result.text, result
    assert len(lines) == 1, result
