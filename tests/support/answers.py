"""Complete wire answers (kaos_model.wire) for scripted servers: the SDK decodes strictly, so a scripted route must
answer every field the route's class requires. Each builder takes the fields a test cares about."""
from typing import Any, Dict, Optional


def descriptor(path: str = "", author: Optional[str] = None, repo: str = "repo", commit: str = "c" * 32,
               **extra) -> Dict[str, Any]:
    return dict(repo=repo, commit=commit, path=path, branch="master", author=author, **extra)


def submission(job_id: str, state: str = "JOB_SUCCESS", started: str = "2019-07-29 15:25:45", duration: int = 1,
               progress: str = "Progress: 1 / 1 (100%)\n0 failed", **extra) -> Dict[str, Any]:
    return dict(job_id=job_id, state=state, started=started, duration=duration, progress=progress, **extra)


def train_listing(training=(), building=(), ingesting=(), **extra) -> Dict[str, Any]:
    return {"response": {"training": list(training), "building": list(building), "ingesting": list(ingesting)},
            **extra}


def inspect_answer(image_state: str = "building", image: Optional[str] = None, data_glob: str = "/data:null",
                   hyper_glob: str = "/params.null", **extra) -> Dict[str, Any]:
    return dict(image=image or "image:null", commands=["./train $KAOS_TRAIN_OUTPUT"], description="{}",
                parallelism=1, output_branch="null", cpu=0, memory="", gpu=0, data_name="data",
                data_repo="ingestion-mnist", data_branch="master", data_glob=data_glob, image_name="build-train",
                image_repo="build-train-mnist", image_branch="master", image_glob="/image:null", hyper_name="hyper",
                hyper_repo="hyper-mnist", hyper_branch="master", hyper_glob=hyper_glob, image_state=image_state,
                **extra)


def workspace_info(name: str, pipelines=(), repos=()) -> Dict[str, Any]:
    return {"name": name, "pipelines": list(pipelines), "repos": list(repos)}


def job_record(job_id: str, state: str = "JOB_SUCCESS", kind: str = "train", **extra) -> Dict[str, Any]:
    return {"response": dict(job_id=job_id, kind=kind, state=state, started="2019-07-29 15:25:45", duration=1,
                             finished=None, reason=None, **extra)}


def model_info(model_id: str, user: str = "tester") -> Dict[str, Any]:
    hex6 = model_id.rsplit(":", 1)[-1]
    return dict(user=user, commit_id="j" * 32, size=1, path=f"/{hex6}/model/", base_path=f"/{hex6}",
                model_id=model_id, created_at="2019-07-29 15:25:45")
