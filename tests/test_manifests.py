"""The Kubernetes and KServe manifests under deploy/: schema-valid offline, and their containers proven against a
running daemon.

Each manifest's container runs here as the image would run it: the Containerfile's ENTRYPOINT (``ovmsctl start
--foreground ...``) followed by exactly the container's ``args``, with what a cluster would provide filled in: KServe's
``{{.Name}}``, each volume mount pointed at a folder (``/mnt/models`` at a test repository, ``/config`` at the
ConfigMap's files), the bucket of the ConfigMap's ``s3://`` base path on a local S3 server, and every port the
manifest names moved to a free one (the same move for args, declared ports and probes). One ``--bind-address
127.0.0.1`` is appended, so the test listens on loopback only (the entrypoint's 0.0.0.0 would be every interface).
Then every declared port must answer its protocol, and every probe must get what its kind of probe expects: a gRPC
probe SERVING from grpc.health.v1, an HTTP probe a 2xx/3xx status, a TCP probe a connection, an exec probe a command
the image has.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ovmsd.api.grpc.proto import prediction_service_pb2_grpc
from ovmsd.api.grpc.tensors import tensor_to_numpy
from tests.support.daemon import REPO, free_port, predict_request
from tests.support.models import save, scale_model
from tests.support.s3 import S3Server

DEPLOY = REPO / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
RUNTIME = DEPLOY / "kserve" / "clusterservingruntime.yaml"
ISVC = DEPLOY / "kserve" / "inferenceservice.yaml"
# The oldest Kubernetes the manifests promise (gRPC probes are GA since 1.27) and the newest schemas at hand.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
X = np.array([[1.0, -2.0, 3.0, 0.5]], np.float32)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(path: Path, kind: str) -> dict[str, Any]:
    [doc] = [d for d in documents(path) if d["kind"] == kind]
    return doc


def entrypoint() -> list[str]:
    """The Containerfile's ENTRYPOINT (exec form)."""
    lines = [line for line in (DEPLOY / "Containerfile").read_text().splitlines() if line.startswith("ENTRYPOINT ")]
    assert len(lines) == 1, lines
    command = json.loads(lines[0].removeprefix("ENTRYPOINT "))
    assert command[0] == "ovmsctl", command
    return command


@functools.cache
def rest_front_end() -> str | None:
    """Why the REST checks cannot run yet, or None when ``python -m ovmsd`` accepts --rest_port."""
    done = subprocess.run([sys.executable, "-m", "ovmsd", "--help"], capture_output=True, text=True, timeout=60)
    if "--rest_port" not in done.stdout:
        return "REST front end not landed: `python -m ovmsd --help` has no --rest_port"
    return None


# -- schemas -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_are_valid_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the path of the first error


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_kserve_runtime_containers_are_valid_kubernetes_containers(version: str) -> None:
    """ClusterServingRuntime is KServe's CRD (no schema here), but its containers are core v1 Containers."""
    runtime = one(RUNTIME, "ClusterServingRuntime")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runtime"},
        "spec": {"containers": runtime["spec"]["containers"]},
    }
    kubernetes_validate.validate(pod, version, strict=True)


def test_the_kserve_objects_fit_together() -> None:
    runtime = one(RUNTIME, "ClusterServingRuntime")
    isvc = one(ISVC, "InferenceService")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    [container] = spec["containers"]
    assert container["name"] == "kserve-container", "the name KServe merges the predictor's settings into"
    args = container["args"]
    for arg in ("--model_name={{.Name}}", "--model_path=/mnt/models", "--port=9000", "--rest_port=8080"):
        assert arg in args
    assert {"name": "h2c", "containerPort": 9000, "protocol": "TCP"} in container["ports"], "gRPC routed as h2c"
    assert spec["annotations"]["prometheus.kserve.io/port"] == "8080" and "--metrics_enable" in args
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in spec["supportedModelFormats"]}
    assert model["protocolVersion"] in spec["protocolVersions"]


