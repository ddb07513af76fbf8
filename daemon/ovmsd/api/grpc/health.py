"""The standard ``grpc.health.v1.Health`` service, fed from the manager.

Service ``""`` (the whole server), our two TF Serving services and KServe's are SERVING once start-up is done and
until the daemon stops. Each model name is SERVING while it has an AVAILABLE version, NOT_SERVING otherwise
(loading, failed, or removed from the config). Unknown names answer NOT_FOUND, as the protocol says.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

if TYPE_CHECKING:
    from ovmsd.serving.states import ModelSnapshot

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVER_SERVICES = (
    "",
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "inference.GRPCInferenceService",
)


class Health:
    def __init__(self, models: Callable[[], Iterable[ModelSnapshot]]) -> None:
        self._models = models
        self.servicer = health.HealthServicer()
        self._known: dict[str, int] = {}
        self._lock = threading.Lock()  # refreshes come from the main loop and from reloads
        self._set_server(NOT_SERVING)  # until start-up is done

    def add_to(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def serving(self) -> None:
        self._set_server(SERVING)
        self.refresh()

    def refresh(self) -> None:
        """Bring the per-model statuses up to date (cheap: only changes reach the servicer)."""
        for model in self._models():
            self._set(model.name, SERVING if model.serving else NOT_SERVING)

    def stopping(self) -> None:
        """Everything NOT_SERVING from now on (load balancers stop sending before the port closes)."""
        self.servicer.enter_graceful_shutdown()

    def _set_server(self, status: int) -> None:
        for service in SERVER_SERVICES:
            self._set(service, status)

    def _set(self, service: str, status: int) -> None:
        with self._lock:
            if self._known.get(service) != status:
                self._known[service] = status
                self.servicer.set(service, status)
