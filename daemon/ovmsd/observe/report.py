"""What ``ovmsctl status`` and ``ovmsctl reload`` show: plain dictionaries, ready for JSON.

The shape of these dictionaries is the documented ``ovmsctl status --json`` format (docs/operations.md): add
fields freely, never rename or remove one without raising ``FORMAT``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ovmsd.serving.manager import ModelOutcome
    from ovmsd.serving.states import ModelSnapshot, VersionSnapshot

FORMAT = 1

APPLIED = "applied"
APPLIED_WITH_ERRORS = "applied_with_errors"
REJECTED = "rejected"
RELOAD_OUTCOMES = (APPLIED, APPLIED_WITH_ERRORS, REJECTED)

LoadSeconds = Callable[[str, int], "float | None"]


@dataclass(frozen=True)
class ReloadResult:
    """One attempt to apply the config: at start-up, or a reload (SIGHUP, ovmsctl reload, the gRPC API...)."""

    trigger: str
    ok: bool
    outcome: str  # one of RELOAD_OUTCOMES
    generation: int  # the live config generation afterwards
    message: str
    outcomes: tuple[ModelOutcome, ...] = ()
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "at": self.at,
            "ok": self.ok,
            "outcome": self.outcome,
            "generation": self.generation,
            "message": self.message,
            "models": [
                {
                    "name": o.model,
                    "action": o.action,
                    "available": list(o.available),
                    "settling": list(o.settling),
                    "errors": list(o.errors),
                }
                for o in self.outcomes
            ],
        }


@dataclass
class DaemonState:
    """The daemon-wide facts status shows; the composition root keeps them current."""

    pid: int
    config_path: str | None
    state_dir: str | None
    phase: str = "starting"  # starting, serving, reloading, stopping
    address: str = ""
    metrics_address: str | None = None
    rest_address: str | None = None
    generation: int = 0
    last_reload: ReloadResult | None = None
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)


def summarize(outcomes: Iterable[ModelOutcome]) -> str:
    """One log line for a config applied: each model's action, available versions, settling ones and errors."""
    parts = []
    for o in outcomes:
        text = f"{o.model} {o.action} (available: {','.join(map(str, o.available)) or 'none'})"
        if o.settling:
            text += " settling: " + ",".join(map(str, o.settling))
        if o.errors:
            text += " errors: " + "; ".join(o.errors)
        parts.append(text)
    return "; ".join(parts) or "no models"


def serving_summary(state: DaemonState, models: Iterable[ModelSnapshot]) -> str:
    """A short line for systemd's STATUS=: ``serving 2/3 models on 127.0.0.1:9000 (config generation 4)``."""
    configured = [m for m in models if m.configured]
    serving = sum(1 for m in configured if m.serving)
    return f"serving {serving}/{len(configured)} models on {state.address} (config generation {state.generation})"


def status_report(
    state: DaemonState,
    models: Iterable[ModelSnapshot],
    load_seconds: LoadSeconds,
    object_stores: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``object_stores``: the mirror status of each model whose base path is in object storage, by model name."""
    stores = object_stores or {}
    return {
        "format": FORMAT,
        "pid": state.pid,
        "state": state.phase,
        "started_at": state.started_at,
        "uptime_s": round(time.monotonic() - state.started_monotonic, 3),
        "address": state.address,
        "metrics_address": state.metrics_address,
        "rest_address": state.rest_address,
        "state_dir": state.state_dir,
        "config_path": state.config_path,
        "config_generation": state.generation,
        "last_reload": state.last_reload.to_dict() if state.last_reload else None,
        "models": [model_report(model, load_seconds, stores.get(model.name)) for model in models],
    }


def model_report(
    model: ModelSnapshot, load_seconds: LoadSeconds, object_store: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``object_store``: the mirror's status for an ``s3://`` model (None for a local one). Its error is the model's
    problem too when the manager has none, so that ``ovmsctl status`` shows it like any repository problem."""
    problem = model.problem
    if not problem and object_store is not None and object_store.get("error"):
        problem = f"object store: {object_store['error']} (the cached copy keeps serving)"
    return {
        "name": model.name,
        "configured": model.configured,
        "base_path": model.base_path,
        "problem": problem,
        "object_store": dict(object_store) if object_store is not None else None,
        "versions": [version_report(v, load_seconds) for v in model.versions],
    }


def version_report(version: VersionSnapshot, load_seconds: LoadSeconds) -> dict[str, Any]:
    status = version.status
    cache = version.cache
    return {
        "version": status.version,
        "state": status.state.name,
        "error_code": status.error_code.name,
        "error": status.error_message,
        "since": status.since,
        "in_flight": version.in_flight,
        "load_seconds": load_seconds(status.model, status.version),
        "compiled_shapes": list(version.compiled_shapes),
        "nireq": version.nireq,
        "shape_cache": None
        if cache is None
        else {
            "compiles": cache.compiles,
            "hits": cache.hits,
            "evictions": cache.evictions,
            "failures": cache.failures,
            "last_compile_ms": round(cache.last_compile_ms, 1),
            "bytes": cache.bytes,
        },
    }