def test_the_deployment_service_and_budget_fit_together() -> None:
    deployment = one(DEPLOY / "k8s" / "deployment.yaml", "Deployment")
    services = [d for d in documents(DEPLOY / "k8s" / "service.yaml") if d["kind"] == "Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    [container] = pod["spec"]["containers"]
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in services:
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in declared, f"{service['metadata']['name']}: {port}"
    budget = one(DEPLOY / "k8s" / "pdb.yaml", "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # Prometheus scrapes /metrics on the REST port, where --metrics_enable serves it.
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == declared["http"] == int(arg_value(container["args"], "rest_port"))
    assert "--metrics_enable" in container["args"]
    # Capacity never drops during a rollout.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]


def test_termination_grace_fits_the_prestop_and_the_drain() -> None:
    """Kubernetes kills the pod grace seconds after it starts preStop: the sleep and the whole drain must fit."""
    pod = one(DEPLOY / "k8s" / "deployment.yaml", "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = float(arg_value(container["args"], "drain-timeout") or 30)
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 5
    runtime = one(RUNTIME, "ClusterServingRuntime")["spec"]["containers"][0]
    assert float(arg_value(runtime["args"], "drain-timeout") or 30) + 5 <= 30, "KServe's pods: the default 30 s grace"


def arg_value(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` (either spelling: - or _), or None."""
    wanted = {f"--{name}", f"--{name.replace('_', '-')}", f"--{name.replace('-', '_')}"}
    for arg in args:
        option, _, value = arg.partition("=")
        if option in wanted:
            return value
    return None


# -- the containers, run here ---------------------------------------------------------------------------------------


@dataclass
class LocalPod:
    """One manifest container run as a local process (see the module docstring for what is filled in)."""

    container: dict[str, Any]
    mounts: dict[str, Path]
    env: dict[str, str]
    placeholders: dict[str, str] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)  # manifest port -> local port

    def __post_init__(self) -> None:
        for number in self.declared().values():
            self.ports.setdefault(number, free_port())
        for arg in self.container["args"]:
            option, _, value = arg.partition("=")
            if "port" in option and value.isdigit():
                self.ports.setdefault(int(value), free_port())

    def declared(self) -> dict[str, int]:
        return {p["name"]: p["containerPort"] for p in self.container.get("ports", [])}

    def local_port(self, port: int | str) -> int:
        number = self.declared()[port] if isinstance(port, str) else port
        return self.ports[number]

    def args(self) -> list[str]:
        result = []
        for arg in self.container["args"]:
            for placeholder, value in self.placeholders.items():
                arg = arg.replace(placeholder, value)
            option, equals, value = arg.partition("=")
            if equals and "port" in option and value.isdigit():
                value = str(self.ports[int(value)])
            for mount, folder in sorted(self.mounts.items(), key=lambda item: -len(item[0])):  # the deepest mount
                if value == mount or value.startswith(mount + "/"):
                    value = str(folder) + value[len(mount) :]
                    break
            result.append(f"{option}{equals}{value}" if equals else option)
        return result

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ovmsctl", *entrypoint()[1:], *self.args(), "--bind-address", "127.0.0.1"]

    @contextlib.contextmanager
    def running(self, log: Path) -> Iterator[subprocess.Popen[bytes]]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **self.env}
            )
            try:
                yield process
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=30)


def grpc_health(port: int, service: str = "") -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def probe_passes(pod: LocalPod, probe: dict[str, Any]) -> str | None:
    """None when the probe gets what kubelet wants from it, else what it got."""
    try:
        if "grpc" in probe:
            status = grpc_health(pod.local_port(probe["grpc"]["port"]), probe["grpc"].get("service", ""))
            return None if status == "SERVING" else status
        if "httpGet" in probe:
            code, body = http_get(pod.local_port(probe["httpGet"]["port"]), probe["httpGet"]["path"])
            return None if 200 <= code < 400 else f"HTTP {code}: {body[:200]!r}"
        if "tcpSocket" in probe:
            with socket.create_connection(("127.0.0.1", pod.local_port(probe["tcpSocket"]["port"])), timeout=5):
                return None
        if "exec" in probe:
            command = probe["exec"]["command"]
            return None if shutil.which(command[0]) else f"{command[0]} not found"
    except (grpc.RpcError, OSError) as exc:
        return repr(exc)
    raise AssertionError(f"unknown probe kind: {probe}")


def wait_ready(pod: LocalPod, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """As kubelet would: the startup probe first (if any), then the readiness probe, until they pass."""
    deadline = time.monotonic() + timeout
    for kind in ("startupProbe", "readinessProbe"):
        probe = pod.container.get(kind)
        if probe is None:
            continue
        while (failure := probe_passes(pod, probe)) is not None:
            if process.poll() is not None:
                raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{kind} still failing: {failure}\n{log.read_text()}")
            time.sleep(0.2)


def check_ports_and_probes(pod: LocalPod, model: str) -> None:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in pod.container:
            assert probe_passes(pod, pod.container[kind]) is None, f"{kind}: {pod.container[kind]}"
    pre_stop = pod.container.get("lifecycle", {}).get("preStop")
    if pre_stop:
        assert probe_passes(pod, pre_stop) is None, "the preStop command exists"
    for name, number in pod.declared().items():
        port = pod.local_port(number)
        if name in ("grpc", "h2c") or name.startswith("grpc-"):
            assert grpc_health(port) == "SERVING", name
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                response = stub.Predict(predict_request(model, {"x": X}), timeout=30)
            np.testing.assert_array_equal(tensor_to_numpy(response.outputs["y"]), X * 2)
        elif name.startswith("http"):
            code, _ = http_get(port, "/v2/health/live")
            assert code == 200, name
            code, body = http_get(port, f"/v2/models/{model}/ready")
            assert code == 200, body
        else:
            raise AssertionError(f"port {name}: no check for this port name")


def check_metrics(pod: LocalPod, port: int, path: str) -> None:
    code, body = http_get(pod.ports[port], path)
    assert code == 200
    assert b"ovms_requests_success_total" in body, body[:500]


def stop_within(process: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=seconds) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"not stopped within {seconds:g} s of SIGTERM:\n{log.read_text()}") from None


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """Short (a Unix socket path has at most 107 bytes): the image's OVMSCTL_STATE_DIR, /tmp/ovmsctl."""
    path = Path(tempfile.mkdtemp(prefix="ovk8s-"))
    yield path / "ovmsctl"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def s3_models() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_deployment_container_serves_with_its_args_and_probes(
    tmp_path: Path, state_dir: Path, s3_models: S3Server
) -> None:
    if (reason := rest_front_end()) is not None:
        pytest.skip(reason)
    deployment = one(DEPLOY / "k8s" / "deployment.yaml", "Deployment")
    pod_spec = deployment["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    # The ConfigMap's files, as its volume shows them.
    configmap = one(DEPLOY / "k8s" / "configmap.yaml", "ConfigMap")
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {}
    for mount in container["volumeMounts"]:
        folder = tmp_path / mount["name"]
        folder.mkdir()
        mounts[mount["mountPath"]] = folder
        if "configMap" in volumes[mount["name"]]:
            assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
            for name, text in configmap["data"].items():
                (folder / name).write_text(text)
    # The bucket the config names, on a local S3 server; the Secret's variables point at it.
    [entry] = json.loads(configmap["data"]["config.json"])["model_config_list"]
    model = entry["config"]["name"]
    bucket, _, prefix = entry["config"]["base_path"].removeprefix("s3://").partition("/")
    client: Any = s3_models.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    staged = save(scale_model([1, 4], factor=2.0), tmp_path / "staged", 1).parent
    for path in staged.iterdir():
        client.put_object(Bucket=bucket, Key=f"{prefix}/1/{path.name}", Body=path.read_bytes())
    assert container["envFrom"][0]["secretRef"]["name"] == "ovmsctl-s3"
    env = {**s3_models.env, "OVMSCTL_STATE_DIR": str(state_dir)}
    env.pop("AWS_SESSION_TOKEN")  # what the Secret documents: a key pair, a region, an endpoint
    pod = LocalPod(container, mounts, env)
    log = tmp_path / "pod.log"
    with pod.running(log) as process:
        wait_ready(pod, process, log)
        check_ports_and_probes(pod, model)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        check_metrics(pod, int(annotations["prometheus.io/port"]), annotations["prometheus.io/path"])
        assert any((mounts["/cache"]).iterdir()), "the bucket is mirrored into the cache volume"
        # `kubectl exec ... ovmsctl status` finds the daemon through the image's OVMSCTL_STATE_DIR.
        status = subprocess.run(
            [sys.executable, "-m", "ovmsctl", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "OVMSCTL_STATE_DIR": str(state_dir)},
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["models"][0]["name"] == model
        grace = pod_spec["terminationGracePeriodSeconds"]
        pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
        stop_within(process, grace - pre_stop, log)


def test_the_kserve_runtime_container_serves_with_its_args_and_probes(tmp_path: Path, state_dir: Path) -> None:
    if (reason := rest_front_end()) is not None:
        pytest.skip(reason)
    runtime = one(RUNTIME, "ClusterServingRuntime")
    isvc = one(ISVC, "InferenceService")
    [container] = runtime["spec"]["containers"]
    name = isvc["metadata"]["name"]
    models = tmp_path / "mnt-models"  # what KServe's storage initializer leaves in /mnt/models: version folders
    save(scale_model([1, 4], factor=2.0), models, 1)
    pod = LocalPod(container, {"/mnt/models": models}, {"OVMSCTL_STATE_DIR": str(state_dir)}, {"{{.Name}}": name})
    assert not any("{{" in arg for arg in pod.args()), pod.args()
    log = tmp_path / "pod.log"
    with pod.running(log) as process:
        wait_ready(pod, process, log)
        check_ports_and_probes(pod, name)
        rest = int(arg_value(container["args"], "rest_port") or 0)
        code, _ = http_get(pod.ports[rest], "/v2/health/ready")
        assert code == 200
        code, body = http_get(pod.ports[rest], f"/v1/models/{name}")  # protocol v1: TF Serving REST
        assert code == 200 and b"AVAILABLE" in body, body
        annotations = runtime["spec"]["annotations"]
        check_metrics(pod, int(annotations["prometheus.kserve.io/port"]), annotations["prometheus.kserve.io/path"])
        stop_within(process, 30 - 1, log)


def test_local_pod_fills_in_every_port_mount_and_placeholder() -> None:
    container = {
        "args": ["--model_name={{.Name}}", "--model_path=/mnt/models", "--port=9000", "--rest_port=8080", "--poll"],
        "ports": [{"name": "h2c", "containerPort": 9000}],
    }
    pod = LocalPod(container, {"/mnt/models": Path("/data/m")}, {}, {"{{.Name}}": "resnet"})
    args = pod.args()
    assert args[:2] == ["--model_name=resnet", "--model_path=/data/m"]
    assert args[2] == f"--port={pod.local_port('h2c')}" and args[3] == f"--rest_port={pod.local_port(8080)}"
    assert args[4] == "--poll"
    command = pod.command()
    assert command[-2:] == ["--bind-address", "127.0.0.1"] and "--foreground" in command
