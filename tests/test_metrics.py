"""Prometheus metrics on --metrics-port and the standard gRPC health service, against a real daemon."""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as kserve_pb
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2_grpc as kserve_grpc
from ovmsd.observe.metrics import RequestMetrics
from ovmsd.serving.states import State
from tests.support.ctl import wait_until
from tests.support.daemon import Daemon, free_port, predict_request, rpc_error, write_config
from tests.support.models import save, scale_model

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("metrics")
    save(scale_model([1, 4]), root / "scale", 1)
    save(scale_model([1, 4]), root / "auto", 1)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    config = write_config(
        root / "config.json",
        [
            {"name": "scale", "base_path": str(root / "scale")},
            {"name": "auto", "base_path": str(root / "auto"), "batch_size": "auto"},
            {"name": "broken", "base_path": str(root / "broken")},
        ],
    )
    metrics_port = free_port()
    args = ["--config", str(config), "--metrics-port", str(metrics_port), "--file-system-poll-wait-seconds", "0"]
    with Daemon(args, root / "daemon.log") as d:
        d.wait_available("scale", "auto")
        d.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
        yield d
        assert d.stop() == 0, d.log()


def scrape(daemon: Daemon) -> Samples:
    with urllib.request.urlopen(daemon.metrics_url, timeout=10) as response:  # type: ignore[attr-defined]
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


REQUEST = {"api": "TensorFlowServing", "interface": "gRPC", "method": "Predict"}


def delta(before: Samples, after: Samples) -> Callable[..., float]:
    def moved(metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    return moved


def test_request_counters_and_histograms_move(daemon: Daemon) -> None:
    before = scrape(daemon)
    for _ in range(5):
        daemon.predict("scale", {"x": np.ones((1, 4), np.float32)})
    rpc_error(lambda: daemon.predict("scale", {"x": np.ones((1, 5), np.float32)}))  # wrong shape: a failure
    rpc_error(lambda: daemon.predict("nope", {"x": np.ones((1, 4), np.float32)}))  # unknown model: no series
    after = scrape(daemon)
    moved = delta(before, after)
    labels = {"name": "scale", "version": "1"}
    assert moved("ovms_requests_success_total", **labels, **REQUEST) == 5
    assert moved("ovms_requests_fail_total", **labels, **REQUEST) == 1
    time_labels = {**labels, "api": "TensorFlowServing", "interface": "gRPC"}
    assert moved("ovms_request_time_us_count", **time_labels) == 6
    assert moved("ovms_request_time_us_sum", **time_labels) > 0
    assert moved("ovms_inference_time_us_count", **labels) == 5
    assert value(after, "ovms_inference_time_us_bucket", **labels, le="+Inf") == value(
        after, "ovms_inference_time_us_count", **labels
    )
    assert value(after, "ovms_current_requests", **labels) == 0
    assert not any(labels_ for (_, labels_) in after if ("name", "nope") in labels_)


def test_metadata_requests_are_counted(daemon: Daemon) -> None:
    before = scrape(daemon)
    daemon.metadata("scale")
    labels = {"name": "scale", "version": "1", **REQUEST, "method": "GetModelMetadata"}
    assert delta(before, scrape(daemon))("ovms_requests_success_total", **labels) == 1


def test_python_threads_are_the_daemons_own_not_the_whole_process(daemon: Daemon) -> None:
    python_threads = value(scrape(daemon), "ovmsctl_python_threads")
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    process_threads = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))
    # the main thread, gRPC's server thread, the load workers, ... but not gRPC's and OpenVINO's native threads
    assert 3 <= python_threads < process_threads, (python_threads, process_threads)


def test_reshape_compiles_and_shape_cache_hits(daemon: Daemon) -> None:
    before = scrape(daemon)
    for _ in range(3):
        daemon.predict("auto", {"x": np.ones((2, 4), np.float32)})
    moved = delta(before, scrape(daemon))
    assert moved("ovmsctl_reshape_compiles_total", name="auto", version="1") == 1
    assert moved("ovmsctl_shape_cache_hits_total", name="auto", version="1") == 2
    assert value(scrape(daemon), "ovmsctl_compiled_shapes", name="auto", version="1") == 2


def test_version_loads_and_reloads_by_outcome(daemon: Daemon) -> None:
    samples = scrape(daemon)
    assert value(samples, "ovmsctl_version_loads_total", name="scale", outcome="success") == 1
    assert value(samples, "ovmsctl_version_loads_total", name="broken", outcome="failure") == 1
    assert value(samples, "ovmsctl_version_load_seconds_count", name="scale") == 1
    assert value(samples, "ovmsctl_version_load_seconds_sum", name="scale") > 0
    generation = value(samples, "ovmsctl_config_generation")
    reloads = sum(value(samples, "ovmsctl_config_reloads_total", outcome=o) for o in ("applied", "applied_with_errors"))

    daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: value(scrape(daemon), "ovmsctl_config_generation") == generation + 1, 30, "reload applied")
    after = scrape(daemon)
    # "broken" still fails on the same files: the reload is applied, with errors
    assert (
        value(after, "ovmsctl_config_reloads_total", outcome="applied_with_errors")
        + value(after, "ovmsctl_config_reloads_total", outcome="applied")
        == reloads + 1
    )
    assert value(after, "ovmsctl_config_reloads_total", outcome="rejected") == 0


