"""kaos 1.x's REST objects, written from the reference alone (kaos-features.md §5.1, and §5.2-§5.5 for the answers
that 1.x sent as plain dicts), and a strict decoder: what a 1.x client or SDK expects of every answer. Deliberately
not kaos_model.wire: these check that one.

`decode(Type, value)` raises AssertionError naming the field when a required field is missing or a field has
another type; fields the reference does not name are allowed (kaos 2's additions)."""
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union


@dataclass
class Error:
    error_code: str
    message: str


@dataclass
class DataDescriptor:
    repo: str
    commit: str
    path: str
    branch: str = "master"
    author: Optional[str] = None


@dataclass
class PartitionInfo:
    datum_id: str
    code: DataDescriptor
    data: DataDescriptor
    image: DataDescriptor
    output: DataDescriptor
    score: Optional[str] = None
    hyperparams: Optional[DataDescriptor] = None


@dataclass
class SubmissionInfo:
    job_id: str
    state: str
    started: str
    duration: int  # seconds
    progress: str
    hyperopt: Optional[str] = None


@dataclass
class JobInfo:
    job_id: str
    state: str
    available_metrics: List[str]
    process_time: int
    partitions: List[PartitionInfo]


@dataclass
class ModelInfo:
    user: str
    commit_id: str
    size: int  # bytes
    path: str
    base_path: str
    model_id: str
    created_at: str


@dataclass
class ServeInfo:
    name: str
    url: str
    user: str
    state: str
    created_at: str
    code: Optional[DataDescriptor] = None
    image: Optional[str] = None
    model: Optional[ModelInfo] = None


@dataclass
class WorkspaceInfo:
    name: str
    pipelines: List[str]
    repos: List[str]


@dataclass
class TrainJobListing:
    training: List[SubmissionInfo]
    building: List[SubmissionInfo]
    ingesting: List[SubmissionInfo]


# -- the dict answers of §5.2-§5.5 ---------------------------------------------------------------------------------
@dataclass
class WorkspaceNames:  # GET /workspace
    names: List[str]


@dataclass
class WorkspaceCreated:  # POST /workspace/<ws>: values "effectively null" in 1.x
    build_train: Any
    build_serve: Any
    build_notebook: Any


@dataclass
class GlobName:  # every upload but params
    glob_name: str


@dataclass
class ParamsGlob:  # POST /data/<ws>/params
    glob_name: str
    params: List[Dict[str, Any]]


@dataclass
class EndpointListing:  # GET /inference/<ws>'s response
    endpoints: List[ServeInfo]
    building: List[SubmissionInfo]


@dataclass
class PipelineDefinition:  # GET /train/<ws>/inspect: "flat pipeline definition"
    image: str
    commands: List[str]
    description: str
    parallelism: int
    output_branch: str
    cpu: Any
    memory: Any
    gpu: Any
    data_name: str
    data_repo: str
    data_branch: str
    data_glob: str
    image_name: str
    image_repo: str
    image_branch: str
    image_glob: str
    hyper_name: str
    hyper_repo: str
    hyper_branch: str
    hyper_glob: str



def decode(kind: Any, value: Any, where: str = "$") -> Any:
    """`value` (decoded JSON) as `kind`: a dataclass above, `List[...]`, `Optional[...]`, `Dict[str, Any]`, str,
    int or Any. AssertionError at the first field that is missing or of another type."""
    if kind is Any:
        return value
    origin = typing.get_origin(kind)
    if origin is Union:
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        if value is None and type(None) in typing.get_args(kind):
            return None
        assert len(options) == 1, kind
        return decode(options[0], value, where)
    if origin is list:
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        (item,) = typing.get_args(kind)
        return [decode(item, element, f"{where}[{index}]") for index, element in enumerate(value)]
    if origin is dict:
        assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
        return value
    if dataclasses.is_dataclass(kind):
        assert isinstance(value, dict), f"{where}: expected an object ({kind.__name__}), got {value!r}"
        hints = typing.get_type_hints(kind)
        values = {}
        for field in dataclasses.fields(kind):
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            if field.name not in value:
                assert not required, f"{where}.{field.name}: missing ({kind.__name__} requires it)"
                continue
            values[field.name] = decode(hints[field.name], value[field.name], f"{where}.{field.name}")
        return kind(**values)
    if kind is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an int, got {value!r}"
        return value
    assert isinstance(value, kind), f"{where}: expected {kind.__name__}, got {value!r}"
    return value


def decode_response(kind: Any, body: Any) -> Any:
    """`{"response": <kind>}` (1.x's Response wrapper)."""
    assert isinstance(body, dict) and "response" in body, f"expected {{'response': ...}}, got {body!r}"
    return decode(kind, body["response"], "$.response")


def decode_paged(kind: Any, body: Any):
    """`{"page_id", "page_count", "response": <kind>}` (1.x's PagedResponse): (page_id, page_count, response)."""
    assert isinstance(body, dict), body
    for key in ("page_id", "page_count"):
        assert key in body, f"$.{key}: missing"
        decode(int, body[key], f"$.{key}")
    return body["page_id"], body["page_count"], decode_response(kind, body)
