"""Hints about a bundle's scripts, written to the job's log before they run."""
from pathlib import Path
from typing import List

SHEBANG_BYTES = 256


def script_hints(script: Path) -> List[str]:
    """What is likely to stop `script` (a `train` or `serve` file) from starting: a missing file, or a first line
    that ends in a carriage return (Windows line endings: the kernel then looks for an interpreter named
    `python3\\r`, and the error names a file that seems to exist)."""
    try:
        with open(script, "rb") as handle:
            head = handle.read(SHEBANG_BYTES)
    except FileNotFoundError:
        return [f"kaos: hint: the bundle has no ./{script.name}: it is the command kaos runs"]
    except OSError:
        return []
    first_line = head.split(b"\n", 1)[0]
    if first_line.startswith(b"#!") and first_line.endswith(b"\r"):
        return [f"kaos: hint: the first line of ./{script.name} ends in a carriage return (Windows line endings): "
                f"the system looks for an interpreter named {first_line[2:-1].decode(errors='replace').strip()!r} "
                f"followed by '\\r'. Convert the file to Unix line endings (e.g. dos2unix {script.name})"]
    return []
