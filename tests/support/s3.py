"""A real S3 API on 127.0.0.1 for tests: moto's server mode in a thread, and boto3 to fill its buckets.

The server keeps its buckets in this process, so stopping it and starting it again on the same port is the store
going away and coming back with its content.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support.daemon import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    """moto's S3 on a free loopback port; ``stop`` really closes the port (moto's own stop leaves it bound)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            if server._server is not None:
                server._server.server_close()

    @property
    def env(self) -> dict[str, str]:
        """What a client (the daemon) needs: the endpoint override and fake credentials."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self) -> object:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


class Bucket:
    """A fresh bucket (a unique name per test: moto's state lives as long as the test process)."""

    def __init__(self, server: S3Server) -> None:
        self.name = f"models-{uuid.uuid4().hex[:12]}"
        self.client = server.client()
        self.client.create_bucket(Bucket=self.name)  # type: ignore[attr-defined]

    def url(self, prefix: str) -> str:
        return f"s3://{self.name}/{prefix}"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)  # type: ignore[attr-defined]

    def upload_dir(self, directory: Path, prefix: str) -> list[str]:
        """Every file under ``directory`` as ``prefix/<relative path>``; returns the keys."""
        keys = []
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(directory).as_posix()}"
            self.put(key, path.read_bytes())
            keys.append(key)
        return keys

    def delete_prefix(self, prefix: str) -> None:
        for key in self.keys(prefix):
            self.client.delete_object(Bucket=self.name, Key=key)  # type: ignore[attr-defined]

    def keys(self, prefix: str = "") -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name, Prefix=prefix)  # type: ignore[attr-defined]
        return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A running S3 server, with this process's (and its children's) environment pointing at it."""
    server = S3Server()
    for variable in ("AWS_ENDPOINT_URL_S3", "S3_ENDPOINT", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    server.start()
    try:
        yield server
    finally:
        server.stop()
