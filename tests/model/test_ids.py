import hashlib

import pytest

from kaos_model import JobState, PipelineState, ids


def test_hash5_takes_every_26th_char_of_sha512():
    digest = hashlib.sha512(b"bundle").hexdigest()
    assert ids.hash5(b"bundle") == digest[0] + digest[26] + digest[52] + digest[78] + digest[104]


def test_manifest_hash_is_sha256_prefix():
    assert ids.manifest_hash(b"x") == hashlib.sha256(b"x").hexdigest()[:5]


@pytest.mark.parametrize("text", ["1909d_5c3ca:828c4e", "e23a2_9fd9d_3fbf2:776614"])
def test_model_id_round_trip(text):
    assert str(ids.parse_model_id(text)) == text


@pytest.mark.parametrize("text", ["", "1909d:828c4e", "1909d_5c3ca", "1909D_5c3ca:828c4e", "1909d_5c3ca:828c4"])
def test_model_id_rejects(text):
    assert ids.parse_model_id(text) is None


@pytest.mark.parametrize("name", ["mnist", "a", "ws-1", "0abc", "a" * 40])
def test_valid_workspace_names(name):
    assert ids.workspace_name_problem(name) is None


@pytest.mark.parametrize("name", ["", None, "My", "with_underscore", "-a", "a-", "a.b", "a" * 41, "é"])
def test_invalid_workspace_names(name):
    assert ids.workspace_name_problem(name)


def test_ids_have_their_formats():
    assert ids.JOB_ID_RE.match(ids.new_job_id())
    assert ids.HEX6_RE.match(ids.new_hex6())
    assert ids.ENDPOINT_RE.match(ids.endpoint_name("mnist", "0c9718"))
    assert ids.notebook_name("ws", "ann") == "notebook-ws-ann"


def test_clean_user():
    assert ids.clean_user("j.friedman") == "jfriedman"
    assert ids.clean_user(None) == "default"
    assert ids.clean_user("../x") == "x"


def test_states_keep_the_original_numbers():
    assert [s.number for s in JobState] == [0, 1, 2, 3, 4, 5]
    assert JobState.JOB_MERGING.number == 5
    assert PipelineState.PIPELINE_STANDBY.number == 5
    assert JobState.JOB_KILLED.is_terminal and not JobState.JOB_RUNNING.is_terminal
    assert str(JobState.JOB_SUCCESS) == "JOB_SUCCESS"

