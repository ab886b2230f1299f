"""Files a workload wrote, read and copied by the backend: links, special files and hard links are left out."""
import os

from kaos_backend.untrusted import copy_tree, is_real_dir, read_file


def test_copy_tree_copies_files_and_directories_and_names_what_it_leaves_out(tmp_path):
    source, target = tmp_path / "model", tmp_path / "work"
    (source / "sub").mkdir(parents=True)
    (source / "model.pkl").write_bytes(b"weights")
    (source / "sub" / "extra.txt").write_text("extra")
    secret = tmp_path / "secret"
    secret.write_text("the token")
    os.symlink(secret, source / "config")
    os.symlink(tmp_path, source / "everything")
    os.mkfifo(source / "pipe")
    os.link(secret, source / "hard")
    left_out = copy_tree(source, target)
    assert (target / "model.pkl").read_bytes() == b"weights"
    assert (target / "sub" / "extra.txt").read_text() == "extra"
    assert sorted(os.listdir(target)) == ["model.pkl", "sub"]
    assert sorted(left_out) == ["config (a symbolic link)", "everything (a symbolic link)", "hard (a hard link)",
                                "pipe (not a regular file)"]


def test_read_file_reads_regular_files_only(tmp_path):
    (tmp_path / "metrics.json").write_text('{"a": 1}')
    os.symlink(tmp_path / "metrics.json", tmp_path / "link.json")
    os.mkfifo(tmp_path / "fifo.json")
    assert read_file(tmp_path / "metrics.json", 100) == b'{"a": 1}'
    assert read_file(tmp_path / "metrics.json", 3) is None  # larger than the limit
    assert read_file(tmp_path / "link.json", 100) is None
    assert read_file(tmp_path / "fifo.json", 100) is None  # and it does not block
    assert not is_real_dir(tmp_path / "link.json") and is_real_dir(tmp_path)
