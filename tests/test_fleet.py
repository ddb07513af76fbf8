"""The fleet rehearsal (benchmarks/fleet.py --quick): three replicas behind HAProxy reading one bucket on a local S3
server, four clients of load; a new version reaches every replica with no failed request, a rolling restart loses
none, a SIGKILL costs at most the requests in flight and the balancer stops routing to the dead replica.

Skipped, saying so, where haproxy is not installed (``make deploy-tools`` installs it as root on Debian).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_fleet_rehearsal(tmp_path: Path) -> None:
    if (shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")) is None:
        pytest.skip("haproxy is not installed (`make deploy-tools` installs it, as root on Debian)")
    results = tmp_path / "fleet.json"
    command = [sys.executable, str(REPO / "benchmarks" / "fleet.py"), "--quick", "--json", str(results)]
    command += ["--workdir", str(tmp_path / "work")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        output, _ = process.communicate(timeout=800)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the rehearsal then stops its replicas, moto and haproxy
        output, _ = process.communicate(timeout=120)
        raise AssertionError(f"the rehearsal did not finish in 800 s:\n{output[-6000:]}") from None
    assert process.returncode == 0, output[-6000:]
    assert "Fleet rehearsal" in output, output
    result = json.loads(results.read_text())
    phases = {phase["phase"].split(" ")[0]: phase for phase in result["phases"]}

    steady = phases["steady"]
    assert steady["failures"] == 0 and steady["requests"] > 0

    upload = phases["(a)"]
    assert upload["failures"] == 0, upload
    assert set(upload["upload_to_replica_s"]) == {"r1", "r2", "r3"}, "every replica serves the new version"
    assert upload["upload_to_all_s"] < 30
    assert set(upload["old_version_states"].values()) == {50}, "the old version ended (END) on every replica"
    assert upload["requests"] > 0

    rolling = phases["(b)"]
    assert rolling["failures"] == 0, rolling
    assert [step["replica"] for step in rolling["steps"]] == ["r1", "r2", "r3"]
    assert all(step["exit_code"] == 0 for step in rolling["steps"]), rolling["steps"]
    assert rolling["requests"] > 0

    kill = phases["(c)"]
    assert kill["failures"] <= kill["in_flight_all_clients_at_kill"] <= 4, kill
    assert kill["failures_started_after_down"] == 0, "nothing routed to the dead replica once it is DOWN"
    assert kill["balancer_down_s"] < 5

    assert result["versions_seen"] == [1, 2]
    assert set(result["balancer_final"].values()) == {"UP"}, "every replica back in rotation"
    total_failures = sum(p["failures"] for p in result["phases"] if not p["phase"].startswith("(b0)"))
    assert total_failures == kill["failures"]
