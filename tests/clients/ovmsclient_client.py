"""Runs with the real ovmsclient (in its own virtualenv) against a daemon; prints JSON results.

Usage: python ovmsclient_client.py ADDRESS MODEL INPUT_NAME INPUT.npy
"""

from __future__ import annotations

import json
import sys

import numpy as np
import ovmsclient


def main(address: str, model: str, input_name: str, input_file: str) -> None:
    client = ovmsclient.make_grpc_client(address)
    array = np.load(input_file)
    result = client.predict(inputs={input_name: array}, model_name=model)
    outputs = result if isinstance(result, dict) else {"<single>": result}
    metadata = client.get_model_metadata(model_name=model)
    status = client.get_model_status(model_name=model)
    try:
        client.predict(inputs={input_name: array}, model_name="no-such-model")
        not_found = "no error"
    except ovmsclient.tfs_compat.base.errors.ModelNotFoundError as exc:
        not_found = type(exc).__name__
    except Exception as exc:  # report what the client raised
        not_found = type(exc).__name__
    print(
        json.dumps(
            {
                "outputs": {k: np.asarray(v).tolist() for k, v in outputs.items()},
                "metadata": metadata,
                "status": {str(k): v for k, v in status.items()},
                "unknown_model": not_found,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
