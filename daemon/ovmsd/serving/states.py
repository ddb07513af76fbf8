"""Model version states (TF Serving's numeric values) and the read model that GetModelStatus and `status` show."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum

from ovmsd.serving.shape_cache import CacheStats


class State(IntEnum):
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class ErrorCode(IntEnum):
    """The subset of ``tensorflow.error.Code`` that version statuses use (the same numbers as gRPC)."""

    OK = 0
    UNKNOWN = 2
    NOT_FOUND = 5
    FAILED_PRECONDITION = 9


@dataclass(frozen=True)
class VersionStatus:
    """A snapshot of one model version's state, as GetModelStatus reports it."""

    model: str
    version: int
    state: State
    error_code: ErrorCode = ErrorCode.OK
    error_message: str = ""
    since: float = field(default_factory=time.time)

    @property
    def status_message(self) -> str:
        """TF Serving reports ``OK`` when a version has no error."""
        return self.error_message or "OK"


@dataclass(frozen=True)
class VersionSnapshot:
    """Everything status reports show about one version, read at one moment."""

    status: VersionStatus
    in_flight: int
    compiled_shapes: tuple[dict[str, str], ...] = ()
    nireq: int | None = None
    cache: CacheStats | None = None  # a copy: counters as they were when the snapshot was taken


@dataclass(frozen=True)
class ModelSnapshot:
    name: str
    base_path: str | None  # None once the model was removed from the config (its versions stay listed)
    problem: str
    versions: tuple[VersionSnapshot, ...]

    @property
    def configured(self) -> bool:
        return self.base_path is not None

    @property
    def serving(self) -> bool:
        return self.configured and any(v.status.state == State.AVAILABLE for v in self.versions)
