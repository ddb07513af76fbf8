"""Reading the parts of requests that every service shares."""

from __future__ import annotations

from ovmsd.api.grpc.proto import model_pb2
from ovmsd.errors import ErrorKind, ServingError


def requested_version(spec: model_pb2.ModelSpec) -> int | None:
    """The version a ModelSpec asks for; None for the default (highest available) version."""
    if spec.HasField("version_label"):
        raise ServingError(
            ErrorKind.UNSUPPORTED,
            message=f"Version labels are not supported (label {spec.version_label!r}); ask for a version number",
        )
    if spec.HasField("version") and spec.version.value > 0:
        return int(spec.version.value)
    if spec.HasField("version") and spec.version.value < 0:
        raise ServingError(ErrorKind.VERSION_MISSING, f"name: {spec.name}; version: {spec.version.value}")
    return None