def test_health_overall_and_per_model(daemon: Daemon) -> None:
    stub = health_pb2_grpc.HealthStub(daemon.channel)

    def check(service: str) -> int:
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert check("") == serving
    assert check("tensorflow.serving.PredictionService") == serving
    assert check("scale") == serving
    assert check("broken") == not_serving
    error = rpc_error(lambda: check("nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    watch = stub.Watch(health_pb2.HealthCheckRequest(service="scale"), timeout=10)
    assert next(watch).status == serving
    watch.cancel()


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    save(scale_model([1, 4]), tmp_path / "scale", 1)
    with Daemon(["--model-name", "scale", "--model-path", str(tmp_path / "scale")], tmp_path / "d.log") as d:
        d.wait_available("scale")
        assert "metrics on" not in d.log()
        request = predict_request("scale", {"x": np.ones((1, 4), np.float32)})
        assert d.prediction.Predict(request, timeout=10).outputs["y"].tensor_content


def test_every_model_method_counts_its_failures_too(daemon: Daemon) -> None:
    before = scrape(daemon)
    assert rpc_error(lambda: daemon.metadata("scale", 7)).code() == grpc.StatusCode.NOT_FOUND
    daemon.metadata("scale")
    assert rpc_error(lambda: daemon.status("scale", 9)).code() == grpc.StatusCode.NOT_FOUND
    moved = delta(before, scrape(daemon))
    metadata = {"api": "TensorFlowServing", "interface": "gRPC", "method": "GetModelMetadata"}
    assert moved("ovms_requests_fail_total", name="scale", version="", **metadata) == 1  # no version 7: the model
    assert moved("ovms_requests_success_total", name="scale", version="1", **metadata) == 1
    status = {**metadata, "method": "GetModelStatus"}
    assert moved("ovms_requests_fail_total", name="scale", version="", **status) == 1
    made_up = [key for key in scrape(daemon) if dict(key[1]).get("version") in ("7", "9")]
    assert not made_up, "a series per number a client makes up would grow without bound"


def test_a_version_that_ends_leaves_metrics(tmp_path: Path) -> None:
    save(scale_model([1, 4], factor=1.0), tmp_path / "scale", 1)
    config = write_config(tmp_path / "config.json", [{"name": "scale", "base_path": str(tmp_path / "scale")}])
    metrics_port = free_port()
    args = ["--config", str(config), "--metrics-port", str(metrics_port), "--file-system-poll-wait-seconds", "1"]
    with Daemon(args, tmp_path / "daemon.log") as d:
        d.wait_available("scale")
        d.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
        x = {"x": np.ones((1, 4), np.float32)}
        d.predict("scale", x)

        def versions_in(samples: Samples) -> set[str]:
            """The versions with series ("": requests that named none and no version answered, e.g. GetModelStatus
            polls, a model's series, not a version's)."""
            return {dict(labels)["version"] for (_, labels) in samples if dict(labels).get("version")}

        assert "1" in versions_in(scrape(d))
        save(scale_model([1, 4], factor=2.0), tmp_path / "scale", 2)  # the latest version only: 1 retires
        d.wait_for_states({"scale": {1: State.END, 2: State.AVAILABLE}})
        d.predict("scale", x)
        after = scrape(d)
        assert versions_in(after) == {"2"}, sorted(key for key in after if dict(key[1]).get("version") == "1")
        assert value(after, "ovms_requests_success_total", name="scale", version="2", **REQUEST) == 1
        assert d.stop() == 0, d.log()


def test_forgetting_a_version_drops_only_its_series() -> None:
    registry = CollectorRegistry()
    requests = RequestMetrics(registry)
    methods = [("TensorFlowServing", "Predict"), ("TensorFlowServing", "GetModelMetadata"), ("KServe", "ModelInfer")]
    for model, version in (("m", 1), ("m", 2), ("other", 1)):
        for api, method in methods:
            requests.series(model, str(version), api, "gRPC", method).finished(True, time.perf_counter_ns())
        requests.inferred(model, version, 1000)

    def series_left() -> set[tuple[str, str]]:
        return {
            (s.labels["name"], s.labels["version"])
            for family in registry.collect()
            for s in family.samples
            if "version" in s.labels
        }

    assert series_left() == {("m", "1"), ("m", "2"), ("other", "1")}
    requests.forget_version("m", 1)
    assert series_left() == {("m", "2"), ("other", "1")}
    requests.forget_version("m", 1)  # nothing left to drop: no error
    requests.series("m", "2", "KServe", "gRPC", "ModelInfer").finished(True, time.perf_counter_ns())  # still counts
    assert series_left() == {("m", "2"), ("other", "1")}


def test_what_a_client_makes_up_grows_no_series(daemon: Daemon) -> None:
    kserve = kserve_grpc.GRPCInferenceServiceStub(daemon.channel)
    before = scrape(daemon)
    for name, version in (("scale", "not-a-number"), ("made-up-model", "not-a-number"), ("scale", "123456")):
        request = kserve_pb.ModelInferRequest(model_name=name, model_version=version)
        assert rpc_error(lambda r=request: kserve.ModelInfer(r, timeout=10)).code() in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND,
        )
    after = scrape(daemon)
    infer = {"api": "KServe", "interface": "gRPC", "method": "ModelInfer"}
    assert delta(before, after)("ovms_requests_fail_total", name="scale", version="", **infer) == 2, "the model's"
    made_up = [key for key in after if dict(key[1]).get("name") == "made-up-model"]
    made_up += [key for key in after if dict(key[1]).get("version") in ("not-a-number", "123456")]
    assert not made_up, made_up
