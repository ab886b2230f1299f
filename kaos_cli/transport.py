"""The HTTP side of `KaosClient`: one chokepoint that sends a request and turns every failure into a
`kaos_cli.errors.KaosError`, uploads (by digest when the backend has the bytes, else streamed with a progress bar),
downloads and log streams. The routes themselves are `kaos_cli.client.KaosClient`'s methods."""
import hashlib
import os
import re
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Type, TypeVar, Union
from urllib.parse import quote

from kaos_cli.errors import (ConnectionDropped, ConnectionProblem, KaosError, PlatformUnhealthy, RequestError,
                             StreamInterrupted, UnauthorizedError, UnexpectedAnswer)
from kaos_model.wire import Wire, WireError

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0  # a plain API call; uploads, kills and transfers have their own
UPLOAD_READ_TIMEOUT = 3600.0
KILL_READ_TIMEOUT = 60.0  # the backend waits up to 30 s for a killed job to stop
TRANSFER_READ_TIMEOUT = 600.0  # a bundle download may wait while the backend assembles the zip
CHUNK_SIZE = 1024 * 1024
_DEFAULT = object()  # "the client's read timeout" (None means no read timeout at all)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def join_url(base: str, path: str) -> str:
    """`http://h/api/` + `/workspace` → `http://h/api/workspace` (never a double slash)."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def _excerpt(text: str, limit: int = 160) -> str:
    """A short one-line excerpt of a non-JSON body (tags removed, whitespace collapsed)."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", text or "", flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _remove(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _ProgressReader:
    """A file wrapper that advances a tqdm bar as requests streams it (has a length, so no chunked encoding)."""

    def __init__(self, handle, size: int, bar):
        self._handle = handle
        self._size = size
        self._bar = bar

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        if chunk:
            self._bar.update(len(chunk))
        return chunk

    def __iter__(self):
        while True:
            chunk = self.read(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk


class BlobNotStored(KaosError):
    """An upload by digest alone (no file given) named bytes the backend does not store; nothing was recorded."""

    def __init__(self, digest: str):
        super().__init__(f"The backend does not store the blob {digest}: upload the file itself")
        self.digest = digest


W = TypeVar("W", bound=Wire)


def _read_timed_out(exc: Exception) -> bool:
    """Whether a requests error is a read timeout (requests raises it as ReadTimeout, or as a ConnectionError
    wrapping urllib3's ReadTimeoutError when it surfaces through a retry), not a failure to connect."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    return isinstance(exc, requests.exceptions.ReadTimeout) or "Read timed out" in str(exc)


def _seconds(value) -> str:
    if isinstance(value, tuple):
        value = value[-1]
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


class Transport:
    """One kaos backend: `url` is its API endpoint (`http://<host>:<port>/api/`), `token` its shared secret
    (sent as `X-Token`), `user` the self-declared user name sent as the `user` query parameter; `timeout` the
    seconds a request waits for an answer; `progress` draws tqdm bars on stderr for uploads and downloads;
    `unhealthy_advice` is appended to the message of a `PlatformUnhealthy` ("see <log>, or run ...") and of an
    unreachable endpoint's `ConnectionProblem`; `credentials`, when given, reads the (url, token) its source
    (the project's config) gives now, or None: a request refused with 401 is sent once more with them when they
    changed (a `kaos build deploy -f` made the backend again with a new token while a command ran: a follow
    of a log opening its stream again, typically)."""

    def __init__(self, url: Optional[str], token: Optional[str] = None, user: Optional[str] = None,
                 timeout: float = READ_TIMEOUT, progress: bool = True, unhealthy_advice: Optional[str] = None,
                 credentials: Optional[Callable[[], Optional[Tuple[str, str]]]] = None):
        self.url = url or ""
        self.token = token
        self.user = user
        self.timeout = timeout
        self.progress = progress
        self.unhealthy_advice = unhealthy_advice
        self.credentials = credentials
        self._session = None

    # -- the chokepoint --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, params: Optional[Dict[str, Any]] = None, data=None,
                 headers: Optional[Dict[str, str]] = None, timeout: Any = _DEFAULT, stream: bool = False):
        """Send one request and return the decoded JSON (or the response when `stream`); map every failure
        to a `KaosError`. `timeout` is the read timeout in seconds (default: the client's; None: wait forever,
        for streams that last as long as a job)."""
        import requests

        if not self.url.strip():
            raise ConnectionProblem("Missing endpoint! Please set with - kaos init", self.url)
        if self._session is None:
            self._session = requests.Session()
        query = {key: value for key, value in (params or {}).items() if value is not None}
        if self.user:
            query.setdefault("user", self.user)
        all_headers = {"X-Token": self.token or ""}
        all_headers.update(headers or {})
        try:
            response = self._session.request(
                method, join_url(self.url, path), params=query, data=data, headers=all_headers,
                timeout=(CONNECT_TIMEOUT, self.timeout if timeout is _DEFAULT else timeout), stream=stream)
        except requests.exceptions.InvalidHeader:
            raise KaosError("The token is not a valid header value - run kaos init again") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema):
            # (an endpoint without http:// is one given, and invalid: not "missing", as 1.x said)
            raise ConnectionProblem(f"Please run kaos init with a valid URL - {self.url} is invalid!",
                                    self.url) from None
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
            advice = f"{self.unhealthy_advice[0].upper()}{self.unhealthy_advice[1:]}" if self.unhealthy_advice else ""
            if _read_timed_out(exc):  # connected, then silence: not "unreachable"
                waited = self.timeout if timeout is _DEFAULT else timeout
                raise KaosError(f"The backend at {self.url} accepted the connection but did not answer within "
                                f"{_seconds(waited)} s: is it stopped or overloaded?"
                                + (f" {advice}" if advice else "")) from None
            if "Connection aborted" in str(exc):  # connected, then closed unanswered (e.g. past its connection cap)
                raise ConnectionDropped(f"The backend at {self.url} closed the connection without answering: it may "
                                        "have too many open connections; try again") from None
            raise ConnectionProblem(f"Please ensure the endpoint is available - {self.url} is unreachable!"
                                    + (f" Is its backend running? {advice}" if advice else ""), self.url) from None
        except requests.exceptions.Timeout:
            raise KaosError(f"The backend at {self.url} did not answer in time") from None
        except requests.exceptions.RequestException as exc:
            raise KaosError(f"Request to {self.url} failed - {type(exc).__name__}: {exc}") from None
        if response.status_code == 401 and self._renewed(data):
            response.close()
            return self._request(method, path, params, data, headers, timeout, stream)
        if response.status_code >= 400:
            self._raise_for(response)
        if stream:
            return response
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise UnexpectedAnswer(f"The backend at {self.url} answered with something that is not JSON: "
                            f"{_excerpt(response.text)}") from None

    def _renewed(self, data) -> bool:
        """After a 401: whether `credentials` now give another url or token (taken), so that the request, whose
        body (`data`) can be sent again (none, or bytes: not a stream read already), goes once more."""
        if self.credentials is None or not (data is None or isinstance(data, (bytes, str))):
            return False
        current = self.credentials()
        if not current or not current[0] or tuple(current) == (self.url, self.token):
            return False
        self.url, self.token = current
        return True

    def _raise_for(self, response) -> None:
        status = response.status_code
        error_code, message = None, None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error_code = body.get("error_code")
            message = body.get("message")
        if status == 401:
            raise UnauthorizedError(f"Unauthorized token - the backend at {self.url} rejected it", status, error_code)
        if status == 503 and error_code == "PLATFORM_UNHEALTHY":
            raise self._unhealthy(body, message)
        if not message:
            excerpt = _excerpt(response.text)
            message = f"HTTP {status} {response.reason or ''}".rstrip() + (f": {excerpt}" if excerpt else "")
        raise RequestError(" ".join(str(message).split()), status, error_code)

    def _unhealthy(self, body: dict, message: Optional[str]) -> PlatformUnhealthy:
        text = " ".join(str(message or "The kaos backend is unhealthy").split())
        part = body.get("part") if isinstance(body.get("part"), str) else None
        if part is None:
            match = re.match(r"The kaos backend's (\w+) ", text)
            part = match.group(1) if match else None
        advice = f": {self.unhealthy_advice}" if self.unhealthy_advice else ""
        return PlatformUnhealthy(text + advice, part=part)

    def _decoded(self, cls: Type[W], body: Any, route: str, response: bool = False) -> W:
        """`body` (or its `response` member) as a `cls`; UnexpectedAnswer when it does not fit."""
        try:
            if response:
                if not isinstance(body, dict) or "response" not in body:
                    raise WireError(f"expected a JSON object with `response`, got {type(body).__name__}")
                body = body["response"]
            return cls.from_dict(body)
        except WireError as problem:
            raise UnexpectedAnswer(f"The backend at {self.url} answered {route} with something that is not a "
                                   f"{cls.__name__}: {problem}") from None

    # -- uploads ---------------------------------------------------------------------------------------------
    def _upload(self, path: str, file_path, label: str, params: Optional[Dict[str, Any]] = None,
                content_type: str = "application/zip", digest: Optional[str] = None):
        """POST a file to `path`: by digest when the backend already stores it, else as the raw body with a
        progress bar "  Uploading <label>". `digest` is the file's sha256 hex when the caller knows it (it is
        computed otherwise); with `file_path` None the upload is by `digest` alone, and `BlobNotStored` is raised
        when the backend does not store those bytes (nothing was recorded: send the file)."""
        params = dict(params or {})
        if digest is None:
            if file_path is None:
                raise ValueError("an upload needs a file or a digest")
            digest = sha256_file(file_path)
        if self.blob_exists(digest):
            try:
                return self._request("POST", path, params={**params, "digest": digest},
                                     timeout=UPLOAD_READ_TIMEOUT)
            except RequestError as exc:
                if not (exc.status == 404 and exc.error_code == "BLOB_NOT_FOUND"):
                    raise
        if file_path is None:
            raise BlobNotStored(digest)
        size = os.path.getsize(file_path)
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        if size == 0:  # requests would switch an empty stream to chunked encoding
            return self._request("POST", path, params=params, data=b"", headers=headers,
                                 timeout=UPLOAD_READ_TIMEOUT)
        from tqdm import tqdm

        with open(file_path, "rb") as handle, tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                                    desc=f"  Uploading {label}", disable=not self.progress,
                                                    leave=True) as bar:
            return self._request("POST", path, params=params, data=_ProgressReader(handle, size, bar),
                                 headers=headers, timeout=UPLOAD_READ_TIMEOUT)

    def blob_exists(self, digest: str) -> bool:
        """`GET /blobs/<sha256>`: does the backend already store these bytes?"""
        try:
            self._request("GET", f"blobs/{quote(digest, safe='')}")
        except RequestError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- downloads -------------------------------------------------------------------------------------------
    def _download(self, response, dest, label: str) -> str:
        """Write a streamed answer to `dest` (a new temporary file when None) with a tqdm bar; a partial file
        is removed when the transfer fails."""
        import tempfile

        import requests
        from tqdm import tqdm

        if dest is None:
            handle, dest = tempfile.mkstemp(prefix="kaos-", suffix=".zip")
            os.close(handle)
        dest = str(dest)
        try:
            size = int(response.headers.get("Content-Length") or 0) or None
        except ValueError:
            size = None
        try:
            with open(dest, "wb") as target, tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                                   desc=f"  Downloading {label}", disable=not self.progress,
                                                   leave=True) as bar:
                for chunk in response.iter_content(CHUNK_SIZE):
                    target.write(chunk)
                    bar.update(len(chunk))
        except requests.exceptions.RequestException as exc:
            _remove(dest)
            raise KaosError(f"The download of the {label} from {self.url} was interrupted "
                            f"({type(exc).__name__})") from None
        except OSError as exc:
            _remove(dest)
            raise KaosError(f"Cannot write the {label} to {dest}: {exc.strerror or exc}") from None
        except BaseException:
            _remove(dest)
            raise
        finally:
            response.close()
        return dest

    # -- logs ------------------------------------------------------------------------------------------------
    def _logs(self, path: str, follow: bool) -> Union[str, Iterator[str]]:
        if not follow:
            text = self._request("GET", path)
            return "" if text is None else str(text)
        response = self._request("GET", path, params={"follow": "true"}, timeout=None, stream=True)
        return self._stream_lines(response)

    def _stream_lines(self, response) -> Iterator[str]:
        """The lines of a streamed `text/plain` answer as they arrive (a JSON answer, from a backend that does
        not stream, is decoded and split); the response is closed when the iterator ends or is closed."""
        import requests

        try:
            if "json" in (response.headers.get("Content-Type") or ""):
                try:
                    text = response.json()
                except ValueError:
                    text = response.text
                for record in ("" if text is None else str(text)).splitlines():
                    yield record
                return
            for raw in response.iter_lines(chunk_size=None):
                yield raw.decode("utf-8", errors="replace")
        except requests.exceptions.RequestException as exc:
            raise StreamInterrupted(f"The log stream from {self.url} was interrupted ({type(exc).__name__})") \
                from None
        finally:
            response.close()
