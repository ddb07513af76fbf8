"""Reading an S3 (or S3-compatible) model repository: list its objects by version, download one object.

boto3 is an optional extra (``ovmsctl[s3]``) and is imported here only, and only when an ``s3://`` base path is
served or checked. Credentials, region and endpoint come from the standard AWS environment variables (and the
files and instance roles boto3 reads); ``S3_ENDPOINT``, OVMS's spelling, is an alias for the endpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ovmsd.config.models import StoreUrl

S3_EXTRA = "install the s3 extra: pip install 'ovmsctl[s3]'"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT")  # first set wins
_VERSION_NAME = re.compile(r"[1-9][0-9]*")  # as ovmsd.source.repository: no leading zeros
_CHUNK = 1024 * 1024


class StoreError(Exception):
    """The store cannot be listed or read (unreachable, access denied, no such bucket...): one sentence."""


class ObjectChanged(Exception):
    """An object changed (or vanished) between the listing and its download: the version is not stable yet."""


@dataclass(frozen=True, order=True)
class StoredObject:
    """One object of a version: its path inside the version directory, its size and its ETag."""

    path: str
    size: int
    etag: str


Signature = tuple[StoredObject, ...]  # a version's objects, sorted: equal signatures mean the same version


@dataclass(frozen=True)
class Listing:
    versions: Mapping[int, Signature]
    skipped: tuple[str, ...] = ()  # entries under the prefix that are not version directories (sorted)


def endpoint_override(environ: Mapping[str, str] = os.environ) -> str | None:
    """The endpoint of an S3-compatible store, from the environment; None: AWS itself.

    ``S3_ENDPOINT`` may be a bare ``host:port`` (as OVMS and TensorFlow take it): https, or http with
    ``S3_USE_HTTPS=0``.
    """
    for variable in ENDPOINT_VARIABLES:
        value = environ.get(variable, "").strip()
        if value:
            if "://" not in value:
                secure = environ.get("S3_USE_HTTPS", "1").strip().lower() not in ("0", "false", "no")
                value = f"{'https' if secure else 'http'}://{value}"
            return value
    return None


def s3_client() -> Any:
    """A boto3 S3 client configured from the environment. Raises StoreError without boto3."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StoreError(f"s3:// base paths need boto3, which is not installed; {S3_EXTRA}") from None
    endpoint = endpoint_override()
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        # S3-compatible stores (MinIO, Ceph, moto...) all take path-style requests; many lack bucket host names.
        s3={"addressing_style": "path"} if endpoint else {},
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    # one session per client: boto3's default session is shared and not thread-safe
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config)


class S3Repository:
    """One ``s3://bucket/prefix`` model repository, seen through one client (used by one thread at a time)."""

    def __init__(self, url: StoreUrl, client: Any) -> None:
        self.url = url
        self._client = client

    def list(self) -> Listing:
        """Every object under the prefix, grouped by numeric version directory. Raises StoreError."""
        key_prefix = self.url.key_prefix
        versions: dict[int, list[StoredObject]] = {}
        skipped: set[str] = set()
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.url.bucket, Prefix=key_prefix
            ):
                for item in page.get("Contents", ()):
                    relative = item["Key"][len(key_prefix) :]
                    if relative.endswith("/"):  # a "folder" marker some tools create
                        continue
                    version, _, path = relative.partition("/")
                    if not _VERSION_NAME.fullmatch(version) or not path:
                        skipped.add(version)
                    elif not _safe(path):
                        skipped.add(relative)
                    else:
                        etag = str(item.get("ETag", "")).strip('"')
                        versions.setdefault(int(version), []).append(StoredObject(path, int(item["Size"]), etag))
        except Exception as exc:
            raise _store_error(exc, f"cannot list {self.url}") from exc
        return Listing({n: tuple(sorted(objs)) for n, objs in versions.items()}, tuple(sorted(skipped)))

    def download(self, version: int, obj: StoredObject, dest: Path, stopped: Callable[[], bool]) -> bool:
        """Write one object to ``dest``; False when ``stopped()`` turned true meanwhile (``dest`` is partial).

        Raises ObjectChanged when the object is no longer the one listed, StoreError when the store fails.
        """
        key = f"{self.url.key_prefix}{version}/{obj.path}"
        try:
            response = self._client.get_object(Bucket=self.url.bucket, Key=key, IfMatch=f'"{obj.etag}"')
            written = 0
            with dest.open("wb") as out:
                for chunk in response["Body"].iter_chunks(_CHUNK):
                    if stopped():
                        response["Body"].close()
                        return False
                    out.write(chunk)
                    written += len(chunk)
        except ObjectChanged:
            raise
        except Exception as exc:
            if _error_code(exc) in ("PreconditionFailed", "NoSuchKey", "412", "404"):
                raise ObjectChanged(key) from exc
            raise _store_error(exc, f"cannot download s3://{self.url.bucket}/{key}") from exc
        if written != obj.size:
            raise ObjectChanged(key)
        return True


def _safe(path: str) -> bool:
    """Whether an object's path inside a version can be a local file path (no ``..``, ``.`` or empty segments)."""
    parts = path.split("/")
    return all(part not in ("", ".", "..") for part in parts) and not PurePosixPath(path).is_absolute()


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _store_error(exc: Exception, doing: str) -> StoreError:
    """One sentence for a boto3/botocore error: ``cannot list s3://b/m: AccessDenied: Access Denied``."""
    code = _error_code(exc)
    if code:
        message = exc.response.get("Error", {}).get("Message") or ""  # type: ignore[attr-defined]
        return StoreError(f"{doing}: {code}" + (f": {message}" if message and message != code else ""))
    return StoreError(f"{doing}: {exc}")
