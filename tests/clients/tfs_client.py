"""Runs with the real tensorflow-serving-api (in its own virtualenv) against a daemon; prints JSON results.

Usage: python tfs_client.py ADDRESS MODEL INPUT_NAME INPUT.npy
"""

from __future__ import annotations

import json
import sys

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def main(address: str, model: str, input_name: str, input_file: str) -> None:
    channel = grpc.insecure_channel(address)
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    array = np.load(input_file)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(array))
    response = prediction.Predict(request, timeout=30)
    outputs = {k: tf.make_ndarray(v).tolist() for k, v in response.outputs.items()}

    typed = predict_pb2.PredictRequest()  # small tensors in the typed *_val fields, as make_tensor_proto does for lists
    typed.model_spec.name = model
    typed.inputs[input_name].CopyFrom(tf.make_tensor_proto(array.ravel().tolist(), dtype=tf.float32, shape=array.shape))
    typed_outputs = {k: tf.make_ndarray(v).tolist() for k, v in prediction.Predict(typed, timeout=30).outputs.items()}

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest()
    meta_request.model_spec.name = model
    meta_request.metadata_field.append("signature_def")
    meta = prediction.GetModelMetadata(meta_request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(signature_map)
    definition = signature_map.signature_def["serving_default"]

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = model
    status = models.GetModelStatus(status_request, timeout=30)

    try:
        bad = predict_pb2.PredictRequest()
        bad.model_spec.name = "no-such-model"
        bad.inputs[input_name].CopyFrom(tf.make_tensor_proto(array))
        prediction.Predict(bad, timeout=30)
        not_found = "no error"
    except grpc.RpcError as exc:
        not_found = exc.code().name

    print(
        json.dumps(
            {
                "version": response.model_spec.version.value,
                "outputs": outputs,
                "typed_outputs": typed_outputs,
                "metadata_version": meta.model_spec.version.value,
                "inputs": {k: [d.size for d in v.tensor_shape.dim] for k, v in definition.inputs.items()},
                "outputs_meta": {k: [d.size for d in v.tensor_shape.dim] for k, v in definition.outputs.items()},
                "input_dtypes": {k: tf.dtypes.as_dtype(v.dtype).name for k, v in definition.inputs.items()},
                "status": [
                    {
                        "version": s.version,
                        "state": s.state,
                        "code": s.status.error_code,
                        "message": s.status.error_message,
                    }
                    for s in status.model_version_status
                ],
                "unknown_model": not_found,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
