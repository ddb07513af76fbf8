"""benchmarks/serving.py end to end, in miniature: the daemon, the no-op ceilings answering with the daemon's captured
answers, the stage breakdown from --stage-timers, issue 13's targets in the JSON. Checks the machinery, not speed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FRONT_ENDS = ("tfs-grpc", "kserve-rest-binary")


def test_the_ceilings_and_the_stage_breakdown(tmp_path: Path) -> None:
    results = tmp_path / "serving.json"
    command = [sys.executable, str(REPO / "benchmarks" / "serving.py"), "--models", "conv3", "--batches", "1",
               "--clients", "4", "--front-ends", ",".join(FRONT_ENDS), "--repeats", "1", "--duration", "0.5",
               "--warmup", "0.2", "--no-memory", "--stages", "--json", str(results)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        output, _ = process.communicate(timeout=500)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the benchmark then stops the daemons, the clients and the no-op server
        output, _ = process.communicate(timeout=60)
        raise AssertionError(f"the benchmark did not finish in 500 s:\n{output[-6000:]}") from None
    assert process.returncode == 0, output[-6000:]
    result = json.loads(results.read_text())
    assert result["status"] == "complete"

    rows = result["runs"]
    for front_end in FRONT_ENDS:
        daemon = [r for r in rows if r["side"] == "daemon" and r["front_end"] == front_end]
        noop = [r for r in rows if r["side"] == "noop" and r["front_end"] == f"noop:{front_end}"]
        assert daemon and noop, (front_end, [(r["side"], r["front_end"]) for r in rows])
        assert daemon[0]["failed"] == 0 and noop[0]["failed"] == 0, (daemon[0]["errors"], noop[0]["errors"])
        assert daemon[0]["completed"] > 0 and noop[0]["completed"] > 0
    summary = {s["front_end"]: s for s in result["front_ends"]}
    assert summary["tfs-grpc"]["vs_ceiling"] > 0 and summary["kserve-rest-binary"]["vs_ceiling"] > 0

    stages = {r["front_end"]: r for r in result["stages"]}
    assert {"parse", "decode", "infer", "encode", "serialize"} <= set(stages["tfs-grpc"]["stages_us"])
    rest_stages = set(stages["kserve-rest-binary"]["stages_us"])
    assert {"http-read", "decode", "lookup", "infer", "encode", "http-send"} <= rest_stages
    assert "handoff" not in rest_stages, "binary REST inference runs on the event loop"
    assert all(r["requests"] > 0 for r in stages.values())

    targets = [t["target"] for t in result["request_path_targets"]]
    assert any("no-op gRPC server" in t for t in targets) and any("no-op HTTP server" in t for t in targets)
    assert "Request-path targets" in output and "Stage breakdown: conv3_b1" in output
