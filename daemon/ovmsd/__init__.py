"""ovmsd: the model server daemon. Serves OpenVINO models over the TensorFlow Serving gRPC API."""
