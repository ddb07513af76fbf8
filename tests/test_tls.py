"""TLS, mutual TLS and API keys on every port, with certificates made in the test and real clients.

gRPC with ``grpc.ssl_channel_credentials``, tritonclient gRPC and HTTP with SSL, ``curl --cacert`` on the REST and
metrics ports; certificates rotated by SIGHUP without a restart and without dropping an open connection.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from ovmsd.api.grpc.proto import prediction_service_pb2_grpc
from tests.support.certs import Authority, Pair
from tests.support.ctl import wait_until
from tests.support.daemon import Daemon, free_port, predict_request, rpc_error
from tests.support.models import save, scale_model
from tests.support.triton import TritonClient, output_array, tensor

X = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tls-models")
    save(scale_model([1, 4]), root / "scale", 1)
    return root / "scale"


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "ca")


def start(model: Path, tmp_path: Path, *extra: str) -> tuple[Daemon, int, int]:
    rest_port, metrics_port = free_port(), free_port()
    args = [
        "--model-name", "scale", "--model-path", str(model), "--rest_port", str(rest_port),
        "--metrics-port", str(metrics_port), *extra,
    ]  # fmt: skip
    return Daemon(args, tmp_path / "daemon.log"), rest_port, metrics_port


def secure_stub(
    daemon: Daemon, ca: bytes, client: Pair | None = None
) -> prediction_service_pb2_grpc.PredictionServiceStub:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None,
    )
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.secure_channel(daemon.address, credentials))


def predict(stub: prediction_service_pb2_grpc.PredictionServiceStub, metadata: list | None = None) -> np.ndarray:
    from ovmsd.api.grpc.tensors import tensor_to_numpy

    response = stub.Predict(predict_request("scale", {"x": X}), timeout=10, metadata=metadata)
    return tensor_to_numpy(response.outputs["y"])


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    if CURL is None:
        pytest.skip("curl is not installed")
    return subprocess.run(
        [CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", *args], capture_output=True, text=True, timeout=30
    )


def wait_ready(daemon: Daemon, ca: Authority) -> None:
    stub = secure_stub(daemon, ca.cert_pem)
    wait_until(lambda: _answers(stub), 60, "TLS daemon serving")


def _answers(stub: prediction_service_pb2_grpc.PredictionServiceStub) -> bool:
    try:
        predict(stub)
        return True
    except grpc.RpcError:
        return False


@pytest.fixture
def tls_daemon(model: Path, tmp_path: Path, ca: Authority) -> Iterator[tuple[Daemon, int, int, Pair]]:
    server = ca.issue("server", server=True)
    daemon, rest_port, metrics_port = start(
        model, tmp_path, "--tls-cert", str(server.cert), "--tls-key", str(server.key)
    )
    with daemon:
        wait_ready(daemon, ca)
        yield daemon, rest_port, metrics_port, server
        assert daemon.stop() == 0, daemon.log()


def test_every_port_speaks_tls_and_plain_text_clients_fail_fast(
    tls_daemon: tuple[Daemon, int, int, Pair], ca: Authority
) -> None:
    daemon, rest_port, metrics_port, _ = tls_daemon
    np.testing.assert_array_equal(predict(secure_stub(daemon, ca.cert_pem)), X * 2)
    started = time.monotonic()
    plain = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(daemon.address))
    error = rpc_error(lambda: plain.Predict(predict_request("scale", {"x": X}), timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() - started < 8
    assert curl("--cacert", str(ca.cert), f"https://127.0.0.1:{rest_port}/v2/health/ready").stdout == "200"
    assert curl("--cacert", str(ca.cert), f"https://127.0.0.1:{metrics_port}/metrics").stdout == "200"
    started = time.monotonic()
    refused = curl("--max-time", "10", f"http://127.0.0.1:{rest_port}/v2/health/ready")
    assert refused.returncode != 0 and refused.stdout != "200" and time.monotonic() - started < 8
    assert curl(f"https://127.0.0.1:{rest_port}/v2/health/ready").returncode == 60, "an unknown CA is refused"
    assert "TLS on every port" in daemon.log()


def test_tritonclient_over_tls(tls_daemon: tuple[Daemon, int, int, Pair], ca: Authority) -> None:
    daemon, rest_port, _, _ = tls_daemon
    grpc_client = TritonClient("grpc", daemon.address)
    http_client = TritonClient("http", f"127.0.0.1:{rest_port}")
    results = grpc_client.run(
        grpc_client.command("infer", model="scale", inputs=[tensor("x", X)], ssl={"ca": str(ca.cert)}),
        http_client.command("infer", model="scale", inputs=[tensor("x", X)], ssl={"ca": str(ca.cert)}),
        http_client.command("is_server_ready", ssl={"ca": str(ca.cert)}),
    )
    for result in results[:2]:
        assert "result" in result, result
        np.testing.assert_array_equal(output_array(result["result"]["outputs"]["y"]), X * 2)
    assert results[2] == {"result": True}


def test_certificates_rotate_on_sighup_without_dropping_connections(
    tls_daemon: tuple[Daemon, int, int, Pair], ca: Authority, tmp_path: Path
) -> None:
    daemon, rest_port, _, server = tls_daemon
    kept = secure_stub(daemon, ca.cert_pem)
    predict(kept)  # an open connection, made with the old certificate
    new_ca = Authority(tmp_path / "new-ca", name="rotated CA")
    rotated = new_ca.issue("rotated", server=True)
    shutil.copyfile(rotated.cert, server.cert)
    shutil.copyfile(rotated.key, server.key)
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS certificates reloaded" in daemon.log(), 30, "certificates reloaded")
    np.testing.assert_array_equal(predict(secure_stub(daemon, new_ca.cert_pem)), X * 2)
    assert curl("--cacert", str(new_ca.cert), f"https://127.0.0.1:{rest_port}/v2/health/ready").stdout == "200"
    assert curl("--cacert", str(ca.cert), f"https://127.0.0.1:{rest_port}/v2/health/ready").returncode == 60
    np.testing.assert_array_equal(predict(kept), X * 2)  # the old connection still serves
    assert daemon.process.poll() is None


def test_mutual_tls_from_a_tf_serving_ssl_config_file(model: Path, tmp_path: Path, ca: Authority) -> None:
    server, client = ca.issue("server", server=True), ca.issue("client", server=False)
    config = tmp_path / "ssl.cfg"

    def text(pem: bytes) -> str:  # a text-format string: newlines escaped, as TF Serving's files have them
        return pem.decode().replace("\n", "\\n")

    config.write_text(
        f'server_key: "{text(server.key_pem)}"\nserver_cert: "{text(server.cert_pem)}"\n'
        f'custom_ca: "{text(ca.cert_pem)}"\nclient_verify: true\n'
    )
    daemon, rest_port, _ = start(model, tmp_path, "--ssl_config_file", str(config))
    with daemon:
        wait_until(lambda: _answers(secure_stub(daemon, ca.cert_pem, client)), 60, "mutual TLS serving")
        error = rpc_error(lambda: predict(secure_stub(daemon, ca.cert_pem)))
        assert error.code() == grpc.StatusCode.UNAVAILABLE, "no client certificate, no connection"
        url = f"https://127.0.0.1:{rest_port}/v2/health/ready"
        assert curl("--cacert", str(ca.cert), "--cert", str(client.cert), "--key", str(client.key), url).stdout == "200"
        assert curl("--cacert", str(ca.cert), url).returncode != 0
        assert "client certificates required" in daemon.log()
        assert daemon.stop() == 0


def test_api_key_on_every_front_end_with_probes_open(model: Path, tmp_path: Path) -> None:
    from tests.support.rest import Rest, kserve_json_input

    key_file = tmp_path / "api.key"
    key_file.write_text("s3cret-key\n")
    bearer = {"Authorization": "Bearer s3cret-key"}
    daemon, rest_port, metrics_port = start(model, tmp_path, "--api_key_file", str(key_file))
    with daemon:
        rest = Rest(rest_port)
        wait_until(lambda: _rest_ready(rest), 60, "ready (probes need no key)")
        stub = daemon.prediction
        for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", "s3cret-key")]):
            error = rpc_error(lambda m=metadata: predict(stub, m))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "Authorization: Bearer" in error.details()
        np.testing.assert_array_equal(predict(stub, [("authorization", "Bearer s3cret-key")]), X * 2)
        assert rpc_error(lambda: daemon.status("scale")).code() == grpc.StatusCode.UNAUTHENTICATED

        client = TritonClient("grpc", daemon.address)
        ready, refused, served = client.run(
            client.command("is_server_ready"),
            client.command("infer", model="scale", inputs=[tensor("x", X)]),
            client.command(
                "infer", model="scale", inputs=[tensor("x", X)], headers={"authorization": bearer["Authorization"]}
            ),
        )
        assert ready == {"result": True} and refused["status"] == "UNAUTHENTICATED", (ready, refused)
        assert "result" in served, served
        np.testing.assert_array_equal(output_array(served["result"]["outputs"]["y"]), X * 2)

        body = {"inputs": [kserve_json_input("x", X)]}
        denied = rest.post_json("/v2/models/scale/infer", body)
        assert denied.status == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert rest.get("/v1/models/scale").status == 401
        import json

        allowed = rest.request("POST", "/v2/models/scale/infer", json.dumps(body).encode(), bearer)
        assert allowed.status == 200 and allowed.json()["outputs"][0]["data"] == [2, 4, 6, 8]
        assert rest.get("/v2/health/live").status == 200
        page = Rest(metrics_port).get("/metrics").body.decode()
        counted = [line for line in page.splitlines() if line.startswith("ovmsctl_unauthenticated_requests_total")]
        assert any('api="TensorFlowServing",interface="gRPC"' in line and not line.endswith(" 0.0") for line in counted)
        assert any('api="KServe",interface="REST"' in line for line in counted), counted
        rest.close()
        assert daemon.stop() == 0


def _rest_ready(rest: Any) -> bool:
    try:
        return rest.get("/v2/health/ready").status == 200
    except OSError:
        return False


def test_bad_tls_files_stop_the_start_up_with_a_clear_message(model: Path, tmp_path: Path, ca: Authority) -> None:
    server, other = ca.issue("server", server=True), ca.issue("other", server=True)
    daemon, _, _ = start(model, tmp_path, "--tls-cert", str(server.cert), "--tls-key", str(other.key))
    with daemon:
        assert daemon.process.wait(timeout=30) == 1
        assert "TLS: the TLS key and certificate do not load together" in daemon.log()
