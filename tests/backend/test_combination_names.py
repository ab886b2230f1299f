"""Hyperparameter combination file names are made of user data: they must stay inside their directory."""
import pytest

from kaos_backend.control.train_schedule import combination_name


def test_the_original_naming():
    assert combination_name({"degree": 3, "kernel": "poly", "gamma": 0.1}) == "degree=3_kernel=poly_gamma=0.1"


@pytest.mark.parametrize("combination", [{"a": "../../x"}, {"../..": 1}, {"a": "/etc/passwd"}, {"a": "x\\y"},
                                         {"a": "\x00"}])
def test_no_combination_escapes_its_directory(combination, tmp_path):
    name = combination_name(combination)
    assert "/" not in name and "\\" not in name and "\x00" not in name and not name.startswith(".")
    assert (tmp_path / f"{name}.json").resolve().parent == tmp_path.resolve()
