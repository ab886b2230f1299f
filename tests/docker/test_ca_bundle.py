"""Which of the host's CAs an image lacks, and the base image's recipe digest (no engine needed)."""
from pathlib import Path

import pytest

from kaos_backend.images import base_image as base
from kaos_backend.images import ca_bundle

DEBIAN_BUNDLE = Path(ca_bundle.IMAGE_BUNDLE)


@pytest.fixture
def three_pems():
    if not DEBIAN_BUNDLE.is_file():
        pytest.skip("no Debian CA bundle on this host")
    blocks = ca_bundle._PEM_CERTIFICATE.findall(DEBIAN_BUNDLE.read_bytes())
    return blocks[:3]


def test_missing_certificates_are_the_hosts_not_in_the_image_in_order_once(three_pems):
    first, second, third = three_pems
    host = b"\n".join([first, b"# a comment", third, second, third])
    missing = ca_bundle.missing_certificates(host, first + b"\n")
    assert missing == ca_bundle.certificates(third + b"\n" + second)


def test_an_empty_image_bundle_lacks_everything_and_a_bundle_without_certificates_is_refused(three_pems):
    assert len(ca_bundle.missing_certificates(b"\n".join(three_pems), b"")) == 3
    with pytest.raises(ca_bundle.CABundleError):
        ca_bundle.certificates(b"no certificate here")


def test_local_cas_are_written_one_per_file(three_pems, tmp_path):
    written = ca_bundle.add_local_cas(tmp_path, ca_bundle.certificates(b"\n".join(three_pems)))
    assert [path.name for path in written] == ["host-1.crt", "host-2.crt", "host-3.crt"]
    assert all(path.parent == tmp_path / ca_bundle.LOCAL_CA_DIR for path in written)
    assert ca_bundle.certificates(written[1].read_bytes()) == ca_bundle.certificates(three_pems[1])


def test_the_recipe_digest_follows_what_is_inside(tmp_path):
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(b"one")
    recipe = base.Recipe(ca_bundle=bundle)
    assert base.Recipe(ca_bundle=bundle, tag="other:tag", mirror="http://mirror.example/debian").digest() \
        == recipe.digest()
    assert base.Recipe(ca_bundle=bundle, suite="trixie").digest() != recipe.digest()
    assert base.Recipe(ca_bundle=bundle, packages=base.PACKAGES[:-1]).digest() != recipe.digest()
    assert base.Recipe(ca_bundle=None).digest() != recipe.digest()
    before = recipe.digest()
    bundle.write_bytes(b"two")  # the digest reads the bundle when asked: a changed bundle is a new recipe
    assert recipe.digest() != before


def test_an_explicit_ca_bundle_must_exist(tmp_path):
    with pytest.raises(ca_bundle.CABundleError, match="does not exist"):
        ca_bundle.host_bundle_path(str(tmp_path / "missing.crt"))
