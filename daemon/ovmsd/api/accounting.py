"""Counting one request in the request metrics, the same way on every front end.

Clients cannot grow the label set. A request for a model that does not exist gets no series (even one refused
before the model was looked up). One that failed before a version of the model was found (a version it does not
have, a version that is no number) is counted against the model (``version=""``), not against what it asked for.
Any other failed request is counted against the version that was serving when the failure happened, or the version
it asked for when that one is loading or retired (a version the model has).
"""

from __future__ import annotations

import logging

from ovmsd.errors import ErrorKind, ServingError
from ovmsd.observe.metrics import RequestMetrics

log = logging.getLogger(__name__)

KNOWN_VERSION_ERRORS = frozenset({ErrorKind.VERSION_NOT_LOADED_YET, ErrorKind.VERSION_RETIRED})  # the model has it


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
    if error is not None:
        if error.kind == ErrorKind.MODEL_MISSING:
            return
        if error.version is not None:
            version = str(error.version)
        elif not metrics.known_model(model):
            return  # refused before the model was looked up (a bad version text, a malformed body): a made-up name
        elif error.kind not in KNOWN_VERSION_ERRORS:
            version = ""  # any text a client makes up would be a new series
    try:
        metrics.series(model, version, api, interface, method).finished(not failed, started_ns)
    except Exception:  # metrics must never fail a request
        log.exception("counting a %s request failed", method)
