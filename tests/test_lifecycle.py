"""The daemon's lifecycle as an operator drives it: ``ovmsctl start/status/reload/stop`` in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from ovmsd.api.grpc.proto import prediction_service_pb2_grpc
from ovmsd.api.grpc.tensors import tensor_to_numpy
from ovmsd.runtime.statedir import pid_alive
from tests.support.ctl import Ctl, wait_until
from tests.support.daemon import REPO, predict_request, write_config
from tests.support.models import save, scale_model

# No live updates here: reloads happen when the test asks, so each step's outcome is known.
QUIET = ("--port", "0", "--file-system-poll-wait-seconds", "0")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save(scale_model([1, 4], factor=2.0), root / "double", 1)
    save(scale_model([1, 4], factor=3.0), root / "triple", 1)
    return root


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[Ctl]:
    control = Ctl(tmp_path / "state")
    yield control
    control.cleanup()


def config_with(path: Path, models: Path, *names: str) -> Path:
    return write_config(path, [{"name": n, "base_path": str(models / n)} for n in names])


def versions(report: dict, model: str) -> dict[int, str]:
    [entry] = [m for m in report["models"] if m["name"] == model]
    return {v["version"]: v["state"] for v in entry["versions"]}


def predict(address: str, model: str) -> np.ndarray:
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request(model, {"x": np.ones((1, 4), np.float32)}), timeout=30)
    return tensor_to_numpy(response.outputs["y"])


def test_start_status_reload_stop(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    config = config_with(tmp_path / "config.json", models, "double")
    started = ctl.start("--config", str(config), *QUIET)
    report = ctl.status()
    assert report["running"] and report["state"] == "serving"
    assert f"pid {report['pid']}" in started.stdout and report["address"] in started.stdout
    assert "double: AVAILABLE (version 1)" in started.stdout
    assert versions(report, "double") == {1: "AVAILABLE"}
    assert report["config_path"] == str(config) and report["config_generation"] == 1
    assert report["last_reload"]["trigger"] == "startup"
    assert ctl.state_dir.pidfile.read_text().strip() == str(report["pid"])
    assert ctl.state_dir.socket.stat().st_mode & 0o777 == 0o600
    np.testing.assert_array_equal(predict(report["address"], "double"), [[2.0] * 4])

    config_with(config, models, "double", "triple")
    reloaded = ctl.run("reload")
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    assert "config generation 2 applied" in reloaded.stdout
    assert "triple: added (available: 1)" in reloaded.stdout

    report = ctl.status()
    assert versions(report, "triple") == {1: "AVAILABLE"}
    assert report["config_generation"] == 2 and report["last_reload"]["trigger"] == "ovmsctl reload"
    [triple_v1] = next(m for m in report["models"] if m["name"] == "triple")["versions"]
    assert triple_v1["compiled_shapes"] == [{"x": "(1,4)"}] and triple_v1["in_flight"] == 0
    text = ctl.run("status")
    assert text.returncode == 0
    assert "triple" in text.stdout and "AVAILABLE" in text.stdout and "generation 2" in text.stdout
    np.testing.assert_array_equal(predict(report["address"], "triple"), [[3.0] * 4])

    stopped = ctl.run("stop")
    assert stopped.returncode == 0 and f"ovmsd (pid {report['pid']}) stopped" in stopped.stdout, stopped.stderr
    after = ctl.run("status")
    assert after.returncode == 3 and "not running" in after.stdout
    assert not ctl.state_dir.pidfile.exists() and not ctl.state_dir.socket.exists()
    assert not pid_alive(report["pid"])
    assert "stopped" in ctl.log()


def test_reload_of_a_broken_config_is_rejected_and_changes_nothing(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    config = config_with(tmp_path / "config.json", models, "double")
    ctl.start("--config", str(config), *QUIET)
    config.write_text('{"model_config_list": [{"config": {"name": "double"}}]}')  # base_path missing
    rejected = ctl.run("reload")
    assert rejected.returncode == 1, rejected.stdout + rejected.stderr
    assert "config rejected" in rejected.stdout and "still serving generation 1" in rejected.stdout
    report = ctl.status()
    assert report["config_generation"] == 1 and report["last_reload"]["outcome"] == "rejected"
    assert versions(report, "double") == {1: "AVAILABLE"}
    assert ctl.run("stop").returncode == 0


def test_start_twice_is_refused_and_leaves_the_first_running(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    config = config_with(tmp_path / "config.json", models, "double")
    ctl.start("--config", str(config), *QUIET)
    pid = ctl.status()["pid"]
    second = ctl.run("start", "--config", str(config), *QUIET)
    assert second.returncode == 1
    assert "already running" in second.stderr and f"pid {pid}" in second.stderr
    assert ctl.status()["pid"] == pid
    assert ctl.run("stop").returncode == 0


def test_the_daemon_itself_refuses_a_state_dir_in_use(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    """Two starts racing past the CLI's check: the state dir lock stops the second daemon."""
    config = config_with(tmp_path / "config.json", models, "double")
    ctl.start("--config", str(config), *QUIET)
    pid = ctl.status()["pid"]
    command = [sys.executable, "-m", "ovmsd", "--config", str(config), "--port", "0"]
    done = subprocess.run(
        [*command, "--state-dir", str(ctl.state_dir.path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 1
    assert f"already running for state dir {ctl.state_dir.path} (pid {pid})" in done.stderr
    assert ctl.status()["pid"] == pid, "the running daemon keeps its pidfile and socket"
    assert ctl.run("stop").returncode == 0


def test_stop_when_not_running(ctl: Ctl) -> None:
    done = ctl.run("stop")
    assert done.returncode == 0
    assert "not running" in done.stdout
    status = ctl.run("status", "--json")
    assert status.returncode == 3
    assert json.loads(status.stdout) == {"running": False, "state_dir": str(ctl.state_dir.path), "stale_pid": None}


def test_after_kill_9_status_reports_the_stale_pidfile_and_start_works(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    config = config_with(tmp_path / "config.json", models, "double")
    ctl.start("--config", str(config), *QUIET)
    pid = ctl.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10, "killed daemon gone")

    status = ctl.run("status", "--json")
    assert status.returncode == 3
    assert json.loads(status.stdout)["stale_pid"] == pid
    assert "stale" in ctl.run("status").stdout

    restarted = ctl.run("start", "--config", str(config), *QUIET)
    assert restarted.returncode == 0, restarted.stderr
    assert f"removed stale pidfile of pid {pid}" in restarted.stdout
    new_pid = ctl.status()["pid"]
    assert new_pid != pid and versions(ctl.status(), "double") == {1: "AVAILABLE"}

    os.kill(new_pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(new_pid), 10, "killed daemon gone")
    stop = ctl.run("stop")
    assert stop.returncode == 0 and f"removed the stale pidfile of pid {new_pid}" in stop.stdout
    assert not ctl.state_dir.pidfile.exists()


def test_start_reports_a_port_in_use(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    config = config_with(tmp_path / "config.json", models, "double")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = ctl.run("start", "--config", str(config), "--port", str(port))
    assert done.returncode == 1
    assert "did not start (exit status 1)" in done.stderr and f"127.0.0.1:{port}" in done.stderr
    assert not ctl.state_dir.pidfile.exists() and not ctl.state_dir.socket.exists()


def test_start_reports_an_invalid_config(ctl: Ctl, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"model_config_list": [{"config": {"name": "x", "base_path": 5}}]}')
    done = ctl.run("start", "--config", str(config), *QUIET)
    assert done.returncode == 1
    assert "invalid configuration" in done.stderr and "base_path" in done.stderr


def test_start_shows_the_log_tail_when_the_daemon_crashes(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    config = config_with(tmp_path / "config.json", models, "double")
    done = ctl.run("start", "--config", str(config), *QUIET, "--log-file", str(tmp_path / "missing" / "x.log"))
    assert done.returncode == 1
    assert "exited during start-up" in done.stderr
    assert "FileNotFoundError" in done.stderr, "the traceback's last lines are shown"


def test_models_that_fail_to_load_do_not_fail_start(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "model.onnx").write_bytes(b"not a model")
    config = write_config(
        tmp_path / "config.json",
        [{"name": "double", "base_path": str(models / "double")}, {"name": "broken", "base_path": str(broken)}],
    )
    started = ctl.start("--config", str(config), *QUIET)
    assert "double: AVAILABLE" in started.stdout
    assert "broken: NOT AVAILABLE: version 1:" in started.stdout
    [entry] = [m for m in ctl.status()["models"] if m["name"] == "broken"]
    assert entry["versions"][0]["state"] == "LOADING" and entry["versions"][0]["error"]
    assert ctl.run("stop").returncode == 0


def test_the_cli_never_imports_the_serving_code(ctl: Ctl, models: Path, tmp_path: Path) -> None:
    """status, reload and stop talk to the socket; none of them may pull in OpenVINO or ovmsd.serving."""
    config = config_with(tmp_path / "config.json", models, "double")
    ctl.start("--config", str(config), *QUIET)
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from ovmsctl.cli import cli\n"
        "for args in (['status'], ['status', '--json'], ['reload'], ['stop']):\n"
        "    result = CliRunner().invoke(cli, [*args, '--state-dir', sys.argv[1]])\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('openvino', 'ovmsd.serving', 'ovmsd.api.grpc')))\n"
        "print('imported:', bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(ctl.state_dir.path)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout
