"""`KaosClient`: the kaos REST API (docs/rest-api.md) as Python methods — the CLI's transport and the Python SDK
(docs/sdk.md). Answers come back as the `kaos_model.wire` dataclasses the backend answers with.

Usage::

    from kaos_cli import KaosClient

    client = KaosClient("http://127.0.0.1:8080/api/", token="…", user="alice")   # or KaosClient.from_project()
    client.health().version              # HealthInfo
    client.create_workspace("mnist")     # WorkspaceCreated (.info: WorkspaceInfo)
    client.list_workspaces()             # ["mnist"] (a list of names)
    page = client.train_list("mnist", limit=50)   # TrainJobListing: the newest 50 of each list
    page.training[0].state               # SubmissionInfo
    page.continue_token                  # None on the last page, else: train_list("mnist", continue_token=...)
    client.upload_features("mnist", "data.zip").glob_name          # BundleUpload: "features:9fd9d"
    client.upload_train_source("mnist", "source.zip").job_id       # the build job, or None
    for line in client.train_logs("mnist", job_id, follow=True):   # streamed as the job writes it
        print(line)
    client.upload_serve_source("mnist", "serve.zip", model_id="1909d_5c3ca:828c4e").endpoint
    zip_path = client.serve_bundle("mnist", "serve-mnist-53d3da")   # a temporary file: remove it when done

Every method raises a `kaos_cli.errors.KaosError` subclass on failure, never a `requests` exception:

* `ConnectionProblem` (level Warning) — endpoint missing, malformed or unreachable;
* `UnauthorizedError` — HTTP 401, the backend rejected the token;
* `PlatformUnhealthy` (level Warning) — HTTP 503 `PLATFORM_UNHEALTHY`: a part of the backend (front, api,
  scheduler) is down or starting; `.part` names it, the message says how it ended (and `unhealthy_advice`,
  when given, what to do);
* `RequestError` — any other HTTP error, with the backend's `message`, `status` and `error_code`;
* `UnexpectedAnswer` — a 2xx answer that does not fit the route's wire class (names the field).

The module has no click import; progress bars (tqdm) are drawn on stderr for uploads and downloads. The HTTP
side (the request chokepoint, uploads, downloads, log streams) is `kaos_cli.transport.Transport`.
"""
from typing import Any, Dict, Iterator, Optional, Union
from urllib.parse import quote

from kaos_cli.client_waits import Waits
from kaos_cli.errors import KaosError, UnexpectedAnswer
# the transport's names that callers import from here too (timeouts, BlobNotStored, join_url, sha256_file)
from kaos_cli.transport import (CHUNK_SIZE, CONNECT_TIMEOUT, KILL_READ_TIMEOUT, READ_TIMEOUT,  # noqa: F401
                                TRANSFER_READ_TIMEOUT, UPLOAD_READ_TIMEOUT, BlobNotStored, Transport, join_url,
                                sha256_file)
from kaos_model.wire import (BundleUpload, EndpointListing, HealthInfo, JobInfoPage, JobRecord, NotebookListing,
                             ParamsUpload, TrainJobListing, TrainPipelineInfo, WireError, WorkspaceCreated,
                             WorkspaceInfo, WorkspaceNames)


class NamesPage(list):
    """`list_workspaces`' names as a list; `continue_token` is the `continue` of the next page when a page was
    asked for (`limit`/`continue_token`) and more names follow, else None (as `kaos_model.wire.Paged`)."""
    continue_token: Optional[str] = None


def _paged(items, body: dict):
    token = body.get("continue")
    items.continue_token = token if isinstance(token, str) and token else None
    return items


def _page_params(limit: Optional[int], continue_token: Optional[str]) -> Dict[str, Any]:
    return {"limit": limit, "continue": continue_token or None}


