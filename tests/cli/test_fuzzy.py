import pytest

from kaos_cli.fuzzy import damerau_levenshtein, suggestions


@pytest.mark.parametrize("a, b, distance", [
    ("", "", 0), ("", "abc", 3), ("abc", "", 3), ("mnist", "mnist", 0),
    ("kitten", "sitting", 3), ("abc", "acb", 1), ("mnst2", "mnist2", 1),
    ("ca", "abc", 2),  # unrestricted Damerau-Levenshtein (optimal string alignment would say 3)
    ("abcdef", "badcfe", 3), ("a", "b", 1),
])
def test_distance(a, b, distance):
    assert damerau_levenshtein(a, b) == distance
    assert damerau_levenshtein(b, a) == distance


def test_suggestions_within_two_closest_first():
    names = ["mnist", "mnist2", "property", "mist", "other"]
    assert suggestions("mnst", names) == ["mist", "mnist", "mnist2"]
    assert suggestions("MNIST", ["mnist"]) == ["mnist"]
    assert suggestions("zzzzzz", names) == []
