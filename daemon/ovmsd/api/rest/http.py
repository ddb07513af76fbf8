"""The REST front ends' own small HTTP vocabulary: a request as handlers see it, a response, JSON bodies.

Handlers are plain synchronous functions ``(Request, params) -> Response``; ``ovmsd.api.rest.asgi`` runs them and
maps their ``ServingError``s to status codes through ``ovmsd.api.errors``. JSON is read and written with orjson:
about 3x faster than the standard library at parsing a 3 MB tensor and 20x at writing numpy outputs, which it
serialises directly (BENCHMARKS.md, "REST JSON").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ovmsd.api.errors import bounded
from ovmsd.errors import ErrorKind, ServingError

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    served_version: str | None = None  # for the request metrics: the version that answered


def json_response(value: Any, status: int = 200, served_version: str | None = None) -> Response:
    return Response(status, dump(value), served_version=served_version)


def error_response(status: int, message: str) -> Response:
    return Response(status, orjson.dumps({"error": bounded(message)}))


def dump(value: Any) -> bytes:
    """JSON with numpy arrays and scalars written as numbers (non-finite floats become null, as JSON has none)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # not C-contiguous, or a dtype orjson does not take (bfloat16...)
        if value.dtype.kind == "f" and value.dtype not in (np.float16, np.float32, np.float64):
            return np.ascontiguousarray(value, dtype=np.float32)
        return np.ascontiguousarray(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def parse_json(body: bytes | memoryview, what: str = "request body") -> Any:
    """The JSON document of a request; malformed JSON is INVALID_INPUT naming where it broke."""
    if not len(body):
        raise ServingError(ErrorKind.INVALID_INPUT, message=f"Invalid JSON in the {what}: the body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ServingError(ErrorKind.INVALID_INPUT, message=f"Invalid JSON in the {what}: {exc}") from None


def json_object(body: bytes | memoryview, what: str = "request body") -> dict[str, Any]:
    document = parse_json(body, what)
    if not isinstance(document, dict):
        raise ServingError(
            ErrorKind.INVALID_INPUT,
            message=f"Invalid JSON in the {what}: expected an object, got {type(document).__name__}",
        )
    return document
