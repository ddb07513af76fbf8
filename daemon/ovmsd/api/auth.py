"""API keys: every inference, metadata and reload call must carry ``Authorization: Bearer KEY``.

The key comes from ``--api-key-file`` (OVMS's ``--api_key_file``) or the ``OVMSCTL_API_KEY`` environment variable.
Health and readiness stay open for probes. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

ENVIRONMENT = "OVMSCTL_API_KEY"
UNAUTHENTICATED = "Unauthenticated: this server needs an API key; send the header Authorization: Bearer KEY"


class ApiKeyError(Exception):
    """The key file cannot be read or is empty."""


class ApiKey:
    def __init__(self, key: str) -> None:
        self._expected = f"Bearer {key}".encode()

    def allows(self, authorization: str | bytes | None) -> bool:
        if authorization is None:
            return False
        given = authorization.encode("latin-1", errors="replace") if isinstance(authorization, str) else authorization
        return hmac.compare_digest(given, self._expected)


def read_api_key(path: Path | None, environ: dict[str, str] | None = None) -> ApiKey | None:
    """The configured key (the file wins over the environment); None when neither is set."""
    environ = dict(os.environ) if environ is None else environ
    if path is not None:
        try:
            key = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiKeyError(f"cannot read the API key file {path}: {exc}") from None
        if not key:
            raise ApiKeyError(f"the API key file {path} is empty")
        return ApiKey(key)
    key = environ.get(ENVIRONMENT, "").strip()
    return ApiKey(key) if key else None
