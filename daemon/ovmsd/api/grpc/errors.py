"""The one place that maps the daemon's errors to gRPC status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc

from ovmsd.errors import ErrorKind, ServingError

log = logging.getLogger(__name__)

GRPC_CODES: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.MODEL_MISSING: grpc.StatusCode.NOT_FOUND,
    ErrorKind.VERSION_MISSING: grpc.StatusCode.NOT_FOUND,
    ErrorKind.VERSION_RETIRED: grpc.StatusCode.NOT_FOUND,
    ErrorKind.VERSION_NOT_LOADED_YET: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INVALID_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.RESHAPE_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.OVERLOADED: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INFERENCE_FAILED: grpc.StatusCode.INTERNAL,
    ErrorKind.UNSUPPORTED: grpc.StatusCode.INVALID_ARGUMENT,
}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[object, Req, grpc.ServicerContext], Resp]


def grpc_errors(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Turn ServingError into its gRPC status; any other exception into INTERNAL (logged, never crashes)."""

    @functools.wraps(method)
    def wrapper(self: object, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            return method(self, request, context)
        except ServingError as exc:
            code, message = GRPC_CODES[exc.kind], exc.message
        except Exception as exc:
            log.exception("%s failed", method.__name__)
            code, message = grpc.StatusCode.INTERNAL, f"Internal server error: {type(exc).__name__}: {exc}"
        context.abort(code, message)  # raises

    return wrapper
