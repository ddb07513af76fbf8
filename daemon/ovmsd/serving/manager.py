"""The one owner of model lifecycle transitions.

``apply(config)`` states what should be served; ``reconcile()`` compares it with the version directories on disk and
what is loaded, then acts: load what is aspired and missing (before retiring anything), retire what is no longer
aspired. Reconciles run one at a time. Requests go through ``acquire``, which hands out an instance only while its
version is AVAILABLE and keeps the version from unloading until the request releases it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ovmsd.config.models import ModelConfig, ServerConfig
from ovmsd.errors import ErrorKind, ModelLoadError, ServingError
from ovmsd.serving.instance import ModelInstance
from ovmsd.serving.states import ErrorCode, ModelSnapshot, State, VersionStatus
from ovmsd.serving.version import ModelVersion
from ovmsd.source.repository import ModelFileError, find_model_file, fingerprint, is_settled, list_versions, read_path

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
    settling: tuple[int, ...] = ()  # new version directories still being written; looked at again later


@dataclass(frozen=True)
class LoadResult:
    usable: bool  # the version serves (freshly loaded, or the previous load kept)
    settling: bool = False
    error: str = ""


class ModelManager:
    def __init__(self, load_instance: InstanceFactory, drain_timeout_s: float = 30.0, settle_s: float = 1.0) -> None:
        self._load_instance = load_instance
        self._drain_timeout = drain_timeout_s
        self._settle_s = settle_s
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()  # guards the dictionaries; held briefly
        self._reconcile_lock = threading.Lock()  # one lifecycle change at a time

    # -- desired state ---------------------------------------------------------------------------------------------

    def apply(self, config: ServerConfig, *, settle: bool = True) -> list[ModelOutcome]:
        """Serve exactly the models of ``config``: load new or changed ones, retire removed ones.

        ``settle=False`` (start-up) loads version directories as they are, without waiting for them to be quiet.
        """
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
                outcomes.append(
                    self._reconcile_model(model_config, reload_all=action == "reloaded", action=action, settle=settle)
                )
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
            return [self._reconcile_model(c, reload_all=False, action="unchanged", settle=True) for c in configs]

    def _reconcile_model(self, config: ModelConfig, *, reload_all: bool, action: str, settle: bool) -> ModelOutcome:
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
        wanted, settling, errors = self._converge(served, config, set(on_disk), force=reload_all, settle=settle)
        for number, version in sorted(served.versions.items()):
            if number in wanted or version.state in (State.END, State.UNLOADING):
                continue
            if version.state == State.AVAILABLE or number not in on_disk:
                self._retire(version)  # failed versions stay listed with their error while their files are there
        return ModelOutcome(config.name, action, self._available(served), tuple(errors), tuple(settling))

    def _converge(
        self, served: ServedModel, config: ModelConfig, on_disk: set[int], *, force: bool, settle: bool
    ) -> tuple[set[int], list[int], list[str]]:
        """Load what the policy selects; versions that cannot serve (settling, failed) make way for the next ones.

        With ``latest 1``, a broken or half-copied version 3 leaves version 2 serving rather than nothing.
        """
        unusable: set[int] = set()
        settling: list[int] = []
        errors: list[str] = []
        while True:
            wanted = config.version_policy.select(on_disk - unusable)
            blocked = set()
            for number in sorted(wanted):  # loads come first: availability never drops during a change
                result = self._ensure_loaded(served, config, number, force=force, settle=settle)
                if result.error:
                    errors.append(f"version {number}: {result.error}")
                if result.settling and not result.usable:
                    settling.append(number)
                if not result.usable:
                    blocked.add(number)
            if not blocked:
                return wanted, settling, errors
            unusable |= blocked

    def _ensure_loaded(
        self, served: ServedModel, config: ModelConfig, number: int, *, force: bool, settle: bool
    ) -> LoadResult:
        path = config.base_path / str(number)
        version = served.versions.get(number)
        current = fingerprint(path)
        live = version is not None and version.state == State.AVAILABLE
        loaded_before = version is not None and version.state in (State.AVAILABLE, State.LOADING)
        if loaded_before and version.fingerprint == current and not force:
            # serving, or failed on these very files: retry only when the files change
            return LoadResult(usable=live, error="" if live else version.status().error_message)
        if settle and not is_settled(path, self._settle_s, time.time()):
            return LoadResult(usable=live, settling=True)
        if version is None or version.state in (State.END, State.UNLOADING):
            version = ModelVersion(config.name, number, path)
            with self._lock:
                served.versions[number] = version
        version.fingerprint = current
        if not live:
            version.set_state(State.LOADING)
        try:
            instance = self._load_instance(read_path(find_model_file(path)), config, number)
        except (ModelLoadError, ModelFileError, OSError) as exc:
            if live:
                log.error(
                    "model %s version %d: reload failed, keeps serving the loaded one: %s", config.name, number, exc
                )
            else:
                version.set_state(State.LOADING, ErrorCode.UNKNOWN, str(exc))
            return LoadResult(usable=live, error=str(exc))
        previous = version.make_available(instance)
        if previous is not None:
            previous.close()
        return LoadResult(usable=True)

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
            raise ServingError(ErrorKind.VERSION_NOT_LOADED_YET, f"name: {name}")
        try:
            yield record.version, instance
        finally:
            record.release()

    def _find(self, name: str, version: int | None) -> ModelVersion:
        with self._lock:
            served = self._served(name)
            if version is not None:
                return self._version(served, name, version)
            default = served.default_version()
            if default is not None:
                return default
            if any(v.state in (State.START, State.LOADING) for v in served.versions.values()):
                raise ServingError(ErrorKind.VERSION_NOT_LOADED_YET, f"name: {name}; no version is available yet")
            raise ServingError(ErrorKind.VERSION_MISSING, f"name: {name}; no version is served")

    def _served(self, name: str) -> ServedModel:
        served = self._models.get(name)
        if served is None:
            raise ServingError(ErrorKind.MODEL_MISSING, f"name: {name}")
        return served

    @staticmethod
    def _version(served: ServedModel, name: str, version: int) -> ModelVersion:
        record = served.versions.get(version)
        if record is None:
            raise ServingError(ErrorKind.VERSION_MISSING, f"name: {name}; version: {version}")
        return record

    # -- status ----------------------------------------------------------------------------------------------------

    def statuses(self, name: str, version: int | None = None) -> list[VersionStatus]:
        with self._lock:
            served = self._served(name)
            if version is not None:
                return [self._version(served, name, version).status()]
            return [v.status() for _, v in sorted(served.versions.items())]

    def snapshot(self) -> list[ModelSnapshot]:
        """Every model and version as they are now, for status reports, health and metrics (sorted by name)."""
        with self._lock:
            models = [
                (name, served.config, served.problem, list(served.versions.values()))
                for name, served in self._models.items()
            ]
        return [
            ModelSnapshot(
                name=name,
                base_path=str(config.base_path) if config is not None else None,
                problem=problem,
                versions=tuple(v.snapshot() for v in sorted(versions, key=lambda v: v.version)),
            )
            for name, config, problem, versions in sorted(models, key=lambda m: m[0])
        ]

    def shutdown(self) -> None:
        with self._reconcile_lock:
            with self._lock:
                models = list(self._models.values())
            for served in models:
                self._retire_model(served)


def _not_serving(record: ModelVersion) -> ServingError:
    details = f"name: {record.model}; version: {record.version}"
    if record.state in (State.START, State.LOADING):
        return ServingError(ErrorKind.VERSION_NOT_LOADED_YET, details)
    return ServingError(ErrorKind.VERSION_RETIRED, details)
