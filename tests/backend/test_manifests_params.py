import json

import pytest

from kaos_backend.errors import BadRequest, InvalidHyperparams, InvalidManifest
from kaos_backend.hyperparams import MAX_COMBINATIONS, expand_grid, parse_parallelism, parse_params
from kaos_backend.manifests import ManifestEntry, read_manifest


@pytest.fixture
def manifest(tmp_path):
    def write(text):
        path = tmp_path / "data.mf"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path
    return write


def line(url="https://example.com/a.csv", path="training/a.csv", **extra):
    return json.dumps({"url": url, "path": path, **extra})


def test_manifest_valid(manifest):
    text = "\n".join([line(), "", line("http://h:8080/b?x=1", "./validation//b.csv", size=3), "  "]) + "\n"
    assert read_manifest(manifest(text)) == [ManifestEntry("https://example.com/a.csv", "training/a.csv"),
                                             ManifestEntry("http://h:8080/b?x=1", "validation/b.csv")]


@pytest.mark.parametrize("text, message", [
    ("", "at least one line"),
    ("\n\n", "at least one line"),
    ("not json", "line 1 is not valid JSON"),
    ("[" * 100000, "line 1 is not valid JSON"),
    (line() + "\n[1, 2]", "line 2 is not a JSON object"),
    (json.dumps({"path": "a"}), "line 1: 'url' must be an http or https URL"),
    (line(url="ftp://host/a"), "'url' must be an http or https URL"),
    (line(url="file:///etc/passwd"), "'url' must be an http or https URL"),
    (line(url="https:///nohost"), "'url' must be an http or https URL"),
    (line(url=5), "'url' must be"),
    (json.dumps({"url": "https://h/a"}), "'path' must be a string"),
    (line(path="/etc/passwd"), "not a safe relative path: it is absolute"),
    (line(path="C:/x"), "it is absolute"),
    (line(path="../up.csv"), "'..' component"),
    (line(path="a/../../up.csv"), "'..' component"),
    (line(path="a\\b"), "backslash"),
    (line(path=""), "it is empty"),
    (line(path="dir/"), "names a directory"),
    (line(path="."), "names a directory"),
    (line() + "\n" + line(url="https://h/other"), "line 2: path 'training/a.csv' is already used on line 1"),
])
def test_manifest_invalid(manifest, text, message):
    with pytest.raises(InvalidManifest, match=message.replace("(", r"\(").replace("?", r"\?")):
        read_manifest(manifest(text))


def test_manifest_not_utf8(manifest):
    with pytest.raises(InvalidManifest, match="line 1 is not UTF-8"):
        read_manifest(manifest(b"\xff\xfe{}"))


def test_grid_of_twelve_keeps_key_order():
    params = parse_params(b'{"degree": [3, 5], "kernel": ["linear", "poly"], "gamma": [10, 0.1, 0.01]}')
    grid = expand_grid(params)
    assert len(grid) == 12
    assert all(list(combination) == ["degree", "kernel", "gamma"] for combination in grid)
    assert grid[0] == {"degree": 3, "kernel": "linear", "gamma": 10}
    assert grid[1] == {"degree": 3, "kernel": "linear", "gamma": 0.1}
    assert grid[-1] == {"degree": 5, "kernel": "poly", "gamma": 0.01}
    assert len({json.dumps(combination) for combination in grid}) == 12


def test_empty_params_is_an_empty_grid():
    assert parse_params(b"{}") == {}
    assert expand_grid({}) == []


def test_single_key():
    assert expand_grid(parse_params(b'{"a": [1, "x", true, null]}')) == [{"a": 1}, {"a": "x"}, {"a": True},
                                                                          {"a": None}]


@pytest.mark.parametrize("data, message", [
    (b"", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object of lists"),
    (b'"x"', "must be a JSON object of lists"),
    (b'{"lr": 0.1}', "'lr' must be a non-empty list of values, got 0.1"),
    (b'{"lr": "0.1"}', "'lr' must be a non-empty list"),
    (b'{"ok": [1], "lr": []}', "'lr' must be a non-empty list of values, got \\[\\]"),
    (b'{"lr": {"a": [1]}}', "'lr' must be a non-empty list"),
    (b'{"lr": [[1, 2]]}', "'lr' must list plain values"),
    (b'{"lr": [{"a": 1}]}', "'lr' must list plain values"),
    (b'{"": [1]}', "names must be non-empty"),
    (b'{"a": [NaN]}', "not valid JSON"),
    (b'{"a": [1e999]}', "out of range"),
    (b'{"a": [-Infinity]}', "not valid JSON"),
    (b'{"a": [1], "a": [2]}', "appears twice"),
    (b"\xff", "not UTF-8"),
    (b"[" * 100000, "nested too deeply"),
])
def test_params_invalid(data, message):
    with pytest.raises(InvalidHyperparams, match=message):
        parse_params(data)


def test_params_grid_size_limit():
    params = {f"k{index}": list(range(10)) for index in range(5)}  # 100000 combinations
    with pytest.raises(InvalidHyperparams, match=f"100000 combinations; the limit is {MAX_COMBINATIONS}"):
        parse_params(json.dumps(params).encode())


@pytest.mark.parametrize("text, value", [(None, 1), ("", 1), ("1", 1), ("40", 40), (3, 3)])
def test_parallelism(text, value):
    assert parse_parallelism(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "two", "1_0", "9999999", " 4 ", "+4", "04", "4\n", " ", True])
def test_parallelism_invalid(text):
    with pytest.raises(BadRequest, match="parallelism must be a whole number of at least 1"):
        parse_parallelism(text)
