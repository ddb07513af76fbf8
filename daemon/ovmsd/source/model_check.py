"""``ovmsctl validate --check-models``: check that each configured model is on disk and that OpenVINO reads it.

This module imports OpenVINO (slow to import), so it is only imported when models are actually checked. An
``s3://`` model is checked like a local one: its store is listed, and each version the policy selects is downloaded
whole into a temporary directory for OpenVINO to read.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import openvino as ov

from ovmsd.config.loader import ConfigIssue, Positions
from ovmsd.config.models import InputShape, ModelConfig, ServerConfig, format_shape
from ovmsd.source.repository import ModelFileError, find_model_file, list_versions, read_path

IssueAt = Callable[[str, str], ConfigIssue]
_InputInfo = tuple[frozenset[str], ov.PartialShape]


def check_models(
    config: ServerConfig, positions: Positions | None = None, core: ov.Core | None = None
) -> list[ConfigIssue]:
    """Every problem found on disk for every model of ``config``, each pointing into the model's config.

    ``positions`` (from :class:`~ovmsd.config.loader.CheckResult`) gives the issues their line and column.
    """
    at = (positions or Positions()).issue
    core = core or ov.Core()
    issues: list[ConfigIssue] = []
    for index, model in enumerate(config.models):
        issues += check_model(model, f"/model_config_list/{index}/config", at, core)
    return issues


def check_model(model: ModelConfig, pointer: str, at: IssueAt, core: ov.Core) -> list[ConfigIssue]:
    """The problems of one model: its base path, its version directories, and each version the policy selects."""
    if model.source_url is not None:
        return _check_remote(model, pointer, at, core)
    versions, problem = _versions_on_disk(model)
    if problem:
        return [at(f"{pointer}/base_path", problem)]
    issues = _policy_issues(model, versions, pointer, at)
    for version in sorted(model.version_policy.select(versions)):
        issues += _check_version(model, version, pointer, at, core)
    return issues


def _versions_on_disk(model: ModelConfig) -> tuple[list[int], str | None]:
    """The model's version numbers, or a sentence saying why there are none."""
    base = model.base_path
    if not base.exists():
        return [], f"model '{model.name}': base path {base} does not exist"
    if not base.is_dir():
        return [], f"model '{model.name}': base path {base} is not a directory"
    try:
        versions, skipped = list_versions(base)
    except OSError as exc:
        return [], f"model '{model.name}': cannot list {base}: {exc.strerror or exc}"
    if not versions:
        message = f"model '{model.name}': {base} has no version directories (expected numbered ones like {base}/1/)"
        if skipped:
            message += f"; it holds only {', '.join(skipped[:5])}" + (", ..." if len(skipped) > 5 else "")
        return [], message
    return versions, None


def _check_remote(model: ModelConfig, pointer: str, at: IssueAt, core: ov.Core) -> list[ConfigIssue]:
    """An object-store model: the versions listed in the store; the selected ones downloaded and read."""
    from ovmsd.source.s3 import ObjectChanged, S3Repository, StoreError, s3_client  # boto3: only for s3:// models

    url = model.store_url
    assert url is not None
    try:
        repository = S3Repository(url, s3_client())
        listing = repository.list()
    except StoreError as exc:
        return [at(f"{pointer}/base_path", f"model '{model.name}': {exc}")]
    versions = sorted(listing.versions)
    if not versions:
        message = f"model '{model.name}': {url} has no version directories (expected objects like {url}/1/model.xml)"
        return [at(f"{pointer}/base_path", message)]
    issues = _policy_issues(model, versions, pointer, at)
    with tempfile.TemporaryDirectory(prefix="ovmsctl-check-") as tmp:
        local = replace(model, base_path=Path(tmp), source_url=None)
        for version in sorted(model.version_policy.select(versions)):
            try:
                for obj in listing.versions[version]:
                    dest = Path(tmp) / str(version) / obj.path
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    repository.download(version, obj, dest, lambda: False)
            except (StoreError, ObjectChanged) as exc:
                what = f"{exc} changed while it was downloaded" if isinstance(exc, ObjectChanged) else str(exc)
                issues.append(at(pointer, f"model '{model.name}' version {version}: {what}"))
                continue
            found = _check_version(local, version, pointer, at, core)
            issues += [replace(i, message=i.message.replace(tmp, str(url))) for i in found]
    return issues


