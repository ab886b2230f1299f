"""`kaos train get` and `kaos serve get`: a bundle zip downloaded into a temporary directory, then extracted under
`<out_dir>/<workspace>/<job_id or endpoint>/`, what goes wrong said in one line."""
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from kaos_cli import render
from kaos_cli.bundles import UnsafeArchiveError, extract_zip
from kaos_cli.errors import KaosError
from kaos_cli.output import progress_wanted


def download_and_extract(download: Callable[[Path], Path], target: Path, kind: str, name: str) -> None:
    """`download(zip_path)` saves the `<kind> bundle` ("train", "serve") of `name` (a job id, an endpoint) and
    returns its path; the archive is extracted into `target`. Raises KaosError when a member would be written
    outside `target` (then nothing is), the archive is not a valid zip, or `target` cannot be written; the
    errors of `download` pass through."""
    label = f"{kind} bundle"
    with tempfile.TemporaryDirectory(prefix=f"kaos-{kind}-") as download_dir:
        zip_path = download(Path(download_dir) / "bundle.zip")
        render.info(f"Extracting {label}: {target}")
        try:
            extract_zip(zip_path, target, label, progress=progress_wanted())
        except UnsafeArchiveError as exc:
            raise KaosError(f"Refused the {label} of {name}: its member {exc.member!r} would be written "
                            f"outside {target} (nothing was extracted)") from None
        except (zipfile.BadZipFile, ValueError, EOFError) as exc:
            raise KaosError(f"The {label} of {name} is not a valid zip archive: {exc}") from None
        except OSError as exc:
            raise KaosError(f"Cannot extract the {label} into {target}: {exc.strerror or exc}") from None
