"""Prometheus metrics on ``--metrics-port``: OVMS's request metrics plus what no other model server exports.

The request path does as little as possible: one dictionary lookup for the (model, version, method) series, one
counter increment and two histogram observations, no ``labels()`` call. Everything else is read when Prometheus
scrapes: in-flight requests and shape-cache counters come from the manager, the config generation from the daemon.

Names: ``ovms_requests_success``, ``ovms_requests_fail``, ``ovms_request_time_us``, ``ovms_inference_time_us`` and
``ovms_current_requests`` are OVMS's (counters carry prometheus_client's ``_total`` suffix on the wire, e.g.
``ovms_requests_success_total``); ours start with ``ovmsctl_``.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from prometheus_client.registry import Collector

from ovmsd import stages
from ovmsd.observe.metrics_filter import FamilyFilter
from ovmsd.observe.report import RELOAD_OUTCOMES
from ovmsd.serving.states import State

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ovmsd.serving.states import ModelSnapshot

# OVMS's buckets: floor(10 * 1.8**i) microseconds, 33 of them (10 us .. about 25 minutes).
MICROSECOND_BUCKETS = tuple(float(int(10 * 1.8**i)) for i in range(33))
LOAD_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

Models = Callable[[], Iterable["ModelSnapshot"]]

disable_created_metrics()  # no *_created series next to every counter


@dataclass(frozen=True)
class RequestSeries:
    """The metric children of one (model, version, api, interface, method): what a request updates when it ends."""

    success: Counter
    fail: Counter
    request_time: Histogram

    def finished(self, ok: bool, started_ns: int) -> None:
        (self.success if ok else self.fail).inc()
        self.request_time.observe((time.perf_counter_ns() - started_ns) / 1000)


SeriesKey = tuple[str, str, str, str, str]  # name, version, api, interface, method


class RequestMetrics:
    """OVMS's request metrics. Every front end's wrapper calls ``series(...).finished`` once per request; the data
    plane calls ``inferred`` once per inference. ``version`` is the version that served, or for a request that
    failed before one was chosen the version it asked for ("" for the default version)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        request_labels = ["name", "version", "api", "interface", "method"]
        self._success = Counter(
            "ovms_requests_success", "Number of successful requests to a model.", request_labels, registry=registry
        )
        self._fail = Counter(
            "ovms_requests_fail", "Number of failed requests to a model.", request_labels, registry=registry
        )
        self._request_time = Histogram(
            "ovms_request_time_us",
            "Processing time of requests to a model, in microseconds.",
            ["name", "version", "api", "interface"],
            buckets=MICROSECOND_BUCKETS,
            registry=registry,
        )
        self._inference_time = Histogram(
            "ovms_inference_time_us",
            "Inference time of requests to a model, in microseconds (waiting for an infer request and any reshape "
            "included).",
            ["name", "version"],
            buckets=MICROSECOND_BUCKETS,
            registry=registry,
        )
        self._unauthenticated = Counter(
            "ovmsctl_unauthenticated_requests",
            "Requests refused for a missing or wrong API key (never labelled by model: anyone can send them).",
            ["api", "interface"],
            registry=registry,
        )
        self._series: dict[SeriesKey, RequestSeries] = {}
        self._inference: dict[tuple[str, int], Histogram] = {}
        self.known_model: Callable[[str], bool] = lambda name: True  # the daemon's models (the manager's answer)
        self._lock = threading.Lock()

    def series(self, name: str, version: str, api: str, interface: str, method: str) -> RequestSeries:
        key = (name, version, api, interface, method)
        found = self._series.get(key)
        return found if found is not None else self._create(key)

    def _create(self, key: SeriesKey) -> RequestSeries:
        name, version, api, interface, method = key
        with self._lock:
            return self._series.setdefault(
                key,
                RequestSeries(
                    success=self._success.labels(name, version, api, interface, method),
                    fail=self._fail.labels(name, version, api, interface, method),
                    request_time=self._request_time.labels(name, version, api, interface),
                ),
            )

    def forget_version(self, name: str, version: int) -> None:
        """Drop the series of a version that ended: it serves no more, and /metrics must not grow with every version
        ever published (as the manager's own per-version metrics, which END versions leave at once)."""
        number = str(version)
        with self._lock:
            for key in [key for key in self._series if key[0] == name and key[1] == number]:
                del self._series[key]
                api, interface = key[2], key[3]
                for family, labels in (
                    (self._success, key),
                    (self._fail, key),
                    (self._request_time, (name, number, api, interface)),  # shared by the methods of a front end
                ):
                    with contextlib.suppress(KeyError):
                        family.remove(*labels)
            if self._inference.pop((name, version), None) is not None:
                with contextlib.suppress(KeyError):
                    self._inference_time.remove(name, number)

    def unauthenticated(self, api: str, interface: str) -> None:
        self._unauthenticated.labels(api, interface).inc()

    def inferred(self, name: str, version: int, elapsed_ns: int) -> None:
        child = self._inference.get((name, version))
        if child is None:
            with self._lock:
                child = self._inference.setdefault((name, version), self._inference_time.labels(name, str(version)))
        child.observe(elapsed_ns / 1000)


