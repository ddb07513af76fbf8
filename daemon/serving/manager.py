"""The one owner of model lifecycle transitions.

``apply(config)`` states what should be served; ``reconcile()`` compares it with the version directories on disk and
what is loaded, then acts: load what is aspired and missing (before retiring anything), retire what is no longer
aspired. Reconciles run one at a time. Requests go through ``acquire``, which hands out an instance only while its
version is AVAILABLE and keeps the version from unloading until the request releases it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ovmsd.config.models import ModelConfig, ServerConfig
from ovmsd.errors import ErrorKind, ModelLoadError, ServingError
from ovmsd.repository import ModelFileError, find_model_file, fingerprint, list_versions, read_path
from ovmsd.serving.instance import ModelInstance
from ovmsd.serving.servable import ModelVersion
from ovmsd.status import ErrorCode, State, VersionStatus

log = logging.getLogger(__name__)

InstanceFactory = Callable[[Path, ModelConfig, int], ModelInstance]


@dataclass
class ServedModel:
    """A model name with every version ever seen for it (END versions stay listed, as in OVMS)."""

    config: ModelConfig | None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    problem: str = ""  # a repository problem (missing base path...), shown in status
    skipped: frozenset[str] = frozenset()  # non-numeric entries already warned about

    def default_version(self) -> ModelVersion | None:
        available = [v for v in self.versions.values() if v.state == State.AVAILABLE]
        return max(available, key=lambda v: v.version, default=None)


@dataclass(frozen=True)
class ModelOutcome:
    """What a reconcile did to one model, for reload reports."""

    model: str
    action: str  # "added", "removed", "reloaded", "unchanged"
    available: tuple[int, ...]
    errors: tuple[str, ...] = ()


class ModelManager:
    def __init__(self, load_instance: InstanceFactory, drain_timeout_s: float = 30.0) -> None:
        self._load_instance = load_instance
        self._drain_timeout = drain_timeout_s
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()  # guards the dictionaries; held briefly
        self._reconcile_lock = threading.Lock()  # one lifecycle change at a time

    # -- desired state ---------------------------------------------------------------------------------------------

    def apply(self, config: ServerConfig) -> list[ModelOutcome]:
        """Serve exactly the models of ``config``: load new or changed ones, retire removed ones."""
        with self._reconcile_lock:
            outcomes = []
            wanted = {m.name: m for m in config.models}
            with self._lock:
                current = dict(self._models)
            for name, model_config in wanted.items():
                served = current.get(name)
                if served is None or served.config is None:
                    action = "added"
                elif served.config.loading_fields() != model_config.loading_fields():
                    action = "reloaded"
                else:
                    action = "unchanged"
                outcomes.append(self._reconcile_model(model_config, reload_all=action == "reloaded", action=action))
            for name, served in current.items():
                if name not in wanted and served.config is not None:
                    self._retire_model(served)
                    outcomes.append(ModelOutcome(name, "removed", ()))
            return outcomes

    def reconcile(self) -> list[ModelOutcome]:
        """Look at the disk again for every configured model (new, removed or changed version directories)."""
        with self._reconcile_lock:
            with self._lock:
                configs = [m.config for m in self._models.values() if m.config is not None]
            return [self._reconcile_model(c, reload_all=False, action="unchanged") for c in configs]

    def _reconcile_model(self, config: ModelConfig, *, reload_all: bool, action: str) -> ModelOutcome:
        with self._lock:
            served = self._models.setdefault(config.name, ServedModel(config))
        served.config = config
        errors: list[str] = []
        try:
            on_disk, skipped = list_versions(config.base_path)
        except OSError as exc:
            self._report_problem(served, f"cannot read base path {config.base_path}: {exc.strerror or exc}")
            return ModelOutcome(config.name, action, self._available(served), (served.problem,))
        self._report_problem(served, "")
        new_skipped = frozenset(skipped) - served.skipped
        if new_skipped:
            log.warning("model %s: ignoring entries that are not version numbers: %s", config.name, sorted(new_skipped))
        served.skipped = frozenset(skipped)
        aspired = config.version_policy.select(on_disk)
        for number in sorted(aspired):  # load first: availability never drops during a change
            error = self._load_if_needed(served, config, number, force=reload_all)
            if error:
                errors.append(f"version {number}: {error}")
        for number, version in sorted(served.versions.items()):
            if number not in aspired and version.state not in (State.END, State.UNLOADING):
                self._retire(version)
        return ModelOutcome(config.name, action, self._available(served), tuple(errors))

    def _load_if_needed(self, served: ServedModel, config: ModelConfig, number: int, *, force: bool) -> str:
        path = config.base_path / str(number)
        version = served.versions.get(number)
        current = fingerprint(path)
        unchanged = version is not None and version.fingerprint == current and not force
        if unchanged and (version.state == State.AVAILABLE or version.status().error_message):
            return ""  # serving, or failed on these very files: retry only when the files change
        if version is None or version.state in (State.END, State.UNLOADING):
            version = ModelVersion(config.name, number, path)
            with self._lock:
                served.versions[number] = version
        version.fingerprint = current
        if version.state != State.AVAILABLE:
            version.set_state(State.LOADING)
        try:
            instance = self._load_instance(read_path(find_model_file(path)), config, number)
        except (ModelLoadError, ModelFileError) as exc:
            if version.state == State.AVAILABLE:
                log.error(
                    "model %s version %d: reload failed, keeps serving the loaded one: %s", config.name, number, exc
                )
            else:
                version.set_state(State.LOADING, ErrorCode.UNKNOWN, str(exc))
            return str(exc)
        previous = version.make_available(instance)
        if previous is not None:
            previous.close()
        return ""

    def _retire(self, version: ModelVersion) -> None:
        version.retire(timeout=self._drain_timeout)

    def _retire_model(self, served: ServedModel) -> None:
        for version in served.versions.values():
            if version.state not in (State.END, State.UNLOADING):
                self._retire(version)
        served.config = None

    def _report_problem(self, served: ServedModel, problem: str) -> None:
        if problem and problem != served.problem:
            log.error(
                "model %s: %s; keeps serving what is loaded", served.config.name if served.config else "?", problem
            )
        served.problem = problem

    @staticmethod
    def _available(served: ServedModel) -> tuple[int, ...]:
        return tuple(sorted(n for n, v in served.versions.items() if v.state == State.AVAILABLE))

    # -- requests --------------------------------------------------------------------------------------------------

    @contextmanager
    def acquire(self, name: str, version: int | None = None) -> Iterator[tuple[int, ModelInstance]]:
        """Yields (version number, instance); the version cannot unload before the block ends."""
        for _ in range(3):  # the default version can retire between choosing and acquiring: choose again
            record = self._find(name, version)
            instance = record.try_acquire()
            if instance is not None:
                break
            if version is not None:
                raise _not_serving(record)
        else:
            raise ServingError(ErrorKind.VERSION_NOT_LOADED_YET)
        try:
            yield record.version, instance
        finally:
            record.release()

    def _find(self, name: str, version: int | None) -> ModelVersion:
        with self._lock:
            served = self._models.get(name)
            if served is None:
                raise ServingError(ErrorKind.MODEL_MISSING)
            if version is not None:
                record = served.versions.get(version)
                if record is None:
                    raise ServingError(ErrorKind.VERSION_MISSING)
                return record
            default = served.default_version()
            if default is not None:
                return default
            if any(v.state in (State.START, State.LOADING) for v in served.versions.values()):
                raise ServingError(ErrorKind.VERSION_NOT_LOADED_YET)
            raise ServingError(ErrorKind.VERSION_MISSING)

    # -- status ----------------------------------------------------------------------------------------------------

    def statuses(self, name: str, version: int | None = None) -> list[VersionStatus]:
        with self._lock:
            served = self._models.get(name)
            if served is None:
                raise ServingError(ErrorKind.MODEL_MISSING)
            if version is not None:
                if version not in served.versions:
                    raise ServingError(ErrorKind.VERSION_MISSING)
                return [served.versions[version].status()]
            return [v.status() for _, v in sorted(served.versions.items())]

    def models(self) -> dict[str, ServedModel]:
        with self._lock:
            return dict(self._models)

    def shutdown(self) -> None:
        with self._reconcile_lock:
            for served in self.models().values():
                self._retire_model(served)


def _not_serving(record: ModelVersion) -> ServingError:
    if record.state in (State.START, State.LOADING):
        return ServingError(ErrorKind.VERSION_NOT_LOADED_YET)
    return ServingError(ErrorKind.VERSION_RETIRED)
