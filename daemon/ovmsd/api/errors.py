"""The one table that maps every error kind to every protocol: a gRPC status code and an HTTP status.

OVMS's mapping: malformed requests are INVALID_ARGUMENT / 400, a missing model or version NOT_FOUND / 404, a
version not loaded yet UNAVAILABLE on gRPC (clients retry) and 404 on REST (as OVMS answers), an impossible reshape
FAILED_PRECONDITION / 412, an overloaded model or a server that is stopping or not ready UNAVAILABLE / 503, a failed
inference INTERNAL / 500. Requests over a model's limits are RESOURCE_EXHAUSTED, as gRPC answers a message over its
size limit: 413 (Payload Too Large) for an input or a shape over the size limits, 429 (Too Many Requests) when the
model's concurrency limit and every waiting place are taken. Nothing else in the daemon knows these numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import grpc

from ovmsd.errors import ErrorKind


class Codes(NamedTuple):
    grpc: grpc.StatusCode
    http: int


ERROR_CODES: dict[ErrorKind, Codes] = {
    ErrorKind.MODEL_MISSING: Codes(grpc.StatusCode.NOT_FOUND, 404),
    ErrorKind.VERSION_MISSING: Codes(grpc.StatusCode.NOT_FOUND, 404),
    ErrorKind.VERSION_RETIRED: Codes(grpc.StatusCode.NOT_FOUND, 404),
    ErrorKind.VERSION_NOT_LOADED_YET: Codes(grpc.StatusCode.UNAVAILABLE, 404),
    ErrorKind.INVALID_INPUT: Codes(grpc.StatusCode.INVALID_ARGUMENT, 400),
    ErrorKind.RESHAPE_FAILED: Codes(grpc.StatusCode.FAILED_PRECONDITION, 412),
    ErrorKind.OVERLOADED: Codes(grpc.StatusCode.UNAVAILABLE, 503),
    ErrorKind.INFERENCE_FAILED: Codes(grpc.StatusCode.INTERNAL, 500),
    ErrorKind.UNSUPPORTED: Codes(grpc.StatusCode.INVALID_ARGUMENT, 400),
    ErrorKind.SHUTTING_DOWN: Codes(grpc.StatusCode.UNAVAILABLE, 503),
    ErrorKind.INTERNAL: Codes(grpc.StatusCode.INTERNAL, 500),
    ErrorKind.UNAUTHENTICATED: Codes(grpc.StatusCode.UNAUTHENTICATED, 401),
    ErrorKind.TOO_LARGE: Codes(grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    ErrorKind.TOO_MANY_REQUESTS: Codes(grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
}

MAX_MESSAGE_CHARS = 2000  # messages that echo client input are cut here, so the real code always reaches the client


def bounded(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "..."
