"""The host's CA bundle, carried into an image so that pip (and anything else using TLS) in a build trusts
what the host trusts: a TLS-inspecting proxy's CA, a company CA, on top of Debian's own list."""
import os
import re
import ssl
from pathlib import Path
from typing import List, Optional

# Debian's bundle: what update-ca-certificates writes, and where the image's ENV points pip and requests.
IMAGE_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Where update-ca-certificates looks for local CAs (searched recursively for *.crt); ours go in a folder of ours.
LOCAL_CA_DIR = "usr/local/share/ca-certificates/kaos-host"

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)


class CABundleError(ValueError):
    """The CA bundle named cannot be read, or holds no certificate."""


def host_bundle_path(explicit: Optional[str] = None) -> Optional[Path]:
    """The file of CAs this host trusts: `explicit` if given (it must exist), else `SSL_CERT_FILE`, else
    OpenSSL's default file (Debian: /usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt), else
    Debian's bundle; None when none of these exists. Raises CABundleError for a missing `explicit`."""
    if explicit:
        if not os.path.isfile(explicit):
            raise CABundleError(f"the CA bundle {explicit} does not exist")
        return Path(explicit)
    candidates = [os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile, IMAGE_BUNDLE]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return Path(candidate)
    return None


def certificates(pem: bytes) -> List[bytes]:
    """The DER bytes of each certificate in a PEM bundle, in order; raises CABundleError when there is none."""
    found = []
    for block in _PEM_CERTIFICATE.findall(pem):
        try:
            found.append(ssl.PEM_cert_to_DER_cert(block.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            continue  # a mangled block is not trusted by OpenSSL either
    if not found:
        raise CABundleError("the CA bundle holds no PEM certificate")
    return found


def missing_certificates(host_pem: bytes, image_pem: bytes) -> List[bytes]:
    """The host's certificates (DER) that the image's bundle lacks, in the host bundle's order, no duplicates."""
    present = set(certificates(image_pem)) if image_pem.strip() else set()
    missing = []
    for der in certificates(host_pem):
        if der not in present:
            present.add(der)
            missing.append(der)
    return missing


def add_local_cas(rootfs: Path, ders: List[bytes]) -> List[Path]:
    """Write each certificate as a local CA of the root filesystem (`/usr/local/share/ca-certificates/kaos-host/
    host-<n>.crt`), where the image's update-ca-certificates keeps it in the bundle on every later run (an
    `apt-get install` in a build that runs it does not drop it). Returns the files written."""
    folder = rootfs / LOCAL_CA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number, der in enumerate(ders, start=1):
        path = folder / f"host-{number}.crt"
        path.write_text(ssl.DER_cert_to_PEM_cert(der))
        written.append(path)
    return written
