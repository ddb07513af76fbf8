"""Build the demo models of `make demo` with OpenVINO's opset API (no download) into a model repository.

- ``classifier`` (served with ``batch_size: auto``): images ``[N,3,32,32]`` f32 -> probabilities ``[N,10]``.
- ``segmenter`` (served with ``shape: auto``): a fully convolutional net, ``data [N,3,H,W]`` -> ``mask [N,1,H,W]``.

Usage: ``python sample_configs/build_demo_models.py DIR`` (writes ``DIR/<model>/1/model.xml``), or ``--usage`` to print
how to call the demo daemon.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops

USAGE = """\
Demo models: 'classifier' (batch_size: auto, input 'images' [N,3,32,32]) and 'segmenter' (shape: auto, input 'data').
Call them with any TF Serving client on 127.0.0.1:9000, for example:

  .venv/bin/python - <<'PY'
  import grpc, numpy as np
  from ovmsd.api.grpc.proto import predict_pb2, prediction_service_pb2_grpc
  from ovmsd.api.grpc.tensors import numpy_to_tensor, tensor_to_numpy
  stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel("127.0.0.1:9000"))
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "classifier"
  numpy_to_tensor(np.random.rand(8, 3, 32, 32).astype(np.float32), request.inputs["images"])
  print(tensor_to_numpy(stub.Predict(request).outputs["probabilities"]).argmax(axis=1))
  PY

or over REST on 127.0.0.1:8000 (TF Serving REST and KServe v2 REST; README.md has a curl line per endpoint):

  curl -d '{"inputs": [{"name": "data", "datatype": "FP32", "shape": [1, 3, 2, 2],
            "data": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}]}' http://127.0.0.1:8000/v2/models/segmenter/infer
"""


def _named(node: ov.Node, name: str) -> ov.Node:
    node.set_friendly_name(name)
    node.output(0).get_tensor().set_names({name})
    return node


def classifier(seed: int = 0) -> ov.Model:
    rng = np.random.default_rng(seed)
    images = _named(ops.parameter([1, 3, 32, 32], np.float32, name="images"), "images")
    weights = ops.constant(rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3)
    conv = ops.convolution(images, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    pooled = ops.reduce_mean(ops.relu(conv), ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    dense = ops.matmul(pooled, ops.constant(rng.standard_normal((16, 10)).astype(np.float32)), False, False)
    probabilities = _named(ops.softmax(dense, 1), "probabilities")
    return ov.Model([probabilities], [images], "classifier")


def segmenter(seed: int = 1) -> ov.Model:
    rng = np.random.default_rng(seed)
    data = _named(ops.parameter([1, 3, 64, 64], np.float32, name="data"), "data")
    w1 = ops.constant(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3)
    w2 = ops.constant(rng.standard_normal((1, 8, 1, 1)).astype(np.float32) * 0.3)
    hidden = ops.relu(ops.convolution(data, w1, [1, 1], [1, 1], [1, 1], [1, 1]))
    mask = _named(ops.sigmoid(ops.convolution(hidden, w2, [1, 1], [0, 0], [0, 0], [1, 1])), "mask")
    return ov.Model([mask], [data], "segmenter")


def build(root: Path) -> None:
    for name, model in (("classifier", classifier()), ("segmenter", segmenter())):
        target = root / name / "1" / "model.xml"
        target.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, target)
        print(f"built {target}")


def main(argv: list[str]) -> int:
    if argv == ["--usage"]:
        print(USAGE)
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    build(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
