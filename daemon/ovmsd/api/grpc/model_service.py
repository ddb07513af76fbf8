"""``tensorflow.serving.ModelService``: GetModelStatus and HandleReloadConfigRequest, over the data plane."""

from __future__ import annotations

import grpc

from ovmsd.api.grpc.proto import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc
from ovmsd.api.grpc.requests import requested_version
from ovmsd.serving.dataplane import DataPlane
from ovmsd.serving.states import ErrorCode, VersionStatus


def status_response(statuses: list[VersionStatus]) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus's answer (TF Serving REST answers the same message as JSON)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = int(status.state)
        entry.status.error_code = int(status.error_code)
        entry.status.error_message = status.status_message
    return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        return status_response(self.data_plane.status(request.model_spec.name, requested_version(request.model_spec)))

    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        """Like OVMS: the request body is ignored and the config file is read again."""
        reloaded = self.data_plane.reload_config()
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = int(ErrorCode.OK if reloaded.ok else ErrorCode.FAILED_PRECONDITION)
        response.status.error_message = reloaded.message
        return response
