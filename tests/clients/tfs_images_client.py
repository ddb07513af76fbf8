"""Binary image requests with the real tensorflow-serving-api (in its own virtualenv); prints JSON results.

Usage: python tfs_images_client.py ADDRESS < COMMANDS.json

COMMANDS is a JSON list; each command is one Predict request whose single input is a batch of encoded images, built
as OVMS's samples build it: ``tf.make_tensor_proto(list_of_bytes, shape=[N])`` (a DT_STRING tensor in string_val)::

    {"model": "classifier", "input": "images", "files": ["a.jpg", "b.jpg"], "shape": [2] (optional: default [N])}

The last line of stdout is a JSON list with one result per command, in order: ``{"version": N, "outputs": {name:
{"shape": [...], "data": [flat values]}}}`` or, when the server refused it, ``{"code": "INVALID_ARGUMENT",
"details": "..."}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def run(stub: prediction_service_pb2_grpc.PredictionServiceStub, command: dict[str, Any]) -> dict[str, Any]:
    images = [Path(f).read_bytes() for f in command["files"]]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = command["model"]
    shape = command.get("shape") or [len(images)]
    request.inputs[command["input"]].CopyFrom(tf.make_tensor_proto(images, shape=shape))
    try:
        response = stub.Predict(request, timeout=60)
    except grpc.RpcError as exc:
        return {"code": exc.code().name, "details": exc.details()}
    outputs = {}
    for name, proto in response.outputs.items():
        array = tf.make_ndarray(proto)
        outputs[name] = {"shape": list(array.shape), "data": np.asarray(array, np.float64).ravel().tolist()}
    return {"version": response.model_spec.version.value, "outputs": outputs}


def main(address: str) -> None:
    commands = json.load(sys.stdin)
    options = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        print(json.dumps([run(stub, command) for command in commands]))


if __name__ == "__main__":
    main(*sys.argv[1:])