class KaosClient(Transport, Waits):
    """The kaos REST API of one backend, route by route: `KaosClient(url, token=None, user=None, timeout=120.0,
    progress=True, unhealthy_advice=None)` (see `Transport` for the arguments), or `KaosClient.from_project()`."""

    @classmethod
    def from_project(cls, directory=None, **kwargs) -> "KaosClient":
        """A client for the active context of a kaos project: the endpoint, token and user that `kaos init` /
        `kaos build deploy` wrote to `<directory>/.kaos/config` (default: `$KAOS_STATE_DIR`, else `./.kaos`).
        `kwargs` go to the constructor (`timeout`, `progress`). Requests refused with 401 go again with the url and
        token the config gives then, if they changed (a `kaos build deploy -f` since). Raises KaosError when there
        is no config or no active context."""
        from pathlib import Path

        from kaos_cli.guards import context_credentials, require_context, unhealthy_advice
        from kaos_cli.state import Config, config_path

        config = Config(Path(directory) / ".kaos" / "config" if directory is not None else config_path())
        if not config.exists:
            raise KaosError(f"{config.path} does not exist - run kaos init, or give the endpoint and token")
        name, fields = require_context(config)
        kwargs.setdefault("unhealthy_advice", unhealthy_advice(name, fields))
        kwargs.setdefault("credentials", context_credentials(config, name))
        return cls(fields.get("url"), fields.get("token"), config.user, **kwargs)

    # -- routes ----------------------------------------------------------------------------------------------
    def health(self, timeout: float = 15.0) -> HealthInfo:
        """`GET /health` → HealthInfo (`status` "ok", `version`, `executor`, `parts`: {"front"|"api"|"scheduler":
        {"state", "pid", "restarts", "last_exit", ...}}); also proves the token is accepted. A part that is not
        up: 503, raised as `PlatformUnhealthy`."""
        return self._decoded(HealthInfo, self._request("GET", "health", timeout=timeout), "GET health")

    def list_workspaces(self, limit: Optional[int] = None, continue_token: Optional[str] = None) -> NamesPage:
        """`GET /workspace?limit=&continue=` (WorkspaceNames) → the workspace names, sorted, as a list: all of
        them, or with `limit` (1 to 1000) and/or `continue_token` (the previous page's `.continue_token`) one page,
        whose `.continue_token` names the next (None on the last). 400 BAD_REQUEST for a bad limit or token."""
        body = self._request("GET", "workspace", params=_page_params(limit, continue_token))
        names = self._decoded(WorkspaceNames, body, "GET workspace")
        return _paged(NamesPage(names.names), names.extra)

    def create_workspace(self, name: str) -> WorkspaceCreated:
        """`POST /workspace/<name>` → WorkspaceCreated (the build pipelines' names; `.info` the new workspace's
        WorkspaceInfo); 409 WORKSPACE_EXISTS, 400 INVALID_WORKSPACE_NAME."""
        route = f"workspace/{quote(name, safe='')}"
        created = self._decoded(WorkspaceCreated, self._request("POST", route), f"POST {route}")
        try:
            created.info  # checked here, not when a caller first reads it
        except WireError as problem:
            raise UnexpectedAnswer(f"The backend at {self.url} answered POST {route} with a workspace that is not "
                                   f"a WorkspaceInfo: {problem}") from None
        return created

    def workspace_info(self, name: str) -> WorkspaceInfo:
        """`GET /workspace/<name>` → WorkspaceInfo (`name`, `pipelines`, `repos`); 404 WORKSPACE_NOT_FOUND."""
        route = f"workspace/{quote(name, safe='')}"
        return self._decoded(WorkspaceInfo, self._request("GET", route), f"GET {route}", response=True)

    def kill_workspace(self, name: str) -> None:
        """`DELETE /workspace/<name>`: that workspace only (exact name)."""
        self._request("DELETE", f"workspace/{quote(name, safe='')}")

    def upload_features(self, workspace: str, zip_file, digest: Optional[str] = None, inputs_follow: bool = False,
                        **resources) -> BundleUpload:
        """`POST /data/<ws>/features` with a data bundle zip → BundleUpload (`glob_name` "features:9fd9d";
        `warning` when resources asked for are not enforced). `digest`: the zip's sha256 when known; `zip_file`
        None: by `digest` alone (`BlobNotStored` when the backend lacks it); `inputs_follow`: more inputs of this
        deploy follow (no training is scheduled until they arrive). 400 INVALID_BUNDLE."""
        route = f"data/{quote(workspace, safe='')}/features"
        return self._decoded(BundleUpload, self._upload(route, zip_file, "data bundle",
                                                        _follow(resources, inputs_follow), digest=digest),
                             f"POST {route}")

    def upload_manifest(self, workspace: str, manifest_file, inputs_follow: bool = False,
                        **resources) -> BundleUpload:
        """`POST /data/<ws>/manifest` with a manifest file (JSON lines with `url` and `path`) → BundleUpload
        (`glob_name` "manifest:ab12c"). 400 INVALID_MANIFEST."""
        route = f"data/{quote(workspace, safe='')}/manifest"
        return self._decoded(BundleUpload, self._upload(route, manifest_file, "data manifest",
                                                        _follow(resources, inputs_follow),
                                                        content_type="application/octet-stream"), f"POST {route}")

    def upload_params(self, workspace: str, params_file, parallelism: Optional[int] = None,
                      inputs_follow: bool = False, **resources) -> ParamsUpload:
        """`POST /data/<ws>/params` with a JSON object of lists → ParamsUpload (`glob_name` "<hash5>" or
        "params.null", `params` every combination as a dict)."""
        route = f"data/{quote(workspace, safe='')}/params"
        answer = self._upload(route, params_file, "hyperparameters",
                              _follow(dict(resources, parallelism=parallelism), inputs_follow),
                              content_type="application/octet-stream")
        return self._decoded(ParamsUpload, answer, f"POST {route}")

    def upload_notebook_data(self, workspace: str, zip_file, digest: Optional[str] = None) -> Optional[BundleUpload]:
        """`POST /data/<ws>/notebook` with a data bundle zip for the workspace's notebooks (`digest` as in
        `upload_features`) → BundleUpload, or None from a backend that answers nothing."""
        route = f"data/{quote(workspace, safe='')}/notebook"
        answer = self._upload(route, zip_file, "data bundle", digest=digest)
        return None if answer is None else self._decoded(BundleUpload, answer, f"POST {route}")

    def delete_all_resources(self) -> None:
        """`DELETE /internal/resources`: kills every workspace and wipes the store of this backend."""
        self._request("DELETE", "internal/resources")

    # -- train -----------------------------------------------------------------------------------------------
    def upload_train_source(self, workspace: str, zip_file, cpu: Optional[Union[str, float]] = None,
                            memory: Optional[str] = None, gpu: Optional[Union[str, int]] = None,
                            digest: Optional[str] = None, inputs_follow: bool = False) -> BundleUpload:
        """`POST /train/<ws>` with a train source bundle zip (skipped by digest when the backend has it) →
        BundleUpload (`glob_name` "mnist:1909d", `job_id` the build job, None when the image is already built).
        400 INVALID_BUNDLE, 400 *_REQUEST_ERROR for resources. `digest` as in `upload_features`."""
        route = f"train/{quote(workspace, safe='')}"
        answer = self._upload(route, zip_file, "source bundle",
                              _follow({"cpu": cpu, "memory": memory, "gpu": gpu}, inputs_follow), digest=digest)
        return self._decoded(BundleUpload, answer, f"POST {route}")

    def train_list(self, workspace: str, limit: Optional[int] = None,
                   continue_token: Optional[str] = None) -> TrainJobListing:
        """`GET /train/<ws>?limit=&continue=` → TrainJobListing: `training`, `building`, `ingesting`, each a list
        of SubmissionInfo, newest first: every job, or with `limit` (1 to 1000, per list) and/or `continue_token`
        one page, whose `.continue_token` names the next page (None on the last). 400 BAD_REQUEST for a bad
        limit or token, 404 WORKSPACE_NOT_FOUND."""
        route = f"train/{quote(workspace, safe='')}"
        body = self._request("GET", route, params=_page_params(limit, continue_token))
        return _paged(self._decoded(TrainJobListing, body, f"GET {route}", response=True), body)

    def train_inspect(self, workspace: str) -> TrainPipelineInfo:
        """`GET /train/<ws>/inspect` → TrainPipelineInfo, the current train inputs as 1.x's flat pipeline
        definition: `image` ("image:null" when none; `.image_state` none|building|ready|failed), `data_glob`
        ("/data:null" when none), `hyper_glob` ("/params.null" when none), `parallelism`, `cpu`, `memory`, `gpu`,
        `output_branch` ("null" until code and data are set), ..."""
        route = f"train/{quote(workspace, safe='')}/inspect"
        body = self._request("GET", route)
        wrapped = isinstance(body, dict) and isinstance(body.get("response"), dict)  # tolerate a wrapped answer
        return self._decoded(TrainPipelineInfo, body, f"GET {route}", response=wrapped)

    def train_info(self, workspace: str, job_id: str, sort_by: Optional[str] = None, page_id: int = 0,
                   ascending: bool = False) -> JobInfoPage:
        """`GET /train/<ws>/<job_id>` → JobInfoPage (`page_id`, `page_count`, `response`: the JobInfo with ten
        partitions of that page), sorted by the metric `sort_by` (descending unless `ascending`).
        404 JOB_NOT_FOUND / METRIC_NOT_FOUND, 400 PAGE_ERROR."""
        params = {"sort_by": sort_by, "page_id": page_id, "ascending": "true" if ascending else None}
        route = f"train/{quote(workspace, safe='')}/{quote(job_id, safe='')}"
        page = self._decoded(JobInfoPage, self._request("GET", route, params=params), f"GET {route}")
        try:
            page.response.failed_partitions  # checked here, not when a caller first reads them
        except WireError as problem:
            raise UnexpectedAnswer(f"The backend at {self.url} answered GET {route} with a failed partition that "
                                   f"is not a PartitionInfo: {problem}") from None
        return page

    def train_logs(self, workspace: str, job_id: str, follow: bool = False) -> Union[str, Iterator[str]]:
        """`GET /train/<ws>/<job_id>/logs` for a train **or build** job id. Without `follow`: the whole log as
        one string of `[YYYY-MM-DD HH:MM:SS] line` records. With `follow`: an iterator of those lines as the
        job writes them; it ends once the job is terminal and its log drained (errors such as 404 are raised
        by this call, before the first line)."""
        return self._logs(f"train/{quote(workspace, safe='')}/{quote(job_id, safe='')}/logs", follow)

    def train_build_logs(self, workspace: str, job_id: str, follow: bool = False) -> Union[str, Iterator[str]]:
        """`GET /train/<ws>/build/<job_id>/logs`: like `train_logs`, for build-train job ids only."""
        return self._logs(f"train/{quote(workspace, safe='')}/build/{quote(job_id, safe='')}/logs", follow)

    def train_kill(self, workspace: str, job_id: str) -> Optional[str]:
        """`DELETE /train/<ws>/<job_id>`: kill a running train or build job; None once it is JOB_KILLED (the
        backend waits up to 30 s), else (202) the message that the kill is asked but not done yet, and why.
        400 JOB_NOT_RUNNING "Job is not running, id: X", 404 JOB_NOT_FOUND "There is no job with id: X"."""
        return _pending(self._request("DELETE", f"train/{quote(workspace, safe='')}/{quote(job_id, safe='')}",
                                      timeout=KILL_READ_TIMEOUT))

    def train_bundle(self, workspace: str, job_id: str, dest=None, include_code: bool = True,
                     include_data: bool = False, include_model: bool = True,
                     model_id: Optional[str] = None) -> str:
        """`GET /train/<ws>/<job_id>/bundle?include_code=&include_data=&include_model=&model_id=`: a finished
        train job's zip — `code/<bundle:hash>/…`, `data/<data:hash>/…`, `models/<hex6>/{model,metrics}/…` (and
        `models/<hex6>/<hash5>/<combination>.json` for hyperparameter models), only `model_id`'s model when given
        — streamed to `dest` (default: a new temporary file, which the caller removes) with a progress bar
        "  Downloading train bundle"; returns the zip's path. 404 JOB_NOT_FOUND / MODEL_NOT_FOUND, 400
        BAD_REQUEST "Job X is still running"."""
        params = {"include_code": str(bool(include_code)), "include_data": str(bool(include_data)),
                  "include_model": str(bool(include_model)), "model_id": model_id or None}
        response = self._request("GET", f"train/{quote(workspace, safe='')}/{quote(job_id, safe='')}/bundle",
                                 params=params, timeout=TRANSFER_READ_TIMEOUT, stream=True)
        return self._download(response, dest, "train bundle")

    def train_provenance(self, workspace: str, model_id: str) -> str:
        """`GET /train/<ws>/<model_id>/provenance` → the Graphviz DOT source of the model's lineage (code → build
        → image, data [+ hyperparameters] → train → model). 404 MODEL_NOT_FOUND "There is no model with id: X"."""
        body = self._request("GET", f"train/{quote(workspace, safe='')}/{quote(model_id, safe='')}/provenance")
        if isinstance(body, dict) and "response" in body:  # tolerate a wrapped answer
            body = body["response"]
        return "" if body is None else str(body)

    def job_state(self, workspace: str, job_id: str) -> JobRecord:
        """`GET /job/<ws>/<job_id>` → JobRecord (`job_id`, `kind`, `state`, `started`, `duration`, `finished`,
        `reason`) for any kind of job (`build-train`, `train`, `build-serve`, `serve`, `ingestion`); `state` is a
        `kaos_model.states.JobState` name. 404 JOB_NOT_FOUND."""
        route = f"job/{quote(workspace, safe='')}/{quote(job_id, safe='')}"
        return self._decoded(JobRecord, self._request("GET", route), f"GET {route}", response=True)

    # -- inference -------------------------------------------------------------------------------------------
    def upload_serve_source(self, workspace: str, zip_file, model_id: Optional[str] = None,
                            cpu: Optional[Union[str, float]] = None, memory: Optional[str] = None,
                            gpu: Optional[Union[str, int]] = None, digest: Optional[str] = None) -> BundleUpload:
        """`POST /inference/<ws>/<model_id>` (the literal `None` without a model) with a serve source bundle zip
        (skipped by digest when the backend has it) → BundleUpload (`glob_name` "mnist:e39c0", `endpoint`
        "serve-<ws>-<hex6>", `job_id` the build job or None). Every call creates a new endpoint.
        400 INVALID_BUNDLE, 404 MODEL_NOT_FOUND "There is no model with id: X", 400 *_REQUEST_ERROR.
        `digest` as in `upload_features`."""
        route = f"inference/{quote(workspace, safe='')}/{quote(model_id, safe='') if model_id else 'None'}"
        answer = self._upload(route, zip_file, "source bundle", {"cpu": cpu, "memory": memory, "gpu": gpu},
                              digest=digest)
        return self._decoded(BundleUpload, answer, f"POST {route}")

    def serve_list(self, workspace: str, limit: Optional[int] = None,
                   continue_token: Optional[str] = None) -> EndpointListing:
        """`GET /inference/<ws>?limit=&continue=` → EndpointListing: `endpoints` (ServeInfo: `name`, `url`, `user`,
        `state`, `created_at`, `code`, `image`, `model`; `.restarts`, `.reason`) and `building` (SubmissionInfo),
        newest first: all, or one page as in `train_list` (`.continue_token`)."""
        route = f"inference/{quote(workspace, safe='')}"
        body = self._request("GET", route, params=_page_params(limit, continue_token))
        return _paged(self._decoded(EndpointListing, body, f"GET {route}", response=True), body)

    def serve_logs(self, workspace: str, endpoint: str, follow: bool = False) -> Union[str, Iterator[str]]:
        """`GET /inference/<ws>/<endpoint>/logs`: the endpoint's log as one string, or with `follow` an iterator
        of its lines as they are written; the stream ends when the endpoint is killed. 404 PIPELINE_NOT_FOUND."""
        return self._logs(f"inference/{quote(workspace, safe='')}/{quote(endpoint, safe='')}/logs", follow)

    def serve_build_logs(self, workspace: str, job_id: str, follow: bool = False) -> Union[str, Iterator[str]]:
        """`GET /inference/<ws>/build/<job_id>/logs`: like `train_logs`, for build-serve job ids."""
        return self._logs(f"inference/{quote(workspace, safe='')}/build/{quote(job_id, safe='')}/logs", follow)

    def serve_bundle(self, workspace: str, endpoint: str, dest=None) -> str:
        """`GET /inference/<ws>/<endpoint>/bundle`: the endpoint's bundle zip (`code/<bundle:hash>/…` with the
        model's files in `model/`), streamed to `dest` — by default a new temporary file, which the caller
        removes — with a progress bar "  Downloading serve bundle"; returns the zip's path."""
        response = self._request("GET", f"inference/{quote(workspace, safe='')}/{quote(endpoint, safe='')}/bundle",
                                 timeout=TRANSFER_READ_TIMEOUT, stream=True)
        return self._download(response, dest, "serve bundle")

    def serve_provenance(self, workspace: str, endpoint: str) -> str:
        """`GET /inference/<ws>/<endpoint>/provenance` → the Graphviz DOT source of the endpoint's lineage
        (code → build → image, data + hyperparameters + code → train → model → endpoint).
        404 ALIEN_PROVENANCE_ERROR for an endpoint without a trained model."""
        body = self._request("GET", f"inference/{quote(workspace, safe='')}/{quote(endpoint, safe='')}/provenance")
        if isinstance(body, dict) and "response" in body:  # tolerate a wrapped answer
            body = body["response"]
        return "" if body is None else str(body)

    def serve_kill(self, workspace: str, endpoint: str) -> Optional[str]:
        """`DELETE /inference/<ws>/<endpoint>`: None once the endpoint's processes are gone, else (202, after 30 s)
        the message that the kill is asked but not done yet, and why. 404 PIPELINE_NOT_FOUND "Pipeline X not found"
        for anything that is not an endpoint of the workspace."""
        return _pending(self._request("DELETE", f"inference/{quote(workspace, safe='')}/{quote(endpoint, safe='')}",
                                      timeout=KILL_READ_TIMEOUT))

    # -- notebook --------------------------------------------------------------------------------------------
    def notebook_deploy(self, workspace: str, zip_file=None, data=(), model_id: Optional[str] = None,
                        cpu: Optional[Union[str, float]] = None, memory: Optional[str] = None,
                        gpu: Optional[Union[str, int]] = None, digest: Optional[str] = None) -> BundleUpload:
        """`POST /notebook/<ws>` with a notebook source bundle zip (Dockerfile + model/), or with none (`zip_file`
        and `digest` None: the default JupyterLab bundle) → BundleUpload (`glob_name`, and `.extra`'s `notebook`
        "notebook-<ws>-<user>", `job_id` its build or None, `token` shown this once, `url`). `data`: data bundle
        refs to attach read-only (`features:9fd9d`); `model_id`: a model whose files and training data to
        attach. 409 NOTEBOOK_EXISTS, 404 NOT_FOUND (data) / MODEL_NOT_FOUND, 400 INVALID_BUNDLE."""
        route = f"notebook/{quote(workspace, safe='')}"
        params = {"cpu": cpu, "memory": memory, "gpu": gpu, "data": list(data) or None, "model": model_id}
        if zip_file is None and digest is None:
            answer = self._request("POST", route, params=params, timeout=UPLOAD_READ_TIMEOUT)
        else:
            answer = self._upload(route, zip_file, "source bundle", params, digest=digest)
        return self._decoded(BundleUpload, answer, f"POST {route}")

    def notebook_list(self, workspace: str, limit: Optional[int] = None,
                      continue_token: Optional[str] = None) -> NotebookListing:
        """`GET /notebook/<ws>?limit=&continue=` → NotebookListing: `notebooks` (ServeInfo; `.restarts`,
        `.reason`, `.extra["token_fingerprint"]`) and `building` (SubmissionInfo), newest first."""
        route = f"notebook/{quote(workspace, safe='')}"
        body = self._request("GET", route, params=_page_params(limit, continue_token))
        return _paged(self._decoded(NotebookListing, body, f"GET {route}", response=True), body)

    def notebook_logs(self, workspace: str, name: str, follow: bool = False) -> Union[str, Iterator[str]]:
        """`GET /notebook/<ws>/<name>/logs`: the notebook's log (its Jupyter server's output and kaos's records)
        as one string, or with `follow` an iterator of its lines as they are written; the stream ends when the
        notebook is killed or stops (culled when idle, shut down, given up). 404 PIPELINE_NOT_FOUND."""
        return self._logs(f"notebook/{quote(workspace, safe='')}/{quote(name, safe='')}/logs", follow)

    def notebook_build_logs(self, workspace: str, job_id: str, follow: bool = False) -> Union[str, Iterator[str]]:
        """`GET /notebook/<ws>/build/<job_id>/logs`: like `train_logs`, for build-notebook job ids."""
        return self._logs(f"notebook/{quote(workspace, safe='')}/build/{quote(job_id, safe='')}/logs", follow)

    def notebook_kill(self, workspace: str, name: str) -> Optional[str]:
        """`DELETE /notebook/<ws>/<name>`: None once the notebook's processes (or container) are gone, else (202,
        after 30 s) the message that the kill is asked but not done yet, and why; its work directory is kept for
        the user's next notebook. 404 PIPELINE_NOT_FOUND."""
        return _pending(self._request("DELETE", f"notebook/{quote(workspace, safe='')}/{quote(name, safe='')}",
                                      timeout=KILL_READ_TIMEOUT))


def _pending(answer) -> Optional[str]:
    """A kill's answer: None when done (200, `null`), else the 202's message (the kill asked, not done yet)."""
    return str(answer.get("message") or "The kill is asked but not done yet") if isinstance(answer, dict) else None


def _follow(params: dict, inputs_follow: bool) -> dict:
    """`params` with `inputs_follow=true` when more inputs of the deploy follow (none otherwise: a 1.x request)."""
    return dict(params, inputs_follow="true") if inputs_follow else dict(params)
