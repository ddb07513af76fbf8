"""Fuzzing a real daemon: random bodies and headers at the REST infer endpoints, random bytes (and damaged or
generated requests) at gRPC Predict and ModelInfer. Every answer is an error with a proper code (a 4xx/5xx with a JSON
``{"error": ...}``, a gRPC status of the error table) or a proper answer; the daemon stays up, logs no traceback, and
serves a good request on every front end afterwards. Strategies and checks: ``tests/support/fuzz.py``.

500/INTERNAL is accepted only for the inputs ``tests/support/fuzz.py`` lists as known bugs (being fixed elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import given, settings

from tests.support import fuzz
from tests.support.daemon import Daemon, free_port, write_config
from tests.support.models import save, scale_model
from tests.support.rest import Rest


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("fuzz-daemon")
    save(scale_model([1, 4]), root / "scale", 1)
    save(scale_model([1, 4], dtype=np.int32, factor=2), root / "ints", 1)
    config = write_config(
        root / "config.json",
        [{"name": "scale", "base_path": str(root / "scale")}, {"name": "ints", "base_path": str(root / "ints")}],
    )
    rest_port = free_port()
    with Daemon(["--config", str(config), "--rest_port", str(rest_port)], root / "daemon.log") as d:
        d.rest_port = rest_port  # type: ignore[attr-defined]
        d.wait_available("scale", "ints")
        yield d
        assert "Traceback" not in d.log(), d.log()[-4000:]
        assert d.stop() == 0, d.log()[-4000:]


@pytest.fixture(scope="module")
def rest(daemon: Daemon) -> Iterator[Rest]:
    client = Rest(daemon.rest_port, timeout=20)  # type: ignore[attr-defined]
    yield client
    client.close()


@settings(max_examples=fuzz.examples(80), deadline=None)
@given(fuzz.rest_requests())
def test_rest_infer_answers_random_requests_with_an_error_status_and_json(
    daemon: Daemon, rest: Rest, case: tuple[str, dict[str, str], bytes, str | None]
) -> None:
    path, headers, body, known = case
    reply = rest.request("POST", path, body, headers)
    fuzz.check_rest_answer(reply.status, reply.body, known)
    assert daemon.process.poll() is None, daemon.log()[-4000:]


@settings(max_examples=fuzz.examples(120), deadline=None)
@given(fuzz.grpc_requests())
def test_grpc_answers_random_bytes_with_a_proper_status(daemon: Daemon, case: tuple[str, bytes, str | None]) -> None:
    method, data, known = case
    fuzz.check_grpc_answer(*fuzz.raw_call(daemon.channel, method, data), known)
    assert daemon.process.poll() is None, daemon.log()[-4000:]


def test_the_daemon_still_serves_good_requests_after_the_fuzzing(daemon: Daemon, rest: Rest) -> None:
    """Runs after the two above (file order): every front end still answers a good request with the right values."""
    x = fuzz.GOOD_X
    np.testing.assert_array_equal(daemon.predict("scale", {"x": x})["y"], x * 2)
    assert fuzz.raw_call(daemon.channel, fuzz.MODEL_INFER, fuzz.valid_infer())[0] == grpc.StatusCode.OK
    reply = rest.post_json("/v1/models/scale:predict", {"instances": x.tolist()})
    assert reply.status == 200 and reply.json() == {"predictions": (x * 2).tolist()}
    document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.reshape(-1).tolist()}]}
    reply = rest.post_json("/v2/models/scale/infer", document)
    assert reply.status == 200 and reply.json()["outputs"][0]["data"] == (x * 2).reshape(-1).tolist()
