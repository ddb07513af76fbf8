"""OVMS's ``monitoring`` section: parsed into the typed config, checked, and obeyed by a real daemon's /metrics."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ovmsd.config.loader import check_config_text, parse_config_text
from ovmsd.config.models import METRIC_FAMILIES, MonitoringConfig
from ovmsd.observe.metrics import Metrics, StageCollector
from ovmsd.observe.metrics_filter import FamilyFilter
from tests.support.daemon import Daemon, free_port
from tests.support.models import save, scale_model

MODELS = [{"config": {"name": "m", "base_path": "/m"}}]


def config_text(monitoring: Any) -> str:
    return json.dumps({"model_config_list": MODELS, "monitoring": monitoring})


def test_the_section_becomes_typed_config() -> None:
    listed = {"metrics": {"enable": True, "metrics_list": ["ovms_requests_success", "ovms_request_time_us"]}}
    config = parse_config_text(config_text(listed))
    assert config.monitoring == MonitoringConfig(True, ("ovms_requests_success", "ovms_request_time_us"))
    assert config.warnings == (), "monitoring is served now: no 'accepted but ignored' warning"
    assert parse_config_text(config_text({"metrics": {"enable": False}})).monitoring.disabled
    absent = parse_config_text(json.dumps({"model_config_list": MODELS})).monitoring
    assert absent == MonitoringConfig() and not absent.disabled and not absent.asked_for


def test_unknown_metric_names_are_errors_naming_the_valid_ones() -> None:
    text = '{"model_config_list": [],\n "monitoring": {"metrics": {"metrics_list": ["ovms_requests_sucess"]}}}'
    [issue] = check_config_text(text).issues
    assert issue.pointer == "/monitoring/metrics/metrics_list/0" and issue.line == 2
    assert "unknown metric 'ovms_requests_sucess' (did you mean 'ovms_requests_success'?)" in issue.message
    assert all(name in issue.message for name in METRIC_FAMILIES)


def test_the_schema_checks_the_sections_shape() -> None:
    messages = [
        i.message
        for i in check_config_text(
            config_text({"metrics": {"enable": "yes", "metrics_list": "ovms_requests_success", "port": 1}})
        ).issues
    ]
    assert "enable must be true or false, got 'yes'" in messages
    assert "metrics_list must be a list of metric names, got 'ovms_requests_success'" in messages
    assert any(m.startswith("unknown key 'port'") for m in messages)
    assert (
        check_config_text(config_text({"metric": {}}))
        .issues[0]
        .message.startswith("unknown key 'metric' (did you mean 'metrics'?)")
    )


def test_the_valid_names_are_the_families_the_daemon_registers() -> None:
    metrics = Metrics(list, lambda: 1)
    metrics.registry.register(StageCollector())  # what --stage-timers adds
    families = {family.name for family in metrics.registry.collect()}
    assert families == set(METRIC_FAMILIES)


def test_the_filter_keeps_only_the_named_families() -> None:
    registry = CollectorRegistry()
    Counter("kept", "k", registry=registry).inc()
    Counter("dropped", "d", registry=registry).inc()
    assert {f.name for f in FamilyFilter(registry, ["kept"]).collect()} == {"kept"}
    assert {f.name for f in FamilyFilter(registry).collect()} == {"kept", "dropped"}
    restricted = FamilyFilter(registry, ["kept"]).restricted_registry(["kept_total", "dropped_total"])
    assert b"kept_total 1.0" in generate_latest(restricted) and b"dropped" not in generate_latest(restricted)


def families_served(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return {family.name for family in text_string_to_metric_families(response.read().decode())}


def start(tmp_path: Path, monitoring: Any, *, with_port: bool = True) -> tuple[Daemon, int]:
    """A daemon serving one model with this monitoring section, and --metrics_port (OVMS's spelling) if asked."""
    save(scale_model([1, 4]), tmp_path / "scale", 1)
    document = {"model_config_list": [{"config": {"name": "scale", "base_path": str(tmp_path / "scale")}}]}
    if monitoring is not None:
        document["monitoring"] = monitoring
    config = tmp_path / "config.json"
    config.write_text(json.dumps(document))
    metrics_port = free_port()
    args = ["--config", str(config), "--file-system-poll-wait-seconds", "0"]
    if with_port:
        args += ["--metrics_port", str(metrics_port)]
    return Daemon(args, tmp_path / "d.log"), metrics_port


def test_a_real_daemon_exports_only_the_metrics_list(tmp_path: Path) -> None:
    wanted = ["ovms_requests_success", "ovms_current_requests", "ovmsctl_config_generation"]
    daemon, port = start(tmp_path, {"metrics": {"enable": True, "metrics_list": wanted}})
    with daemon:
        daemon.wait_available("scale")
        daemon.metadata("scale")  # one success counted, so the counter family has a sample
        assert families_served(f"http://127.0.0.1:{port}/metrics") == set(wanted)
        assert daemon.stop() == 0, daemon.log()


def test_enable_false_turns_metrics_off_even_with_a_port(tmp_path: Path) -> None:
    daemon, port = start(tmp_path, {"metrics": {"enable": False}})
    with daemon:
        daemon.wait_available("scale")
        assert "metrics are off: the config's monitoring.metrics.enable is false" in daemon.log()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the metrics port stays closed"
        assert daemon.stop() == 0, daemon.log()


def test_a_section_asking_for_metrics_without_a_port_says_what_to_do(tmp_path: Path) -> None:
    daemon, _ = start(tmp_path, {"metrics": {"enable": True}}, with_port=False)
    with daemon:
        daemon.wait_available("scale")
        expected = "asks for metrics: give --metrics-port (or --metrics-enable with --rest-port) to serve them"
        assert expected in daemon.log()
        assert daemon.stop() == 0, daemon.log()


@pytest.mark.parametrize("monitoring", [None, {"metrics": {}}])
def test_without_a_list_every_family_is_exported(tmp_path: Path, monitoring: Any) -> None:
    daemon, port = start(tmp_path, monitoring)
    with daemon:
        daemon.wait_available("scale")
        daemon.metadata("scale")
        served = families_served(f"http://127.0.0.1:{port}/metrics")
        assert {"ovms_requests_success", "ovmsctl_config_generation", "process_cpu_seconds"} <= served
        assert daemon.stop() == 0, daemon.log()
