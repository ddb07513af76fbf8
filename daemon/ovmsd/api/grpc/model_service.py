"""``tensorflow.serving.ModelService``: GetModelStatus and HandleReloadConfigRequest."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from ovmsd.api.grpc.errors import grpc_errors
from ovmsd.api.grpc.gate import Gate, gated
from ovmsd.api.grpc.proto import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc
from ovmsd.api.grpc.requests import requested_version
from ovmsd.serving.manager import ModelManager
from ovmsd.serving.states import ErrorCode

# Re-reads the config file and applies it; returns (ok, message) where message summarises the per-model outcome.
ReloadConfig = Callable[[], tuple[bool, str]]


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, reload_config: ReloadConfig, gate: Gate) -> None:
        self.manager = manager
        self.reload_config = reload_config
        self.gate = gate

    @gated
    @grpc_errors
    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        statuses = self.manager.statuses(request.model_spec.name, requested_version(request.model_spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            entry = response.model_version_status.add()
            entry.version = status.version
            entry.state = int(status.state)
            entry.status.error_code = int(status.error_code)
            entry.status.error_message = status.status_message
        return response

    @gated
    @grpc_errors
    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        """Like OVMS: the request body is ignored and the config file is read again."""
        ok, message = self.reload_config()
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = int(ErrorCode.OK if ok else ErrorCode.FAILED_PRECONDITION)
        response.status.error_message = message
        return response
