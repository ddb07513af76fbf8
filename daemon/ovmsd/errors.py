"""Domain errors of the serving core.

Each error names its *kind* (what went wrong, in the vocabulary of OVMS status codes). The front ends map kinds to
gRPC codes and HTTP statuses in one table (``ovmsd.api.errors``); nothing else in the daemon knows about them.
Messages follow OVMS: a fixed sentence, then `` - `` and the details (expected, actual, input name). Whatever a
message echoes from a request (names, values, shapes) goes through :func:`short`, so a 20,000-character input name
never crowds out the sentence or the status code.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(Enum):
    MODEL_MISSING = "Model with requested name is not found"
    VERSION_MISSING = "Model with requested version is not found"
    VERSION_NOT_LOADED_YET = "Model with requested version is not loaded yet"
    VERSION_RETIRED = "Model with requested version is retired"
    INVALID_INPUT = "Invalid input"  # a malformed request: wrong names, counts, precisions, shapes or contents
    RESHAPE_FAILED = "Model could not be reshaped with requested shape"
    OVERLOADED = "Model is busy; the request waited too long"
    INFERENCE_FAILED = "Internal inference error"
    UNSUPPORTED = "Not supported"
    SHUTTING_DOWN = "Server is shutting down; retry on another instance"
    INTERNAL = "Internal server error"
    UNAUTHENTICATED = "Unauthenticated"
    TOO_LARGE = "Request is over a limit of the model"  # an input's bytes, or a shape auto may not compile
    TOO_MANY_REQUESTS = "Too many requests for the model"  # its concurrency limit, with every waiting place taken


class ServingError(Exception):
    """An error answered to a client. ``message`` is the whole sentence the client sees."""

    def __init__(self, kind: ErrorKind, details: str = "", *, message: str | None = None) -> None:
        self.kind = kind
        self.message = message or (f"{kind.value} - {details}" if details else kind.value)
        self.version: int | None = None  # the version that was serving when it failed (for metrics), once known
        super().__init__(self.message)


MAX_ECHO_CHARS = 200  # what a message echoes from a request (a name, a value) is cut here


def short(text: object) -> str:
    """``text`` as a message echoes it: at most MAX_ECHO_CHARS characters, then ``...``."""
    text = str(text)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + "..."


def invalid_input(sentence: str, expected: object, actual: object, input_name: str | None) -> ServingError:
    """OVMS style: ``Invalid input shape - Expected: (1,3,224,224); Actual: (1,3,200,200); input name: 0``.

    The expected and actual values and the name are echoed through :func:`short`.
    """
    return ServingError(ErrorKind.INVALID_INPUT, message=f"{sentence} - {details(expected, actual, input_name)}")


def details(expected: object, actual: object, input_name: str | None = None) -> str:
    """``Expected: X; Actual: Y[; input name: N]``, each part cut by :func:`short`."""
    text = f"Expected: {short(expected)}; Actual: {short(actual)}"
    if input_name is not None:
        text += f"; input name: {short(input_name)}"
    return text


def over_limit(sentence: str, limit: str, expected: object, actual: object, input_name: str | None) -> ServingError:
    """A request over one of the model's limits (TOO_LARGE), naming the limit's config key and the value."""
    return ServingError(
        ErrorKind.TOO_LARGE, message=f"{sentence} - {details(f'{expected} ({limit})', actual, input_name)}"
    )


class ModelLoadError(Exception):
    """A model version could not be loaded; the version records it and keeps the daemon running."""
