"""The container image (deploy/Containerfile) with the seeds' command line in place of OVMS's image, and the real
TF Serving client (tensorflow-serving-api, in its own virtualenv) getting batch 1 then batch 8 answers from it.

Built and run with podman where it can run containers on this machine (deploy/image.py: the wheels, a Debian base
made with mmdebstrap, podman build); otherwise the test is skipped and says why. The seeds' line is run as it is,
but for the published port: ``-p 127.0.0.1:FREE:9000`` instead of ``-p 9000:9000``, so the test takes a free port
and listens on loopback only. The model at ``/models/resnet`` is a real (light) ResNet-50, the ONNX file that the
onnx package ships for its own tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy import image
from tests.support.daemon import free_port
from tests.support.models import LIGHT_RESNET50, reference_outputs, save_onnx_resnet
from tests.test_clients import client_python, run_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TAG = "localhost/ovmsctl:test"
INPUT, OUTPUT = "gpu_0/data_0", "gpu_0/softmax_1"


def podman_or_skip() -> None:
    """Skips, saying why, unless podman can run a container of the base image here."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (`make deploy-tools` installs podman, runc and mmdebstrap as root)")
    try:
        base = image.local_base()
    except image.ImageError as exc:
        pytest.skip(f"no base image for the build: {exc}")
    try:
        image.podman("run", "--rm", base, "python3", "-c", "pass", timeout=120, what="podman run (the base image)")
    except image.ImageError as exc:
        pytest.skip(f"podman cannot run containers on this machine: {exc}")


@pytest.fixture(scope="module")
def built() -> str:
    podman_or_skip()
    return image.build(TAG)  # a failure here is the image's fault: the test fails with podman's output


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    save_onnx_resnet(root / "resnet", 1)
    for path in [root, *root.rglob("*")]:  # the image's user (uid 5000) reads them
        path.chmod(0o755 if path.is_dir() else 0o644)
    tmp_path.chmod(0o755)
    return root


class Container:
    """``podman run -d`` of a command line; leaving removes the container, whatever state it is in."""

    def __init__(self, run_args: list[str]) -> None:
        self.name = f"ovmsctl-test-{time.monotonic_ns()}"
        image.podman("run", "-d", "--name", self.name, *run_args, timeout=120, what="podman run")

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        remove = ["podman", "rm", "--force", "--time", "0", self.name]
        subprocess.run(remove, env=image.podman_env(), capture_output=True, timeout=120)

    def inspect(self, template: str) -> str:
        return image.podman("inspect", "--format", template, self.name, timeout=60).stdout.strip()

    def logs(self) -> str:
        done = subprocess.run(
            ["podman", "logs", self.name], env=image.podman_env(), capture_output=True, text=True, timeout=60
        )
        return done.stdout + done.stderr

    def exec(self, *command: str) -> str:
        return image.podman("exec", self.name, *command, timeout=60, what="podman exec").stdout

    def wait_serving(self, port: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.inspect("{{.State.Running}}") != "true":
                raise AssertionError(f"the container stopped:\n{self.logs()}")
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    status = stub.Check(health_pb2.HealthCheckRequest(service="resnet"), timeout=5).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = str(status)
            except grpc.RpcError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise AssertionError(f"not serving after {timeout:g} s ({last}):\n{self.logs()}")


def tfs_predict(port: int, batch: np.ndarray, tmp_path: Path) -> dict:
    path = tmp_path / f"batch{len(batch)}.npy"
    np.save(path, batch)
    python = client_python("OVMSCTL_TFS_PYTHON", ".venv-tfs")
    return run_client(python, "tfs_client.py", f"127.0.0.1:{port}", "resnet", INPUT, str(path))


def test_the_seeds_command_line_serves_batch_1_then_batch_8_to_the_tf_serving_client(
    built: str, models: Path, tmp_path: Path
) -> None:
    port = free_port()
    seeds = ["-v", f"{models}:/models", "-p", f"127.0.0.1:{port}:9000", built]
    seeds += ["--model_name", "resnet", "--model_path", "/models/resnet", "--batch_size", "auto", "--port", "9000"]
    images = np.random.default_rng(11).random((8, 3, 224, 224), dtype=np.float32)
    expected = np.concatenate(
        [reference_outputs(LIGHT_RESNET50, {INPUT: images[i : i + 1]})[OUTPUT] for i in range(8)]
    ).argmax(axis=1)
    with Container(seeds) as container:
        container.wait_serving(port)
        for batch in (1, 8):
            result = tfs_predict(port, images[:batch], tmp_path)
            scores = np.asarray(result["outputs"][OUTPUT])
            assert result["version"] == 1
            assert scores.shape == (batch, 1000)
            np.testing.assert_array_equal(scores.argmax(axis=1), expected[:batch])
        assert "gpu_0/data_0(8,3,224,224)" in container.logs(), "batch 8 compiled on demand (batch_size auto)"

        # The daemon is PID 1, runs as the image's user, and `ovmsctl status` finds it.
        report = json.loads(container.exec("ovmsctl", "status", "--json"))
        assert report["pid"] == 1 and report["state"] == "serving"
        assert [v["state"] for v in report["models"][0]["versions"]] == ["AVAILABLE"]
        assert container.exec("id", "-u").strip() == "5000"

        # PID 1 handles SIGHUP (a reload) and SIGTERM (drain, exit 0) itself.
        image.podman("kill", "--signal", "HUP", container.name, timeout=60)
        deadline = time.monotonic() + 30
        while "applied (SIGHUP)" not in container.logs():
            assert time.monotonic() < deadline, container.logs()
            time.sleep(0.2)
        started = time.monotonic()
        image.podman("stop", "--time", "30", container.name, timeout=90)
        took = time.monotonic() - started
        assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
        assert took < 25, f"stopped by SIGTERM, not killed after the timeout ({took:.1f} s)"
        assert "received SIGTERM: stopping" in container.logs()


def test_the_image_runs_with_a_read_only_root_as_the_deployment_sets_it(built: str, models: Path) -> None:
    """deploy/k8s/deployment.yaml: readOnlyRootFilesystem, every capability dropped, /tmp a memory volume."""
    port = free_port()
    run_args = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    run_args += ["-v", f"{models}:/models:ro", "-p", f"127.0.0.1:{port}:9000", built]
    run_args += ["--model_name", "resnet", "--model_path", "/models/resnet", "--port", "9000"]
    with Container(run_args) as container:
        container.wait_serving(port)
        assert json.loads(container.exec("ovmsctl", "status", "--json"))["state"] == "serving"


@pytest.fixture(autouse=True)
def _no_leftover_containers() -> Iterator[None]:
    yield
    if shutil.which("podman"):
        done = subprocess.run(
            ["podman", "ps", "-a", "--filter", "name=ovmsctl-test-", "--format", "{{.Names}}"],
            env=image.podman_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert not done.stdout.strip(), f"containers left behind: {done.stdout}"