def _policy_issues(model: ModelConfig, versions: list[int], pointer: str, at: IssueAt) -> list[ConfigIssue]:
    policy = model.version_policy
    if policy.kind != "specific":
        return []
    missing = sorted(set(policy.versions) - set(versions))
    if not missing:
        return []
    on_disk = ", ".join(str(v) for v in versions)
    wanted = ", ".join(str(v) for v in missing)
    noun = "version" if len(missing) == 1 else "versions"
    message = f"model '{model.name}': {noun} {wanted} named by model_version_policy not found (on disk: {on_disk})"
    return [at(f"{pointer}/model_version_policy", message)]


def _check_version(model: ModelConfig, version: int, pointer: str, at: IssueAt, core: ov.Core) -> list[ConfigIssue]:
    where = f"model '{model.name}' version {version}"
    version_dir = model.base_path / str(version)
    try:
        model_file = find_model_file(version_dir)
    except ModelFileError as exc:
        return [at(pointer, f"{where}: {exc}")]
    except OSError as exc:
        return [at(pointer, f"{where}: cannot list {version_dir}: {exc.strerror or exc}")]
    try:
        ov_model = core.read_model(read_path(model_file))
    except Exception as exc:  # OpenVINO raises RuntimeError and a few frontend-specific types
        return [at(pointer, f"{where}: OpenVINO cannot read {model_file.name}: {_openvino_message(exc)}")]
    inputs = [(frozenset(port.get_names()), port.get_partial_shape()) for port in ov_model.inputs]
    return _shape_issues(model, where, inputs, pointer, at) + _layout_issues(model, where, inputs, pointer, at)


def _shape_issues(
    model: ModelConfig, where: str, inputs: Sequence[_InputInfo], pointer: str, at: IssueAt
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    anonymous = model.shape.anonymous
    if anonymous is not None and not anonymous.auto:
        if len(inputs) != 1:
            message = (
                f"{where}: the shape {anonymous} has no input name, but the model has {len(inputs)} inputs "
                f"({_names(inputs)}); map input names to shapes instead"
            )
            issues.append(at(f"{pointer}/shape", message))
        else:
            issues += _rank_issue(where, "the model input", anonymous, inputs[0][1], f"{pointer}/shape", at)
    for name, shape in model.shape.per_input.items():
        input_pointer = f"{pointer}/shape/{_escape(name)}"
        info = _find_input(inputs, name)
        if info is None:
            issues.append(at(input_pointer, _no_such_input(where, name, inputs)))
        elif not shape.auto:
            issues += _rank_issue(where, f"input '{name}'", shape, info[1], input_pointer, at)
    return issues


def _layout_issues(
    model: ModelConfig, where: str, inputs: Sequence[_InputInfo], pointer: str, at: IssueAt
) -> list[ConfigIssue]:
    if not isinstance(model.layout, dict):
        return []
    return [
        at(f"{pointer}/layout/{_escape(name)}", _no_such_input(where, name, inputs))
        for name in model.layout
        if _find_input(inputs, name) is None
    ]


def _rank_issue(
    where: str, what: str, shape: InputShape, model_shape: ov.PartialShape, pointer: str, at: IssueAt
) -> list[ConfigIssue]:
    dims = shape.dims or ()
    if model_shape.rank.is_dynamic or model_shape.rank.get_length() == len(dims):
        return []
    message = (
        f"{where}: the configured shape {format_shape(dims)} has {len(dims)} dimensions, "
        f"but {what} has {model_shape.rank.get_length()} ({model_shape})"
    )
    return [at(pointer, message)]


def _find_input(inputs: Sequence[_InputInfo], name: str) -> _InputInfo | None:
    return next((info for info in inputs if name in info[0]), None)


def _no_such_input(where: str, name: str, inputs: Sequence[_InputInfo]) -> str:
    all_names = sorted(set().union(*(names for names, _ in inputs)))
    message = f"{where} has no input named '{name}' (its inputs: {_names(inputs)})"
    close = difflib.get_close_matches(name, all_names, n=1)
    return message + (f"; did you mean '{close[0]}'?" if close else "")


def _names(inputs: Sequence[_InputInfo]) -> str:
    """Each input by its names, e.g. ``data, mask|attention_mask``."""
    return ", ".join("|".join(sorted(names)) or "<unnamed>" for names, _ in inputs) or "none"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _openvino_message(exc: Exception) -> str:
    """OpenVINO's error text without its ``Exception from src/...cpp:84:`` lines, on one line."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("Exception from ")]
    text = " ".join(kept) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
