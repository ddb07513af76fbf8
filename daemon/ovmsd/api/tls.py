"""TLS and mutual TLS for every port (gRPC, REST, metrics), with certificates re-read without a restart.

The material comes from TF Serving's ``--ssl_config_file`` (a text-format ``SSLConfig`` holding the PEM text of
``server_key``, ``server_cert``, ``custom_ca`` and ``client_verify``), so TF Serving deployments move over unchanged,
or from plain files (``--tls-cert``, ``--tls-key``, ``--tls-client-ca``; a client CA turns on client verification).

``reload()`` (SIGHUP, ``ovmsctl reload``) reads the material again; when it is valid, new connections on every port
get it (gRPC through dynamic credentials, asked on each handshake; REST and metrics by loading the new chain into
their live ``SSLContext``) and open connections are kept. A reload that cannot be read keeps the old material and
says why. Turning client verification on or off needs a restart (gRPC fixes it when the port opens).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import text_format

from ovmsd.api.grpc.proto import ssl_config_pb2

log = logging.getLogger(__name__)


class TlsError(Exception):
    """The TLS material cannot be read or used; the message names the file and the problem."""


@dataclass(frozen=True)
class TlsMaterial:
    key: bytes
    cert: bytes
    client_ca: bytes | None
    verify_clients: bool


@dataclass(frozen=True)
class TlsFiles:
    """Where the material comes from: an SSLConfig text file, or the three plain files."""

    ssl_config: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.ssl_config is not None or self.cert is not None or self.key is not None

    def read(self) -> TlsMaterial:
        if self.ssl_config is not None:
            if self.cert or self.key or self.client_ca:
                raise TlsError("give either --ssl-config-file or --tls-cert/--tls-key/--tls-client-ca, not both")
            return _from_ssl_config(self.ssl_config)
        if self.cert is None or self.key is None:
            raise TlsError("TLS needs both --tls-cert and --tls-key")
        ca = _read(self.client_ca, "client CA") if self.client_ca is not None else None
        material = TlsMaterial(_read(self.key, "key"), _read(self.cert, "certificate"), ca, ca is not None)
        _check(material)
        return material


@dataclass(frozen=True)
class PemFiles:
    cert: Path
    key: Path
    client_ca: Path | None
    verify_clients: bool


class Tls:
    """The daemon's TLS material, shared by every port."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._material = files.read()
        self._generation = 0
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="ovmsd-tls-"))  # 0700: SSLContext loads chains from files only
        self._contexts: list[ssl.SSLContext] = []

    @property
    def verify_clients(self) -> bool:
        return self._material.verify_clients

    def grpc_credentials(self) -> grpc.ServerCredentials:
        served = [self._generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:  # on every handshake: cheap when unchanged
            if served[0] == self._generation:
                return None
            served[0] = self._generation
            return _grpc_configuration(self._material)

        return grpc.dynamic_ssl_server_credentials(
            _grpc_configuration(self._material), fetch, require_client_authentication=self._material.verify_clients
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for an HTTP port; ``reload`` keeps it current."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load(context, self._material)
        with self._lock:
            self._contexts.append(context)
        return context

    def track(self, context: ssl.SSLContext) -> None:
        """Keep a context made elsewhere (the metrics server's) current too."""
        with self._lock:
            self._contexts.append(context)

    @contextlib.contextmanager
    def pem_files(self) -> Iterator[PemFiles]:
        """The material as files, for a server that loads them itself (the metrics port); the key file is removed
        when the block ends (the server has loaded it by then)."""
        material = self._material
        folder = Path(tempfile.mkdtemp(prefix="pem-", dir=self._dir))
        try:
            cert, key, ca = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
            cert.write_bytes(material.cert)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(material.key)
            if material.client_ca is not None:
                ca.write_bytes(material.client_ca)
            yield PemFiles(cert, key, ca if material.client_ca is not None else None, material.verify_clients)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def reload(self) -> bool:
        """Read the material again; True when it changed and every port now hands it to new connections."""
        try:
            material = self._files.read()
            self._load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), material)  # proves key and chain belong together
        except (TlsError, ssl.SSLError, OSError) as exc:
            log.error("TLS certificates not reloaded, the old ones stay in use: %s", exc)
            return False
        if material == self._material:
            return False
        if material.verify_clients != self._material.verify_clients:
            log.warning("TLS client verification changes only with a restart; the new certificates are used")
        with self._lock:
            for context in self._contexts:
                self._load(context, material)
            self._material = material
            self._generation += 1
        log.info("TLS certificates reloaded")
        return True

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def _load(self, context: ssl.SSLContext, material: TlsMaterial) -> None:
        cert, key = self._dir / "cert.pem", self._dir / "key.pem"
        cert.write_bytes(material.cert)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(material.key)
        try:
            context.load_cert_chain(cert, key)
        finally:
            key.unlink(missing_ok=True)  # the key lives on in memory only
        if material.client_ca is not None:
            context.load_verify_locations(cadata=material.client_ca.decode("ascii", errors="replace"))
        context.verify_mode = ssl.CERT_REQUIRED if material.verify_clients else ssl.CERT_NONE


def _grpc_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], material.client_ca)


def _from_ssl_config(path: Path) -> TlsMaterial:
    text = _read(path, "SSL config").decode("utf-8", errors="replace")
    config = ssl_config_pb2.SSLConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise TlsError(f"{path}: not a TF Serving SSLConfig: {exc}") from None
    if not config.server_key or not config.server_cert:
        raise TlsError(f"{path}: server_key and server_cert are required")
    if config.client_verify and not config.custom_ca:
        raise TlsError(f"{path}: client_verify needs custom_ca (the CA that signs client certificates)")
    ca = config.custom_ca.encode() if config.custom_ca else None
    material = TlsMaterial(config.server_key.encode(), config.server_cert.encode(), ca, config.client_verify)
    _check(material, path)
    return material


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def _check(material: TlsMaterial, source: Path | None = None) -> None:
    """The key and certificate load together (and the CA parses), before any port uses them."""
    with tempfile.TemporaryDirectory(prefix="ovmsd-tls-check-") as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert.write_bytes(material.cert)
        key.write_bytes(material.key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        where = f"{source}: " if source else ""
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise TlsError(f"{where}the TLS key and certificate do not load together: {exc.reason or exc}") from None
        if material.client_ca is not None:
            try:
                context.load_verify_locations(cadata=material.client_ca.decode("ascii", errors="replace"))
            except (ssl.SSLError, ValueError) as exc:
                raise TlsError(f"{where}the client CA is not a PEM certificate: {exc}") from None
