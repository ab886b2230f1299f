"""Provenance graphs: the backend's Graphviz DOT source saved under `<out_dir>/<workspace>/provenance/`, and
rendered to PDF by the `dot` program when it is installed (no Python graphviz package)."""
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from kaos_cli import render
from kaos_cli.errors import KaosError

RENDER_TIMEOUT = 120  # seconds
NO_GRAPHVIZ = "install graphviz to render it as PDF"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def render_pdf(dot_path: Path, pdf_path: Path) -> Optional[str]:
    """Run `dot -Tpdf`; None when the PDF was written, else why not."""
    program = shutil.which("dot")
    if program is None:
        return NO_GRAPHVIZ
    try:
        finished = subprocess.run([program, "-Tpdf", str(dot_path), "-o", str(pdf_path)], capture_output=True,
                                  text=True, timeout=RENDER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"dot did not finish within {RENDER_TIMEOUT} s"
    except OSError as exc:
        return f"dot could not be run: {exc.strerror or exc}"
    if finished.returncode != 0 or not pdf_path.is_file():
        reason = _first_line(finished.stderr) or f"exit status {finished.returncode}"
        return f"dot could not render it: {reason}"
    return None


def save_provenance(dot_source: str, out_dir, workspace: str, name: str) -> Path:
    """Write `<out_dir>/<workspace>/provenance/<name>.dot` and, when possible, `<name>.pdf` next to it; print
    where it went and return the PDF's path (or the DOT file's when it could not be rendered)."""
    if not name or Path(name).name != name or name.startswith("."):
        raise KaosError(f"Invalid provenance name {name!r}")
    directory = Path(out_dir) / workspace / "provenance"
    dot_path = directory / f"{name}.dot"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        dot_path.write_text(dot_source if dot_source.endswith("\n") else dot_source + "\n", encoding="utf-8")
        pdf_path = directory / f"{name}.pdf"
        pdf_path.unlink(missing_ok=True)  # a PDF of an earlier graph must not pass for this one
    except OSError as exc:
        raise KaosError(f"Cannot write the provenance to {directory}: {exc.strerror or exc}") from None
    problem = render_pdf(dot_path, pdf_path)
    if problem is None:
        render.info(f"Provenance saved to {pdf_path}")
        return pdf_path
    if problem == NO_GRAPHVIZ:
        render.info(f"Provenance saved to {dot_path} ({NO_GRAPHVIZ})")
    else:
        render.warning(problem)
        render.info(f"Provenance saved to {dot_path}")
    return dot_path
