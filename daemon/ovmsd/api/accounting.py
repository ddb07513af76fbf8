"""Counting one request in the request metrics, the same way on every front end.

Clients cannot grow the label set: a request for a model that does not exist gets no series, and one for a version
that does not exist is counted against the model (``version=""``), not against the number it asked for. Any other
failed request is counted against the version that was serving when the failure happened, else the version it asked
for (one the model has: loading, retired).
"""

from __future__ import annotations

import logging

from ovmsd.errors import ErrorKind, ServingError
from ovmsd.observe.metrics import RequestMetrics

log = logging.getLogger(__name__)


def count_request(
    metrics: RequestMetrics,
    *,
    api: str,
    interface: str,
    method: str,
    model: str,
    version: str,  # the version that served, or the one asked for ("" for the default)
    error: ServingError | None,
    failed: bool,
    started_ns: int,
) -> None:
    if error is not None and error.kind == ErrorKind.MODEL_MISSING:
        return
    if error is not None and error.version is not None:
        version = str(error.version)
    elif error is not None and error.kind == ErrorKind.VERSION_MISSING:
        version = ""  # any number a client makes up would be a new series
    try:
        metrics.series(model, version, api, interface, method).finished(not failed, started_ns)
    except Exception:  # metrics must never fail a request
        log.exception("counting a %s request failed", method)
