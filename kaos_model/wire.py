"""The REST API's JSON objects (reference §5 and §5.1) as dataclasses: the one definition that the backend answers
with and that clients (the CLI, the Python SDK) read. Standard library only.

Each class declares exactly the fields of kaos 1.x, with 1.x's names, types and defaults, so a 1.x client decodes
every answer. What kaos 2 adds (a job's `reason`, a partition's `metrics`, ...) travels in `extra`, a mapping that
`to_dict()` merges into the JSON object after the declared fields (it never replaces one), and that `from_dict()`
fills with every key the class does not declare. So `Cls.from_dict(d).to_dict() == d` for any answer that
carries every declared field (kaos 2's do), newer servers' included.

`from_dict()` is strict about what 1.x requires: a declared field without a default must be present, and every
declared field must have its declared type (`str`, `int`, a list of ..., a nested object); a mismatch raises
`WireError` naming the field (`partitions[0].output.repo`)."""
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar, Union

T = TypeVar("T", bound="Wire")
_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_FIELDS: Dict[type, Tuple[Tuple[str, Any, bool], ...]] = {}
_NAMES: Dict[type, Tuple[str, ...]] = {}


class WireError(ValueError):
    """A JSON value that does not fit a wire class; the message names the field and what was wrong."""


def _extra() -> Any:
    """The `extra` field of every wire class: our additions, a mapping of JSON values."""
    return field(default_factory=dict, repr=False)


