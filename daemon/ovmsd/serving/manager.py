"""What should be served, per model, each model converging on its own.

``apply(config)`` states the desired models; ``reconcile()`` asks every model to look at its directory again. Each
model has a *lane*: its passes run one at a time and in order (so its versions load in order), on a bounded pool of
load workers shared by all models, so different models load at the same time and one slow compile never holds back
another model, a config reload or a stop. A pass lists the version directories, lets the version policy choose,
loads what is chosen and missing (before retiring anything: availability never drops during a change), then retires
what is no longer chosen. Every state change goes through ``ovmsd.serving.lifecycle``; a retire never waits.

Requests go through ``acquire``, which hands out an instance only while its version is AVAILABLE and keeps the
version from ending until the request releases it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ovmsd.config.models import ModelConfig, ServerConfig
from ovmsd.errors import ErrorKind, ModelLoadError, ServingError, short
from ovmsd.serving.lifecycle import Lifecycle
from ovmsd.serving.states import ModelSnapshot, State, VersionStatus
from ovmsd.serving.version import ModelVersion
from ovmsd.serving.workers import WorkerPool
from ovmsd.source.fingerprints import FingerprintCache
from ovmsd.source.repository import ModelFileError, find_model_file, is_settled, list_versions, read_path

if TYPE_CHECKING:
    from ovmsd.serving.instance import ModelInstance

log = logging.getLogger(__name__)

InstanceFactory = Callable[[Path, ModelConfig, int], "ModelInstance"]

STOPPING = "the daemon is stopping"


@dataclass
class ServedModel:
    """A model name with every version ever seen for it (END versions stay listed, as in OVMS)."""

    config: ModelConfig | None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    problem: str = ""  # a repository problem (missing base path...), shown in status
    skipped: frozenset[str] = frozenset()  # non-numeric entries already warned about
    settling: set[int] = field(default_factory=set)  # version directories seen still being written (logged once)
    passes: int = 0  # passes finished, for the debug log (tests count rescans by it)

    def default_version(self) -> ModelVersion | None:
        available = [v for v in self.versions.values() if v.state == State.AVAILABLE]
        return max(available, key=lambda v: v.version, default=None)


@dataclass(frozen=True)
class ModelOutcome:
    """What a pass did to one model, for reload reports."""

    model: str
    action: str  # "added", "removed", "reloaded", "unchanged"
    available: tuple[int, ...]
    errors: tuple[str, ...] = ()
    settling: tuple[int, ...] = ()  # new version directories still being written; looked at again later
    pending: bool = False  # the model was busy (a load in progress): reported as it is, looked at after that load


@dataclass(frozen=True)
class LoadResult:
    usable: bool  # the version serves (freshly loaded, or the previous load kept)
    settling: bool = False
    error: str = ""


@dataclass
class _Lane:
    """One model's desired config and the bookkeeping of its passes (guarded by the manager's condition)."""

    name: str
    desired: ModelConfig | None = None
    requested: int = 0  # passes asked for
    done: int = 0  # the request count that the last finished pass covered
    running: bool = False
    force: bool = False  # the next pass reloads every version (the model's loading fields changed)
    no_settle: bool = False  # the next pass loads version directories as they are (start-up)
    outcome: ModelOutcome | None = None
    retry: threading.Timer | None = None


class Pending:
    """Passes asked for; ``wait`` returns their outcomes once they finished (or the manager stops)."""

    def __init__(self, manager: ModelManager, tickets: list[tuple[str, int]]) -> None:
        self._manager = manager
        self._tickets = tickets

    def wait(self, timeout: float | None = None) -> list[ModelOutcome] | None:
        """The outcomes in order; None if ``timeout`` passed first."""
        return self._manager._wait(self._tickets, timeout)


class ModelManager:
    def __init__(
        self,
        load_instance: InstanceFactory,
        *,
        drain_timeout_s: float = 30.0,
        settle_s: float = 1.0,
        load_workers: int = 2,
    ) -> None:
        self._load_instance = load_instance
        self._settle_s = settle_s
        self.lifecycle = Lifecycle(drain_timeout_s)
        self._pool = WorkerPool(load_workers, "load")
        self._models: dict[str, ServedModel] = {}
        self._lanes: dict[str, _Lane] = {}
        self._cond = threading.Condition()  # guards the dictionaries, the lanes and the stopping flag; held briefly
        self._stopping = False
        self.fingerprints = FingerprintCache()  # the watcher reports changed files to it (``files_changed``)

    # -- desired state ---------------------------------------------------------------------------------------------

    def apply(self, config: ServerConfig, *, settle: bool = True) -> list[ModelOutcome]:
        """Serve exactly the models of ``config``; returns once the models it adds, changes or removes converged.

        An unchanged model is looked at again too (new version directories), but a reload never waits for a model
        that is busy loading: it is reported as it is (``pending``). ``settle=False`` (start-up) loads version
        directories as they are, without waiting for them to be quiet.
        """
        wanted = {m.name: m for m in config.models}
        self.fingerprints.clear()  # a config change looks at every file again, events or not
        waits: list[tuple[str, str, int]] = []
        busy: list[str] = []
        with self._cond:
            removed = [n for n, lane in self._lanes.items() if n not in wanted and lane.desired is not None]
            for name, model_config in wanted.items():
                lane = self._lanes.get(name)
                previous = lane.desired if lane is not None else None
                if previous is None:
                    action = "added"
                elif previous.loading_fields() != model_config.loading_fields():
                    action = "reloaded"
                else:
                    action = "unchanged"
                was_running = lane is not None and lane.running
                if name not in self._models:  # requests meanwhile hear "not loaded yet", not "no such model"
                    self._models[name] = ServedModel(model_config)
                ticket = self._request(name, model_config, force=action == "reloaded", settle=settle)
                if action == "unchanged" and was_running:
                    busy.append(name)
                else:
                    waits.append((name, action, ticket))
            for name in removed:
                waits.append((name, "removed", self._request(name, None)))
        outcomes = self._wait([(name, ticket) for name, _, ticket in waits], None) or []
        actions = {name: action for name, action, _ in waits}
        reported = [replace(o, action=actions[o.model]) for o in outcomes]
        with self._cond:
            reported += [ModelOutcome(n, "unchanged", self._available(self._models[n]), pending=True) for n in busy]
        order = {name: i for i, name in enumerate([*wanted, *removed])}
        return sorted(reported, key=lambda o: order[o.model])

    def reconcile(self, names: Iterable[str] | None = None) -> Pending:
        """Ask configured models (all, or ``names``) to look at their directories again; does not wait."""
        with self._cond:
            chosen = list(self._lanes) if names is None else list(names)
            tickets = [(n, self._request(n)) for n in chosen if n in self._lanes and self._lanes[n].desired is not None]
        return Pending(self, tickets)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no pass is running or asked for (tests, benchmarks); False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: all(not lane.running and lane.done >= lane.requested for lane in self._lanes.values()),
                timeout=timeout,
            )

    # -- lanes -----------------------------------------------------------------------------------------------------

    _KEEP: object = object()

    def _request(
        self, name: str, config: ModelConfig | object | None = _KEEP, *, force: bool = False, settle: bool = True
    ) -> int:
        """Ask for one more pass of ``name`` (called with the condition held); returns its ticket."""
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane(name)
        if config is not self._KEEP:
            lane.desired = config  # type: ignore[assignment]
        lane.force = lane.force or force
        lane.no_settle = lane.no_settle or not settle
        lane.requested += 1
        if not lane.running and not self._stopping:
            lane.running = True
            self._pool.submit(functools.partial(self._run_lane, lane))
        return lane.requested

    def _run_lane(self, lane: _Lane) -> None:
        while True:
            with self._cond:
                if self._stopping or lane.done >= lane.requested:
                    lane.running = False
                    self._cond.notify_all()
                    return
                target, config, force, settle = lane.requested, lane.desired, lane.force, not lane.no_settle
                lane.force = lane.no_settle = False
            try:
                outcome = self._pass(lane.name, config, force=force, settle=settle)
            except Exception as exc:  # a bug in a pass must not take the lane, or the daemon, down
                log.exception("model %s: converging failed", lane.name)
                outcome = ModelOutcome(lane.name, "unchanged", (), (f"internal error: {exc}",))
            with self._cond:
                lane.outcome = outcome
                lane.done = target
                self._cond.notify_all()
            if outcome.settling:
                self._retry_later(lane)

    def _retry_later(self, lane: _Lane) -> None:
        """Look at a model again once the version directories being written may have settled."""
        with self._cond:
            if lane.retry is not None or self._stopping:
                return
            lane.retry = threading.Timer(self._settle_s, self._retry, (lane,))
            lane.retry.daemon = True
            lane.retry.start()

    def _retry(self, lane: _Lane) -> None:
        with self._cond:
            lane.retry = None
            if lane.desired is not None:
                self._request(lane.name)

    def _wait(self, tickets: list[tuple[str, int]], timeout: float | None) -> list[ModelOutcome] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        outcomes = []
        with self._cond:
            for name, ticket in tickets:
                lane = self._lanes[name]
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._cond.wait_for(lambda: lane.done >= ticket or self._stopping, timeout=remaining):  # noqa: B023
                    return None
                outcomes.append(lane.outcome or ModelOutcome(name, "unchanged", (), (STOPPING,)))
        return outcomes

    # -- one pass over one model -----------------------------------------------------------------------------------

    def _pass(self, name: str, config: ModelConfig | None, *, force: bool, settle: bool) -> ModelOutcome:
        with self._cond:
            served = self._models.get(name)
            if served is None:
                if config is None:
                    return ModelOutcome(name, "removed", ())
                served = self._models[name] = ServedModel(config)
            if config is not None:
                served.config = config
        if config is None:
            self._retire_model(served)
            return ModelOutcome(name, "removed", ())
        try:
            on_disk, skipped = list_versions(config.base_path)
        except OSError as exc:
            self._report_problem(served, f"cannot read base path {config.base_path}: {exc.strerror or exc}")
            served.passes += 1
            log.debug("model %s: pass %d: the base path is unreadable", name, served.passes)
            return ModelOutcome(name, "unchanged", self._available(served), (served.problem,))
        self._report_problem(served, "")
        new_skipped = frozenset(skipped) - served.skipped
        if new_skipped:
            log.warning("model %s: ignoring entries that are not version numbers: %s", name, sorted(new_skipped))
        served.skipped = frozenset(skipped)
        wanted, settling, errors = self._converge(served, config, set(on_disk), force=force, settle=settle)
        served.passes += 1
        log.debug("model %s: pass %d: on disk %s, available %s", name, served.passes, on_disk, self._available(served))
        for number, version in sorted(served.versions.items()):
            if number in wanted or version.state in (State.END, State.UNLOADING):
                continue
            if version.state == State.AVAILABLE or number not in on_disk:
                self.lifecycle.retire(version)  # failed versions stay listed with their error while their files are
        return ModelOutcome(name, "unchanged", self._available(served), tuple(errors), tuple(settling))

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
                if self._stopping:
                    return wanted, settling, errors
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
        current = self.fingerprints.fingerprint(path)
        live = version is not None and version.state == State.AVAILABLE
        tried = version is not None and version.state in (State.AVAILABLE, State.LOADING)
        if tried and version is not None and version.fingerprint == current and not force:
            # serving, or failed on these very files: retry only when the files change
            return LoadResult(usable=live, error="" if live else version.status.error_message)
        if settle and not is_settled(path, self._settle_s, time.time()):
            if number not in served.settling:
                served.settling.add(number)
                log.info(
                    "model %s version %d: files still being written; loading once they are quiet for %g s",
                    config.name,
                    number,
                    self._settle_s,
                )
            return LoadResult(usable=live, settling=True)
        served.settling.discard(number)
        if version is None or version.state == State.UNLOADING:
            version = ModelVersion(config.name, number, path)  # a draining record finishes on its own
            with self._cond:
                served.versions[number] = version
        version.fingerprint = current
        if not live:
            self.lifecycle.start_loading(version)
        try:
            instance = self._load_instance(read_path(find_model_file(path)), config, number)
        except (ModelLoadError, ModelFileError, OSError) as exc:
            if live:
                log.error(
                    "model %s version %d: reload failed, keeps serving the loaded one: %s", config.name, number, exc
                )
            else:
                self.lifecycle.load_failed(version, str(exc))
            return LoadResult(usable=live, error=str(exc))
        with self._cond:
            if self._stopping:  # abandoned: the result is dropped, nothing is registered
                log.info("model %s version %d: loaded after the stop began; dropped", config.name, number)
                return LoadResult(usable=live, error=STOPPING)
            self.lifecycle.make_available(version, instance)
        return LoadResult(usable=True)

    def _retire_model(self, served: ServedModel) -> None:
        for version in list(served.versions.values()):
            self.lifecycle.retire(version)
        with self._cond:
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
        """Yields (version number, instance); the version cannot end before the block ends."""
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
        with self._cond:
            served = self._served(name)
            if version is not None:
                return self._version(served, name, version)
            default = served.default_version()
            if default is not None:
                return default
            lane = self._lanes.get(name)
            first_pass = lane is not None and lane.done == 0
            if first_pass or any(v.state in (State.START, State.LOADING) for v in served.versions.values()):
                raise ServingError(ErrorKind.VERSION_NOT_LOADED_YET, f"name: {name}; no version is available yet")
            raise ServingError(ErrorKind.VERSION_MISSING, f"name: {name}; no version is served")

    def _served(self, name: str) -> ServedModel:
        served = self._models.get(name)
        if served is None:
            raise ServingError(ErrorKind.MODEL_MISSING, f"name: {short(name)}")  # the name a client sent
        return served

    @staticmethod
    def _version(served: ServedModel, name: str, version: int) -> ModelVersion:
        record = served.versions.get(version)
        if record is None:
            raise ServingError(ErrorKind.VERSION_MISSING, f"name: {name}; version: {version}")
        return record

    # -- status ----------------------------------------------------------------------------------------------------

    def statuses(self, name: str, version: int | None = None) -> list[VersionStatus]:
        with self._cond:
            served = self._served(name)
            if version is not None:
                return [self._version(served, name, version).status]
            return [v.status for _, v in sorted(served.versions.items())]

    def has_model(self, name: str) -> bool:
        """Whether the config names this model (loaded or not)."""
        with self._cond:
            return name in self._models

    def snapshot(self) -> list[ModelSnapshot]:
        """Every model and version as they are now, for status reports, health and metrics (sorted by name)."""
        with self._cond:
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

    @property
    def loads_running(self) -> int:
        """Passes (and so loads) running now; a stop abandons them."""
        return self._pool.busy

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop converging (loads running are abandoned), retire every version, wait for the drains.

        Returns False when versions were still draining after ``timeout``.
        """
        with self._cond:
            self._stopping = True
            models = list(self._models.values())
            for lane in self._lanes.values():
                if lane.retry is not None:
                    lane.retry.cancel()
            self._cond.notify_all()
        for served in models:
            self._retire_model(served)
        drained = self.lifecycle.wait_drained(timeout)
        self._pool.close()
        return drained


def _not_serving(record: ModelVersion) -> ServingError:
    details = f"name: {record.model}; version: {record.version}"
    if record.state in (State.START, State.LOADING):
        return ServingError(ErrorKind.VERSION_NOT_LOADED_YET, details)
    return ServingError(ErrorKind.VERSION_RETIRED, details)
