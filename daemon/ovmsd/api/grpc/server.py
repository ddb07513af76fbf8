"""Builds the gRPC server: the TF Serving and KServe v2 services over the data plane, one wrapper for all, health."""

from __future__ import annotations

from typing import Any

import grpc

from ovmsd.api.auth import ApiKey
from ovmsd.api.gate import Gate
from ovmsd.api.grpc.health import Health
from ovmsd.api.grpc.kserve_service import SERVICE as KSERVE
from ovmsd.api.grpc.kserve_service import InferenceService
from ovmsd.api.grpc.model_service import ModelService
from ovmsd.api.grpc.prediction_service import PredictionService
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2_grpc, model_service_pb2_grpc, prediction_service_pb2_grpc
from ovmsd.api.grpc.wrapper import MethodInfo, RequestWrapper
from ovmsd.observe.metrics import RequestMetrics
from ovmsd.serving.concurrency import TurnPool
from ovmsd.serving.dataplane import DataPlane

TFS = "TensorFlowServing"
PREDICTION = "tensorflow.serving.PredictionService"
MODELS = "tensorflow.serving.ModelService"


def _tfs_requested(request: Any) -> tuple[str, str]:
    spec = request.model_spec
    return spec.name, str(spec.version.value) if spec.HasField("version") else ""


def _tfs_served(response: Any) -> str:
    return str(response.model_spec.version.value)


TFS_METHODS = {
    f"/{PREDICTION}/Predict": MethodInfo(TFS, "Predict", _tfs_requested, _tfs_served),
    f"/{PREDICTION}/GetModelMetadata": MethodInfo(TFS, "GetModelMetadata", _tfs_requested, _tfs_served),
    f"/{MODELS}/GetModelStatus": MethodInfo(TFS, "GetModelStatus", _tfs_requested),
}


KSERVE_API = "KServe"


def _kserve_model(request: Any) -> tuple[str, str]:
    return request.name, ""  # as OVMS labels ModelReady: by name only


def _kserve_metadata(request: Any) -> tuple[str, str]:
    return request.name, request.version


def _kserve_infer(request: Any) -> tuple[str, str]:
    return request.model_name, request.model_version


def _kserve_served(response: Any) -> str:
    return response.model_version


def _kserve_stream_served(response: Any) -> str:
    return response.infer_response.model_version


KSERVE_METHODS = {
    f"/{KSERVE}/ModelReady": MethodInfo(KSERVE_API, "ModelReady", _kserve_model),
    f"/{KSERVE}/ModelMetadata": MethodInfo(KSERVE_API, "ModelMetadata", _kserve_metadata),
    f"/{KSERVE}/ModelInfer": MethodInfo(KSERVE_API, "ModelInfer", _kserve_infer, _kserve_served),
    f"/{KSERVE}/ModelStreamInfer": MethodInfo(KSERVE_API, "ModelInferStream", _kserve_infer, _kserve_stream_served),
}


class BindError(Exception):
    """The gRPC port could not be bound (in use, or a bad address)."""


def build_server(
    data_plane: DataPlane,
    *,
    bind_address: str,
    port: int,
    workers: int,
    max_message_bytes: int,
    gate: Gate,
    health: Health | None = None,
    metrics: RequestMetrics | None = None,
    credentials: grpc.ServerCredentials | None = None,
    api_key: ApiKey | None = None,
    max_connections: int | None = None,
    idle_timeout_s: float | None = None,
) -> tuple[grpc.Server, int]:
    """A ready (not yet started) server and the port it bound (useful with port 0); TLS with ``credentials``."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Without this, a second daemon could bind the same port and silently share the traffic.
        ("grpc.so_reuseport", 0),
    ]
    if max_connections is not None:
        options.append(("grpc.max_allowed_incoming_connections", max_connections))
    if idle_timeout_s is not None:
        options.append(("grpc.max_connection_idle_ms", int(idle_timeout_s * 1000)))
    probes = frozenset({f"/{KSERVE}/ServerLive", f"/{KSERVE}/ServerReady"})
    services = {PREDICTION: TFS, MODELS: TFS, KSERVE: KSERVE_API}
    wrapper = RequestWrapper(gate, metrics, {**TFS_METHODS, **KSERVE_METHODS}, services, probes, api_key)
    # a request waiting for a model's place lends its thread's turn to the next one (ovmsd.serving.concurrency)
    server = grpc.server(TurnPool(workers, "grpc"), options=options, interceptors=[wrapper])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(data_plane), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(data_plane), server)
    kserve_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(data_plane), server)
    if health is not None:
        health.add_to(server)
    host = f"[{bind_address}]" if ":" in bind_address and not bind_address.startswith("[") else bind_address
    try:
        address = f"{host}:{port}"
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise BindError(f"cannot listen on {host}:{port}: {exc}") from exc
    if bound == 0:
        raise BindError(f"cannot listen on {host}:{port}: address in use or not available")
    return server, bound
