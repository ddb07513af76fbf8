"""The model repository on disk: ``<base_path>/<version>/<model file>``.

Pure file-system functions, shared by ``ovmsctl validate --check-models`` and the serving code. Nothing here imports
OpenVINO.
"""

from __future__ import annotations

import re
from pathlib import Path

_VERSION_NAME = re.compile(r"[1-9][0-9]*")
_SUFFIX_KINDS = {".onnx": "ONNX", ".tflite": "TensorFlow Lite", ".pdmodel": "PaddlePaddle"}
SAVED_MODEL_FILE = "saved_model.pb"
EXPECTED_FILES = "a .xml with its .bin beside it, a .onnx, a .tflite, a saved_model.pb or a .pdmodel file"


class ModelFileError(ValueError):
    """A version directory does not hold exactly one model file; the message is a plain sentence."""


def list_versions(base_path: Path) -> tuple[list[int], list[str]]:
    """The numeric version directories under ``base_path`` (sorted), and the names of the other entries (sorted).

    A version directory is named by a positive integer without leading zeros (``1``, ``42``); files, hidden entries
    and other names are skipped. Raises OSError (FileNotFoundError, NotADirectoryError, ...) when ``base_path``
    cannot be listed.
    """
    versions: list[int] = []
    skipped: list[str] = []
    for entry in base_path.iterdir():
        if _VERSION_NAME.fullmatch(entry.name) and entry.is_dir():
            versions.append(int(entry.name))
        else:
            skipped.append(entry.name)
    return sorted(versions), sorted(skipped)


def find_model_file(version_dir: Path) -> Path:
    """The one model file OpenVINO reads in ``version_dir``.

    That is an IR ``*.xml`` with a ``.bin`` of the same stem beside it, a ``*.onnx``, ``*.tflite`` or ``*.pdmodel``
    file, or a TensorFlow ``saved_model.pb``. Hidden files are ignored. Raises :class:`ModelFileError` when there is
    none or more than one, and OSError when the directory cannot be listed.
    """
    files = sorted(p for p in version_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    found = [p for p in files if _is_model_file(p)]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise ModelFileError(f"{version_dir} holds more than one model file ({names}); keep exactly one")
    message = f"{version_dir} holds no model file (expected {EXPECTED_FILES})"
    orphans = [p.name for p in files if p.suffix.lower() == ".xml"]
    if orphans:
        message += f"; {', '.join(orphans)} has no .bin beside it"
    raise ModelFileError(message)


def model_kind(model_file: Path) -> str:
    """A short name of the model file's format: ``OpenVINO IR``, ``ONNX``, ``TensorFlow SavedModel``, ..."""
    if model_file.name == SAVED_MODEL_FILE:
        return "TensorFlow SavedModel"
    if model_file.suffix.lower() == ".xml":
        return "OpenVINO IR"
    return _SUFFIX_KINDS.get(model_file.suffix.lower(), "unknown")


def read_path(model_file: Path) -> Path:
    """What to pass to ``openvino.Core.read_model``: the file itself, or a SavedModel's directory."""
    return model_file.parent if model_file.name == SAVED_MODEL_FILE else model_file


def _is_model_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return path.with_suffix(".bin").is_file()
    return path.name == SAVED_MODEL_FILE or suffix in _SUFFIX_KINDS


Fingerprint = tuple[tuple[str, int, int], ...]
# An object-store mirror writes this into a version directory last and renames the directory into place whole
# (ovmsd.source.objectstore); hidden, so find_model_file and the version listing ignore it.
MIRROR_MANIFEST = ".ovmsd-objects.json"


def fingerprint(version_dir: Path) -> Fingerprint:
    """What a version directory's files look like (relative path, size, mtime): a change means "load it again"."""
    try:
        files = sorted(p for p in version_dir.rglob("*") if p.is_file())
        return tuple((str(p.relative_to(version_dir)), st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()])
    except OSError:
        return ()


def is_settled(version_dir: Path, quiet_s: float, now: float) -> bool:
    """Whether a version directory is complete enough to load.

    It is when its files stopped changing ``quiet_s`` seconds ago, or at once when the directory itself changed after
    its last file did (it was renamed into place, the atomic way to publish a version), or when an object-store
    mirror installed it (its manifest, written last, is there; the rename may fall in the same clock tick as the
    last write, which the time test cannot tell apart). A missing directory is not.
    """
    if (version_dir / MIRROR_MANIFEST).is_file():
        return True
    try:
        newest_file = max((_changed_at(p) for p in version_dir.rglob("*") if p.is_file()), default=0.0)
        directory = version_dir.stat().st_ctime_ns / 1e9
    except OSError:
        return False
    return now - newest_file >= quiet_s or directory > newest_file


def _changed_at(path: Path) -> float:
    st = path.stat()
    return max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
