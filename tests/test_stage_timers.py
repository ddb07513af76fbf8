"""--stage-timers: each stage of the request path counted once per request, per front end, as metrics."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import Daemon, free_port, rpc_error, write_config
from tests.support.models import save, scale_model
from tests.support.rest import Rest, kserve_binary_body, kserve_json_input, kserve_outputs

GRPC_STAGES = ("parse", "admit", "decode", "lookup", "plan", "wait", "copy", "infer", "encode", "release", "metrics",
               "respond", "serialize")  # fmt: skip
REST_STAGES = ("http-read", "handoff", "admit", "decode", "lookup", "plan", "wait", "copy", "infer", "encode",
               "release", "metrics", "http-send")  # fmt: skip
# KServe binary inference on the event loop: no hand-off, and the waits for a place and the inference are spans
LOOP_STAGES = ("http-read", "decode", "lookup", "infer", "encode", "http-send")

Stages = dict[str, tuple[float, float]]  # stage -> (seconds, count)


def start(root: Path, *extra: str) -> tuple[Daemon, int, int]:
    save(scale_model([1, 4]), root / "scale", 1)
    config = write_config(root / "config.json", [{"name": "scale", "base_path": str(root / "scale")}])
    rest_port, metrics_port = free_port(), free_port()
    args = ["--config", str(config), "--rest-port", str(rest_port), "--rest-bind-address", "127.0.0.1",
            "--metrics-port", str(metrics_port), "--file-system-poll-wait-seconds", "0", *extra]  # fmt: skip
    return Daemon(args, root / "daemon.log"), rest_port, metrics_port


def scrape(metrics_port: int) -> Stages:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ovmsctl_request_stage_seconds_total":
                found.setdefault(sample.labels["stage"], [0.0, 0.0])[0] = sample.value
            elif sample.name == "ovmsctl_request_stage_count_total":
                found.setdefault(sample.labels["stage"], [0.0, 0.0])[1] = sample.value
    return {stage: (seconds, count) for stage, (seconds, count) in found.items()}


def grown(before: Stages, after: Stages) -> Stages:
    return {
        stage: (seconds - before.get(stage, (0.0, 0.0))[0], count - before.get(stage, (0.0, 0.0))[1])
        for stage, (seconds, count) in after.items()
    }


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Rest, int]]:
    daemon, rest_port, metrics_port = start(tmp_path_factory.mktemp("stages"), "--stage-timers")
    with daemon:
        daemon.wait_available("scale")
        rest = Rest(rest_port)
        yield daemon, rest, metrics_port
        rest.close()
        assert daemon.stop() == 0, daemon.log()


def test_every_grpc_stage_is_counted_once_per_request(timed: tuple[Daemon, Rest, int]) -> None:
    daemon, _, metrics_port = timed
    before = scrape(metrics_port)
    for i in range(5):
        out = daemon.predict("scale", {"x": np.full((1, 4), i, np.float32)})
        np.testing.assert_array_equal(out["y"], np.full((1, 4), 2 * i, np.float32))
    moved = grown(before, scrape(metrics_port))
    for stage in GRPC_STAGES:
        seconds, count = moved.get(stage, (0.0, 0.0))
        assert count == 5, (stage, moved)
        assert 0 < seconds < 5, (stage, moved)
    assert moved.get("http-read", (0.0, 0.0))[1] == 0  # no REST request was made


def test_every_rest_stage_is_counted_per_request(timed: tuple[Daemon, Rest, int]) -> None:
    _, rest, metrics_port = timed
    body = json.dumps({"inputs": [kserve_json_input("x", np.ones((1, 4), np.float32))]}).encode()
    before = scrape(metrics_port)
    for _ in range(4):
        reply = rest.request("POST", "/v2/models/scale/infer", body, {"Content-Type": "application/json"})
        assert reply.status == 200, reply.body
        assert json.loads(reply.body)["outputs"][0]["data"] == [2.0] * 4
    moved = grown(before, scrape(metrics_port))
    for stage in REST_STAGES:
        seconds, count = moved.get(stage, (0.0, 0.0))
        expected = 8 if stage == "handoff" else 4  # to a request thread and back
        assert count == expected, (stage, moved)
        assert 0 < seconds < 5, (stage, moved)
    assert moved.get("parse", (0.0, 0.0))[1] == 0  # no gRPC request was made


def test_binary_rest_inference_stays_on_the_event_loop(timed: tuple[Daemon, Rest, int]) -> None:
    _, rest, metrics_port = timed
    body, headers = kserve_binary_body({"x": np.ones((1, 4), np.float32)}, ["y"])
    before = scrape(metrics_port)
    for _ in range(4):
        reply = rest.request("POST", "/v2/models/scale/infer", body, headers)
        assert reply.status == 200, reply.body
        np.testing.assert_array_equal(kserve_outputs(reply)["y"], np.full((1, 4), 2, np.float32))
    moved = grown(before, scrape(metrics_port))
    for stage in LOOP_STAGES:
        seconds, count = moved.get(stage, (0.0, 0.0))
        assert count == 4, (stage, moved)
        assert 0 < seconds < 5, (stage, moved)
    assert moved.get("handoff", (0.0, 0.0))[1] == 0, "no request thread took part"
    assert moved.get("copy", (0.0, 0.0))[1] == 0, moved

    body, headers = kserve_binary_body({"x": np.ones((1, 4), np.float32)}, ["y"], binary_outputs=False)
    before = scrape(metrics_port)
    reply = rest.request("POST", "/v2/models/scale/infer", body, headers)
    assert reply.status == 200 and json.loads(reply.body)["outputs"][0]["data"] == [2.0] * 4, reply.body
    moved = grown(before, scrape(metrics_port))
    assert moved["handoff"][1] == 2, "an output asked for as JSON is written on a request thread"


def test_a_failed_request_ends_its_stages_early(timed: tuple[Daemon, Rest, int]) -> None:
    daemon, _, metrics_port = timed
    before = scrape(metrics_port)
    rpc_error(lambda: daemon.predict("scale", {"x": np.ones((1, 5), np.float32)}))  # wrong shape
    moved = grown(before, scrape(metrics_port))
    assert moved["admit"][1] == 1 and moved["decode"][1] == 1
    assert moved.get("infer", (0.0, 0.0))[1] == 0, moved


def test_without_the_option_no_stage_is_exported(tmp_path: Path) -> None:
    daemon, _, metrics_port = start(tmp_path)
    with daemon:
        daemon.wait_available("scale")
        daemon.predict("scale", {"x": np.ones((1, 4), np.float32)})
        assert scrape(metrics_port) == {}
        assert daemon.stop() == 0, daemon.log()


def test_stage_timers_without_metrics_say_so(tmp_path: Path) -> None:
    save(scale_model([1, 4]), tmp_path / "scale", 1)
    config = write_config(tmp_path / "config.json", [{"name": "scale", "base_path": str(tmp_path / "scale")}])
    args = ["--config", str(config), "--stage-timers", "--file-system-poll-wait-seconds", "0"]
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("scale")
        daemon.predict("scale", {"x": np.ones((1, 4), np.float32)})
        assert daemon.stop() == 0, daemon.log()
        assert "--stage-timers: the stage times are exported with the metrics" in daemon.log()
