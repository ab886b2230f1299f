"""Wire dataclasses of the REST API (reference §5.1), serialised as plain JSON dicts."""
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T", bound="Wire")


class Wire:
    """Mixin: `to_dict()` for responses, `from_dict()` that ignores unknown keys (newer servers)."""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class Error(Wire):
    error_code: str
    message: str


@dataclass
class DataDescriptor(Wire):
    repo: str
    commit: str
    path: str
    branch: str = "master"
    author: Optional[str] = None


@dataclass
class PartitionInfo(Wire):
    datum_id: str
    code: Dict[str, Any]
    data: Dict[str, Any]
    image: Dict[str, Any]
    output: Dict[str, Any]
    score: Optional[str] = None
    hyperparams: Optional[Dict[str, Any]] = None


@dataclass
class SubmissionInfo(Wire):
    job_id: str
    state: str
    started: str
    duration: Any
    progress: str = ""
    hyperopt: Optional[str] = None


@dataclass
class JobInfo(Wire):
    job_id: str
    state: str
    available_metrics: List[str] = field(default_factory=list)
    process_time: int = 0
    partitions: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class ModelInfo(Wire):
    user: str
    commit_id: str
    size: int
    path: str
    base_path: str
    model_id: str
    created_at: str


@dataclass
class ServeInfo(Wire):
    name: str
    url: str
    user: str
    state: str
    created_at: str
    code: Optional[Dict[str, Any]] = None
    image: Optional[str] = None
    model: Optional[Dict[str, Any]] = None


@dataclass
class WorkspaceInfo(Wire):
    name: str
    pipelines: List[str] = field(default_factory=list)
    repos: List[str] = field(default_factory=list)


@dataclass
class TrainJobListing(Wire):
    training: List[Dict[str, Any]] = field(default_factory=list)
    building: List[Dict[str, Any]] = field(default_factory=list)
    ingesting: List[Dict[str, Any]] = field(default_factory=list)
