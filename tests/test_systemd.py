"""systemd integration: sd_notify from a real daemon, journald-style logs, and the generated unit file."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovmsd.observe.logs import syslog_priority
from ovmsd.runtime.systemd import socket_address, watchdog_interval
from tests.support.daemon import REPO, write_config
from tests.support.models import save, scale_model


class NotifySocket:
    """What systemd does: a Unix datagram socket named by NOTIFY_SOCKET, collecting every message."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_address(name))
        self.messages: list[dict[str, str]] = []

    def expect(self, key: str, value: str | None = None, timeout: float = 60) -> dict[str, str]:
        """Wait for the next message carrying KEY (=VALUE); messages on the way are kept in ``messages``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)
            if key in fields and (value is None or fields[key] == value):
                return fields

    def close(self) -> None:
        self.sock.close()
        if not self.name.startswith("@"):
            Path(self.name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("systemd")
    save(scale_model([1, 4]), root / "models" / "scale", 1)
    return write_config(root / "config.json", [{"name": "scale", "base_path": str(root / "models" / "scale")}])


def start_foreground(config: Path, state_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        command = [sys.executable, "-m", "ovmsctl", "start", "--foreground", "--config", str(config), "--port", "0"]
        return subprocess.Popen(
            [*command, "--state-dir", str(state_dir), "--file-system-poll-wait-seconds", "0"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


@pytest.fixture
def notify(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NotifySocket]:
    name = getattr(request, "param", "path")
    listener = NotifySocket(str(tmp_path / "notify.sock") if name == "path" else f"@ovmsctl-test-{os.getpid()}")
    yield listener
    listener.close()


@pytest.mark.parametrize("notify", ["path", "abstract"], indirect=True)
def test_sd_notify_ready_reloading_stopping(notify: NotifySocket, config: Path, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    process = start_foreground(config, tmp_path / "state", {"NOTIFY_SOCKET": notify.name}, log)
    try:
        ready = notify.expect("READY", "1")
        assert "serving 1/1 models" in ready["STATUS"]
        assert (tmp_path / "state" / "ovmsd.pid").read_text().strip() == str(process.pid), "written before READY"

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        process.send_signal(signal.SIGHUP)
        reloading = notify.expect("RELOADING", "1")
        assert before <= int(reloading["MONOTONIC_USEC"]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert "generation 2" in notify.expect("READY", "1")["STATUS"]

        process.send_signal(signal.SIGTERM)
        notify.expect("STOPPING", "1")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "READY" not in str(notify.messages[-1]), f"nothing after STOPPING: {notify.messages}\n{log.read_text()}"


def test_watchdog_pings(notify: NotifySocket, config: Path, tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "200000"}  # 0.2 s: a ping every 0.1 s
    process = start_foreground(config, tmp_path / "state", env, tmp_path / "daemon.log")
    try:
        notify.expect("READY", "1")
        started = time.monotonic()
        for _ in range(3):
            notify.expect("WATCHDOG", "1", timeout=2)
        assert time.monotonic() - started < 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_watchdog_settings() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None, "meant for another process"
    assert watchdog_interval({}) is None
    assert socket_address("@name") == "\0name" and socket_address("/run/x") == "/run/x"


# -- logs -------------------------------------------------------------------------------------------------------------

LOG_SCRIPT = """
import logging, sys
from ovmsd.observe.logs import configure
configure("INFO")
logging.getLogger("ovmsd").info("hello")
logging.getLogger("ovmsd").error("oops")
"""


def run_logging(stderr_file: Path, journal_stream: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    with stderr_file.open("wb") as err:
        subprocess.run([sys.executable, "-c", LOG_SCRIPT], stderr=err, env=env, cwd=REPO, check=True, timeout=60)
    return stderr_file.read_text()


def test_journald_lines_have_a_priority_and_no_timestamp(tmp_path: Path) -> None:
    target = tmp_path / "journal"
    target.touch()
    st = target.stat()
    text = run_logging(target, f"{st.st_dev}:{st.st_ino}")
    assert text.splitlines() == ["<6>[INFO] ovmsd: hello", "<3>[ERROR] ovmsd: oops"]


def test_inherited_journal_stream_with_redirected_stderr_keeps_timestamps(tmp_path: Path) -> None:
    text = run_logging(tmp_path / "file.log", "1:2")  # stderr is not that stream
    assert text.splitlines()[0].endswith("[INFO] ovmsd: hello") and text[:4].isdigit(), text
    assert syslog_priority(5) == 7


# -- the unit ---------------------------------------------------------------------------------------------------------


def ovmsctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ovmsctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def unit_lines(text: str) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            entries.setdefault(key, []).append(value)
    return entries


def test_service_print_gives_a_notify_unit_with_a_sandbox(config: Path) -> None:
    done = ovmsctl("service", "print", "--config", str(config), "--port", "9100", "--metrics-port", "9101")
    assert done.returncode == 0, done.stderr
    unit = unit_lines(done.stdout)
    assert unit["Type"] == ["notify"]
    [exec_start] = unit["ExecStart"]
    assert exec_start.startswith(f"{sys.executable} -m ovmsctl start --foreground --config {config}")
    assert "--port 9100 --metrics-port 9101" in exec_start and exec_start.endswith("--state-dir %t/ovmsctl")
    assert unit["ExecReload"] == ["kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["LimitNOFILE"] == ["65536"], "1,024 open files lock clients out after ~1,000 idle connections"
    assert unit["RuntimeDirectory"] == ["ovmsctl"] and unit["RuntimeDirectoryMode"] == ["0700"]
    for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateDevices=yes"):
        key, value = setting.split("=")
        assert unit[key] == [value]
    assert unit["ProtectHome"] in (["yes"], ["read-only"])
    assert unit["PrivateTmp"] == ["no"], "the test's models live under /tmp, which a private /tmp would hide"
    assert "PrivateTmp" in done.stderr
    assert f"-{config.parent / 'models' / 'scale'}" in unit["ReadOnlyPaths"][0].split()
    assert unit["WantedBy"] == ["multi-user.target"]


def test_unit_keeps_home_readable_when_models_live_there() -> None:
    from ovmsctl.unit import UnitSpec, escape_arg, render

    spec = UnitSpec(name="m", command=["/usr/bin/python3", "-m", "ovmsctl"], read_paths=[Path("/home/me/models")])
    assert "ProtectHome=read-only" in render(spec) and "PrivateTmp=yes" in render(spec)
    elsewhere = render(UnitSpec(name="m", command=["/x"], read_paths=[Path("/srv/models")]))
    assert "ProtectHome=yes" in elsewhere and "PrivateTmp=yes" in elsewhere
    assert escape_arg("/a b/100%$x") == '"/a b/100%%$$x"'
    assert escape_arg("plain/path") == "plain/path"


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd); the unit is not verified")
    probe = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"systemd-analyze cannot run here: {probe.stderr.strip()}")
    return tool


@pytest.mark.parametrize("user_unit", [False, True], ids=["system", "user"])
def test_installed_unit_passes_systemd_analyze_verify(user_unit: bool, config: Path, tmp_path: Path) -> None:
    tool = systemd_analyze()
    units = tmp_path / "units"
    name = "ovmsctl-verify-test"
    special = tmp_path / "odd dir 100%"  # a path that needs quoting and escaping
    special.mkdir()
    shutil.copy(config, special / "config.json")
    args = ["service", "install", "--unit-dir", str(units), "--name", name, "--config", str(special / "config.json")]
    args += ["--log-file", str(tmp_path / "logs" / "ovmsd.log"), "--watchdog-sec", "30"]
    done = ovmsctl(*args, *(["--user"] if user_unit else []))
    assert done.returncode == 0, done.stderr
    unit_file = units / f"{name}.service"
    assert f"wrote {unit_file}" in done.stdout
    again = ovmsctl(*args, *(["--user"] if user_unit else []))
    assert again.returncode == 1 and "--force" in again.stderr

    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    mode = ["--user"] if user_unit else []
    verify = subprocess.run(
        [tool, *mode, "verify", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    complaints = [line for line in (verify.stdout + verify.stderr).splitlines() if name in line]
    assert verify.returncode == 0 and not complaints, verify.stdout + verify.stderr
    unit = unit_lines(unit_file.read_text())
    assert unit["WantedBy"] == (["default.target"] if user_unit else ["multi-user.target"])
    assert unit["WatchdogSec"] == ["30"]
    assert f"-{tmp_path / 'logs'}" in unit["ReadWritePaths"][0]
    assert '"--config" ' not in unit["ExecStart"][0] and "odd dir 100%%" in unit["ExecStart"][0]
