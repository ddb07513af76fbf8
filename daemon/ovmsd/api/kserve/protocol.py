"""What the KServe v2 gRPC and REST front ends answer alike: versions as strings, server and model metadata.

Both front ends build their answers from these plain values, so a model's metadata, the default version and the
errors for a bad version string cannot differ between gRPC and REST.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata as package_metadata

from ovmsd.api.kserve.codec import datatype_of, short
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.dataplane import DataPlane
from ovmsd.serving.signature import TensorSpec
from ovmsd.serving.states import State

SERVER_NAME = "ovmsctl"
PLATFORM = "OpenVINO"  # what OVMS reports as a model's platform
EXTENSIONS: tuple[str, ...] = ("binary_tensor_data",)  # REST's binary data extension


def server_version() -> str:
    try:
        return package_metadata.version("ovmsctl")
    except package_metadata.PackageNotFoundError:  # pragma: no cover - a source tree without an install
        return "0"


def parse_version(text: str, model: str) -> int | None:
    """A version as KServe sends it (a decimal string); "" (or "0", as OVMS takes it) is the default version."""
    if text == "":
        return None
    if not text.isdigit():  # also refuses signs, spaces and non-ASCII digits
        raise ServingError(
            ErrorKind.INVALID_INPUT,
            message=f"Invalid model version - Expected: a version number; Actual: {short(text)!r}; "
            f"model name: {short(model)}",
        )
    number = int(text)
    if number >= 2**63:
        raise ServingError(ErrorKind.VERSION_MISSING, f"name: {short(model)}; version: {short(text)}")
    return number or None


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]  # -1 for a dynamic dimension


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]  # the AVAILABLE versions, ascending
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": [t.__dict__ for t in self.inputs],
            "outputs": [t.__dict__ for t in self.outputs],
        }


def model_metadata(data_plane: DataPlane, model: str, version: str) -> ModelMetadata:
    """The metadata of the asked version (or the default one); NOT_FOUND/UNAVAILABLE as for inference."""
    found = data_plane.metadata(model, parse_version(version, model))
    available = [str(s.version) for s in data_plane.status(model, None) if s.state == State.AVAILABLE]
    return ModelMetadata(
        name=found.name,
        versions=available or [str(found.version)],
        platform=PLATFORM,
        inputs=[_tensor(spec) for spec in found.signature.inputs],
        outputs=[_tensor(spec) for spec in found.signature.outputs],
    )


def _tensor(spec: TensorSpec) -> TensorMetadata:
    return TensorMetadata(spec.name, datatype_of(spec.dtype), list(spec.metadata_dims))