class Wire:
    """Base of the wire dataclasses: `to_dict()` for answers, `from_dict()` for clients (see the module)."""

    extra: Dict[str, Any]

    @classmethod
    def wire_fields(cls) -> Tuple[Tuple[str, Any, bool], ...]:
        """`(name, type, required)` of each declared (1.x) field, in order; `extra` is not one."""
        declared = _FIELDS.get(cls)
        if declared is None:
            hints = typing.get_type_hints(cls)
            declared = tuple((item.name, hints[item.name],
                              item.default is MISSING and item.default_factory is MISSING)
                             for item in fields(cls) if item.name != "extra")
            _FIELDS[cls] = declared
        return declared

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object: the declared fields (nested objects as dicts, `None` as null), then `extra`'s keys.
        Raises ValueError when `extra` names a declared field."""
        names = _NAMES.get(type(self))
        if names is None:
            names = _NAMES[type(self)] = tuple(name for name, _, _ in self.wire_fields())
        answer = {}
        for name in names:  # a listing makes thousands of these: scalars are taken as they are
            value = getattr(self, name)
            answer[name] = value if type(value) in _SCALAR_TYPES else _plain(value)
        for key, value in self.extra.items():
            if key in answer:
                raise ValueError(f"{type(self).__name__}.extra must not hold the declared field {key!r}")
            answer[key] = _plain(value)
        return answer

    @classmethod
    def from_dict(cls: Type[T], data: Any, where: str = "") -> T:
        """The object of a decoded JSON object `data`; keys the class does not declare go to `extra`.
        Raises WireError when `data` is not an object, lacks a required field or has a field of another type."""
        if not isinstance(data, dict):
            raise WireError(f"{where or cls.__name__}: expected a JSON object ({cls.__name__}), "
                            f"got {_describe(data)}")
        values = {}
        for name, hint, required in cls.wire_fields():
            path = f"{where}.{name}" if where else name
            if name in data:
                values[name] = _decode(hint, data[name], path)
            elif required:
                raise WireError(f"{path}: missing, and {cls.__name__} requires it")
        declared = {name for name, _, _ in cls.wire_fields()}
        return cls(**values, extra={key: value for key, value in data.items() if key not in declared})


def _added(key: str, doc: str) -> property:
    """A read-only attribute for one of kaos 2's additions: `extra[key]`, None when the server did not send it.
    (Our additions stay in `extra`, so `to_dict()` still answers the JSON as it came.)"""
    return property(lambda self: self.extra.get(key), doc=doc)


class Paged:
    """A listing that may be one page of a list route (`limit`/`continue`, docs/rest-api.md, Paging):
    `continue_token` is the `continue` the route answered beside it — the token of the next page, None on the last
    page or when no page was asked for. It is not part of `to_dict()` (the route sends it outside the listing)."""
    continue_token: Optional[str] = None


def _plain(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Wire):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _decode(hint: Any, value: Any, path: str) -> Any:
    """`value` checked against the type `hint` (nested wire objects decoded); WireError when it does not fit."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin is Union:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, value, path)
            except WireError as problem:
                problems.append(str(problem))
        raise WireError(problems[0] if len(problems) == 1 else f"{path}: expected {hint}, got {_describe(value)}")
    if origin in (list, List):
        if not isinstance(value, list):
            raise WireError(f"{path}: expected a JSON array, got {_describe(value)}")
        (item_hint,) = typing.get_args(hint) or (Any,)
        return [_decode(item_hint, item, f"{path}[{index}]") for index, item in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise WireError(f"{path}: expected a JSON object, got {_describe(value)}")
        _, item_hint = typing.get_args(hint) or (str, Any)
        return {key: _decode(item_hint, item, f"{path}.{key}") for key, item in value.items()}
    if isinstance(hint, type) and issubclass(hint, Wire):
        return hint.from_dict(value, path)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise WireError(f"{path}: expected {getattr(hint, '__name__', hint)}, got {_describe(value)}")


# -- reference §5.1 ------------------------------------------------------------------------------------------------
@dataclass
class Error(Wire):
    """Every error answer: `{"error_code": "JOB_NOT_FOUND", "message": "There is no job with id: X"}`."""
    error_code: str
    message: str
    extra: Dict[str, Any] = _extra()


@dataclass
class Response(Wire):
    """`{"response": ...}`: the 1.x wrapper of lists and infos (decode `response` with its own class)."""
    response: Any
    extra: Dict[str, Any] = _extra()


@dataclass
class PagedResponse(Wire):
    """`{"page_id", "page_count", "response"}`: `kaos train info`'s wrapper of a JobInfo."""
    page_id: int
    page_count: int
    response: Any
    extra: Dict[str, Any] = _extra()


@dataclass
class DataDescriptor(Wire):
    """Where an input or output lives, in 1.x's Pachyderm terms: `repo` (e.g. `source-train-<ws>`), `commit` (a
    stable id of the content: a blob digest's first 32 hex, a build or train job id), `path` (`/mnist:1909d`,
    a model id), `branch` and, for uploads, `author` (the user who sent it)."""
    repo: str
    commit: str
    path: str
    branch: str = "master"
    author: Optional[str] = None
    extra: Dict[str, Any] = _extra()

    model_id = _added("model_id", "An `output`'s model id (= its `path`), new in kaos 2.")
    model_path = _added("model_path", "An `output`'s model directory `/<hex6>/model/`, new in kaos 2.")
    values = _added("values", "A `hyperparams`' combination (a dict of the values), new in kaos 2.")


@dataclass
class PartitionInfo(Wire):
    """One datum of a train job (one hyperparameter combination, one model): `output.path` is the model id,
    `score` the `--sort_by` metric formatted with 4 decimals, `hyperparams` None without hyperparameters."""
    datum_id: str
    code: DataDescriptor
    data: DataDescriptor
    image: DataDescriptor
    output: DataDescriptor
    score: Optional[str] = None
    hyperparams: Optional[DataDescriptor] = None
    extra: Dict[str, Any] = _extra()

    metrics = _added("metrics", "The partition's metrics (a flat dict), new in kaos 2.")
    state = _added("state", "The partition's JobState name, new in kaos 2.")
    reason = _added("reason", "Why a failed partition failed (None otherwise), new in kaos 2.")


@dataclass
class SubmissionInfo(Wire):
    """A job in a listing: `started` is `YYYY-MM-DD HH:MM:SS` (backend local time), `duration` seconds,
    `progress` e.g. `"Progress: 3 / 12 (25%)\\n0 failed"`, `hyperopt` `"True"`/`"False"` for train jobs only."""
    job_id: str
    state: str
    started: str
    duration: int
    progress: str
    hyperopt: Optional[str] = None
    extra: Dict[str, Any] = _extra()

    reason = _added("reason", "How a finished job that did not succeed ended (None otherwise), new in kaos 2.")


@dataclass
class JobInfo(Wire):
    """`kaos train info`: a train job's state, metric names, process time (seconds) and successful partitions."""
    job_id: str
    state: str
    available_metrics: List[str]
    process_time: int
    partitions: List[PartitionInfo]
    extra: Dict[str, Any] = _extra()

    reason = _added("reason", "How the job ended when it did not succeed (None otherwise), new in kaos 2.")
    failed_count = _added("failed_count", "How many partitions failed or were killed (an int), new in kaos 2.")

    @property
    def failed_partitions(self) -> List["PartitionInfo"]:
        """The first 20 failed partitions (new in kaos 2), decoded; [] when the server sent none.
        Raises WireError when one does not fit PartitionInfo."""
        listed = self.extra.get("failed_partitions") or []
        return [PartitionInfo.from_dict(item, f"failed_partitions[{index}]") for index, item in enumerate(listed)]


@dataclass
class ModelInfo(Wire):
    """The trained model an endpoint serves: `size` in bytes (its files together), `path` `/<hex6>/model/<file>`
    (or `/<hex6>/model/` when it is several files), `base_path` `/<hex6>`, `commit_id` the train job's id."""
    user: str
    commit_id: str
    size: int
    path: str
    base_path: str
    model_id: str
    created_at: str
    extra: Dict[str, Any] = _extra()


@dataclass
class ServeInfo(Wire):
    """An endpoint: `url` `<host>/serve-<ws>-<hex6>/invocations`, `state` a PipelineState, `image`
    `build-serve-<ws>:<hash5>`, `code` its serve bundle, `model` None when it serves no trained model."""
    name: str
    url: str
    user: str
    state: str
    created_at: str
    code: Optional[DataDescriptor] = None
    image: Optional[str] = None
    model: Optional[ModelInfo] = None
    extra: Dict[str, Any] = _extra()

    restarts = _added("restarts", "How many times the serve process was restarted, new in kaos 2.")
    reason = _added("reason", "Why the endpoint is not running (None otherwise), new in kaos 2.")


@dataclass
class WorkspaceInfo(Wire):
    """A workspace: its name and the 1.x pipelines and repos it stands for."""
    name: str
    pipelines: List[str]
    repos: List[str]
    extra: Dict[str, Any] = _extra()


@dataclass
class TrainJobListing(Paged, Wire):
    """`GET /train/<ws>`'s `response`: the workspace's jobs by kind, newest first."""
    training: List[SubmissionInfo]
    building: List[SubmissionInfo]
    ingesting: List[SubmissionInfo]
    extra: Dict[str, Any] = _extra()


# -- the other answers of reference §5 (dicts in 1.x) --------------------------------------------------------------
@dataclass
class WorkspaceNames(Wire):
    """`GET /workspace`: `{"names": [...]}`."""
    names: List[str]
    extra: Dict[str, Any] = _extra()


@dataclass
class WorkspaceCreated(Wire):
    """`POST /workspace/<ws>`: 1.x answered the three build pipelines it defined (its values were effectively
    null); kaos 2 names them, and adds the workspace's info as `response`."""
    build_train: Optional[str] = None
    build_serve: Optional[str] = None
    build_notebook: Optional[str] = None
    extra: Dict[str, Any] = _extra()

    @property
    def info(self) -> Optional[WorkspaceInfo]:
        """The created workspace's WorkspaceInfo (kaos 2's `response`), None when the server sent none.
        Raises WireError when it does not fit."""
        response = self.extra.get("response")
        return None if response is None else WorkspaceInfo.from_dict(response, "response")


@dataclass
class BundleUpload(Wire):
    """An upload's answer: `glob_name` the bundle id without its slash (`mnist:1909d`, `features:9fd9d`,
    `manifest:ab12c`)."""
    glob_name: str
    extra: Dict[str, Any] = _extra()

    job_id = _added("job_id", "The build job a source upload started (None when its image is built already).")
    endpoint = _added("endpoint", "The endpoint a serve upload created (`serve-<ws>-<hex6>`).")
    url = _added("url", "Where that endpoint answers, when the server says.")
    warning = _added("warning", "Resources asked for that will not be enforced here, in one line.")


@dataclass
class ParamsUpload(Wire):
    """`POST /data/<ws>/params`: `glob_name` (`<hash5>`, or `params.null` for `{}`) and every combination."""
    glob_name: str
    params: List[Dict[str, Any]]
    extra: Dict[str, Any] = _extra()

    warning = _added("warning", "Resources asked for that will not be enforced here, in one line.")


@dataclass
class EndpointListing(Paged, Wire):
    """`GET /inference/<ws>`'s `response`: the endpoints and the serve image builds, newest first."""
    endpoints: List[ServeInfo]
    building: List[SubmissionInfo]
    extra: Dict[str, Any] = _extra()


@dataclass
class NotebookListing(Paged, Wire):
    """`GET /notebook/<ws>`'s `response`: the notebooks (ServeInfo, `url` `<host>/<name>/lab`; kaos 2 adds
    `data`, `model_id` and `token_fingerprint` to their `extra`) and the notebook image builds, newest first."""
    notebooks: List[ServeInfo]
    building: List[SubmissionInfo]
    extra: Dict[str, Any] = _extra()


@dataclass
class TrainPipelineInfo(Wire):
    """`GET /train/<ws>/inspect`: the workspace's train pipeline as 1.x's flat pipeline definition. An input
    not set yet is named as 1.x named it: `image` `"image:null"`, `image_glob` `"/image:null"`, `data_glob`
    `"/data:null"`, `hyper_glob` `"/params.null"`; `output_branch` is `"null"` until code and data are set.
    `cpu` cores, `memory` a Kubernetes quantity, `gpu` a count: 0, "" and 0 when not requested."""
    image: str
    commands: List[str]
    description: str
    parallelism: int
    output_branch: str
    cpu: float
    memory: str
    gpu: int
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
    extra: Dict[str, Any] = _extra()

    image_state = _added("image_state", "`none`, `building`, `ready` or `failed`: whether `image` is built yet.")
    source_glob = _added("source_glob", "The current source bundle (`/mnist:1909d`), None before one is set.")
    trained = _added("trained", "`{\"job_id\", \"state\"}`: the train job of these inputs that stands (they start "
                                "nothing new: trained already, training, or ended without success with these limits); "
                                "None when they train.")


@dataclass
class JobInfoPage(PagedResponse):
    """`GET /train/<ws>/<job_id>`: one page (`page_id` from 0, of `page_count`, ten partitions each) of a train
    job's JobInfo; a PagedResponse whose `response` is decoded as a JobInfo."""
    response: JobInfo


# -- kaos 2's own answers ------------------------------------------------------------------------------------------
@dataclass
class JobRecord(Wire):
    """`GET /job/<ws>/<job_id>`'s `response` (new in kaos 2): any job's `kind` (`build-train`, `train`,
    `build-serve`, `serve`, `ingestion`), `state` (a JobState name), `started`/`finished` (`YYYY-MM-DD HH:MM:SS`,
    backend local time; `finished` None while it runs), `duration` seconds and `reason` (None unless it failed)."""
    job_id: str
    kind: str
    state: str
    started: str
    duration: int
    finished: Optional[str] = None
    reason: Optional[str] = None
    extra: Dict[str, Any] = _extra()


@dataclass
class HealthInfo(Wire):
    """`GET /health` (200): `status` "ok", the backend's `version`, its `executor` (`local`) and `parts`, each
    part's (`front`, `api`, `scheduler`) `{"state", "pid", "restarts", "last_exit", ...}` ({} without a
    supervisor). Every field may be missing: any 2xx answer of the route means the backend is up."""
    status: Optional[str] = None
    version: Optional[str] = None
    executor: Optional[str] = None
    parts: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = _extra()


NO_IMAGE = "image:null"
NO_DATA = "data:null"
NO_HYPERPARAMS = "params.null"
NO_BRANCH = "null"