class ServingCollector(Collector):
    """Reads the manager when Prometheus scrapes: in-flight requests, compiled shapes, shape-cache counters."""

    def __init__(self, models: Models, generation: Callable[[], int]) -> None:
        self._models = models
        self._generation = generation

    def collect(self) -> Iterator[Metric]:
        labels = ["name", "version"]
        current = GaugeMetricFamily("ovms_current_requests", "Number of requests being processed.", labels=labels)
        compiles = CounterMetricFamily(
            "ovmsctl_reshape_compiles", "Shape variants compiled on demand (reshape).", labels=labels
        )
        failures = CounterMetricFamily("ovmsctl_reshape_failures", "On-demand reshapes that failed.", labels=labels)
        hits = CounterMetricFamily(
            "ovmsctl_shape_cache_hits", "Requests served by an already compiled shape variant.", labels=labels
        )
        evictions = CounterMetricFamily(
            "ovmsctl_shape_cache_evictions", "Compiled shape variants dropped from the cache.", labels=labels
        )
        shapes = GaugeMetricFamily("ovmsctl_compiled_shapes", "Compiled shape variants kept.", labels=labels)
        for model in self._models():
            for version in model.versions:
                if version.status.state == State.END:
                    continue
                values = [model.name, str(version.status.version)]
                current.add_metric(values, version.in_flight)
                if version.cache is None:
                    continue
                compiles.add_metric(values, version.cache.compiles)
                failures.add_metric(values, version.cache.failures)
                hits.add_metric(values, version.cache.hits)
                evictions.add_metric(values, version.cache.evictions)
                shapes.add_metric(values, len(version.compiled_shapes))
        yield from (current, compiles, failures, hits, evictions, shapes)
        yield GaugeMetricFamily(
            "ovmsctl_config_generation", "Live config generation (1 after start-up, +1 per applied reload).",
            value=self._generation(),
        )  # fmt: skip


class StageCollector(Collector):
    """The request path's stage totals (``--stage-timers``, ``ovmsd.stages``) as counters, read when Prometheus
    scrapes."""

    def collect(self) -> Iterator[Metric]:
        seconds = CounterMetricFamily(
            "ovmsctl_request_stage_seconds", "Time requests spent in each stage of the request path (--stage-timers).",
            labels=["stage"],
        )  # fmt: skip
        counts = CounterMetricFamily(
            "ovmsctl_request_stage_count", "How many times each stage of the request path ended (--stage-timers).",
            labels=["stage"],
        )  # fmt: skip
        found = stages.totals()
        for stage in sorted(found, key=lambda s: stages.STAGES.index(s) if s in stages.STAGES else len(stages.STAGES)):
            ns, count = found[stage]
            seconds.add_metric([stage], ns / 1e9)
            counts.add_metric([stage], count)
        yield seconds
        yield counts


class PythonThreadsCollector(Collector):
    """The daemon's Python threads, read when Prometheus scrapes.

    ``process_*`` has no thread count, and the process's (``/proc``) mixes in native threads the daemon does not own:
    OpenVINO keeps each compiled model's stream threads pooled for reuse at the highest number of compiled models
    that were ever alive at once, so that count steps up with the load's history and never comes back down.
    """

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ovmsctl_python_threads", "Python threads alive in the daemon (not OpenVINO's or gRPC's native threads).",
            value=threading.active_count(),
        )  # fmt: skip


class PemFiles(Protocol):
    """Certificate files for the metrics port (``ovmsd.api.tls.Tls.pem_files``)."""

    cert: Path
    key: Path
    client_ca: Path | None
    verify_clients: bool


class Metrics:
    def __init__(self, models: Models, generation: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = RequestMetrics(self.registry)
        self._reloads = Counter(
            "ovmsctl_config_reloads", "Config reloads by outcome.", ["outcome"], registry=self.registry
        )
        for outcome in RELOAD_OUTCOMES:
            self._reloads.labels(outcome)
        self._loads = Counter(
            "ovmsctl_version_loads", "Model version loads by outcome.", ["name", "outcome"], registry=self.registry
        )
        self._load_seconds = Histogram(
            "ovmsctl_version_load_seconds",
            "Time to load a model version (read, configure, compile).",
            ["name"],
            buckets=LOAD_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._object_store_errors = Counter(
            "ovmsctl_object_store_errors",
            "Failed attempts to list or download a model's object-store base path (the cached copy keeps serving).",
            ["name"],
            registry=self.registry,
        )
        self.registry.register(ServingCollector(models, generation))
        self.registry.register(PythonThreadsCollector())
        self._server: WSGIServer | None = None

    def reloaded(self, outcome: str) -> None:
        self._reloads.labels(outcome).inc()

    def version_loaded(self, name: str, version: int, ok: bool, seconds: float) -> None:
        self._loads.labels(name, "success" if ok else "failure").inc()
        self._load_seconds.labels(name).observe(seconds)

    def object_store_error(self, name: str) -> None:
        self._object_store_errors.labels(name).inc()

    def page(self, families: Collection[str] | None = None) -> tuple[bytes, str]:
        """The /metrics page (only ``families`` when given) and its content type, for the REST port's /metrics."""
        return generate_latest(FamilyFilter(self.registry, families)), CONTENT_TYPE_LATEST

    def serve(
        self, address: str, port: int, families: Collection[str] | None = None, tls: PemFiles | None = None
    ) -> int:
        """Serve /metrics over HTTP (HTTPS with ``tls``), only ``families`` when given (the config's metrics_list);
        returns the port bound. Raises OSError (port in use...)."""
        certificates: dict[str, Any] = {}
        if tls is not None:
            certificates = {
                "certfile": str(tls.cert),
                "keyfile": str(tls.key),
                "client_cafile": str(tls.client_ca) if tls.client_ca else None,
                "client_auth_required": tls.verify_clients,
            }
        registry = FamilyFilter(self.registry, families)
        server, _ = start_http_server(port, addr=address, registry=registry, **certificates)
        self._server = server
        return int(server.server_port)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The metrics port's TLS context (for certificate reloads), None without TLS."""
        sock = self._server.socket if self._server is not None else None
        return sock.context if isinstance(sock, ssl.SSLSocket) else None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
