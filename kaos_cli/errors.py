"""The errors the CLI turns into one `<Level> - <message>` line and exit status 1."""


class KaosError(Exception):
    """A failure a user can act on; `level` is the coloured prefix (Error, Warning, Aborting, Info)."""

    def __init__(self, message: str, level: str = "Error"):
        super().__init__(message)
        self.message = message
        self.level = level

    def __str__(self) -> str:
        return self.message


class ConnectionProblem(KaosError):
    """The endpoint is missing, malformed or unreachable."""

    def __init__(self, message: str, url: str = None):
        super().__init__(message, level="Warning")
        self.url = url


class ConnectionDropped(KaosError):
    """The backend accepted the connection and closed it without answering (past its connection cap, or a part of
    it restarting)."""


class StreamInterrupted(KaosError):
    """A streamed answer (a followed log) was cut before its end: the backend, or a part of it, went away."""


class RequestError(KaosError):
    """The backend answered with an HTTP error; `status` and `error_code` come from its reply."""

    def __init__(self, message: str, status: int = None, error_code: str = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class UnauthorizedError(RequestError):
    """The backend rejected the token (HTTP 401)."""


class PlatformUnhealthy(RequestError):
    """The backend answered 503 PLATFORM_UNHEALTHY: one of its parts (`part`: front, api, scheduler) is not up;
    the message names it and says what to do (level Warning)."""

    def __init__(self, message: str, part: str = None, status: int = 503, error_code: str = "PLATFORM_UNHEALTHY"):
        super().__init__(message, status, error_code)
        self.level = "Warning"
        self.part = part


class IndexProblem(KaosError):
    """An `-i/--ind` index that cannot be resolved."""


class UnexpectedAnswer(KaosError):
    """The backend answered a route with something that is not JSON, or with JSON that is not the object the route
    promises (a `kaos_model.wire` class: a required field missing, a field of another type); the message names the
    route and the field."""
