"""Builds the gRPC server with the TF Serving services and the standard health service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from ovmsd.api.grpc.gate import Gate
from ovmsd.api.grpc.health import Health
from ovmsd.api.grpc.model_service import ModelService, ReloadConfig
from ovmsd.api.grpc.prediction_service import PredictionService
from ovmsd.api.grpc.proto import model_service_pb2_grpc, prediction_service_pb2_grpc
from ovmsd.observe.metrics import RequestMetrics
from ovmsd.serving.manager import ModelManager


class BindError(Exception):
    """The gRPC port could not be bound (in use, or a bad address)."""


def build_server(
    manager: ModelManager,
    reload_config: ReloadConfig,
    *,
    bind_address: str,
    port: int,
    workers: int,
    max_message_bytes: int,
    gate: Gate,
    health: Health | None = None,
    metrics: RequestMetrics | None = None,
) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server and the port it bound (useful with port 0)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Without this, a second daemon could bind the same port and silently share the traffic.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"), options=options)
    prediction = PredictionService(manager, gate, metrics)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager, reload_config, gate), server)
    if health is not None:
        health.add_to(server)
    host = f"[{bind_address}]" if ":" in bind_address and not bind_address.startswith("[") else bind_address
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise BindError(f"cannot listen on {host}:{port}: {exc}") from exc
    if bound == 0:
        raise BindError(f"cannot listen on {host}:{port}: address in use or not available")
    return server, bound
