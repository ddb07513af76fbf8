"""``ovmsctl validate``: check a config file without starting a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ovmsd.options import default_of

if TYPE_CHECKING:
    from ovmsd.config.loader import CheckResult, ConfigIssue

STDIN_NAME = "<stdin>"


@click.command("validate")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=str))
@click.option(
    "--check-models",
    is_flag=True,
    help="Also check the disk: version directories, one model file per served version, and that OpenVINO reads it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--max-config-bytes",
    "--max_config_bytes",
    "max_bytes",
    type=click.IntRange(1),
    default=default_of("max_config_bytes"),
    show_default=True,
    help="Largest config accepted, in bytes: give the daemon's --max-config-bytes to check what it would accept.",
)
def validate(config: str, check_models: bool, as_json: bool, max_bytes: int) -> None:
    """Check the model server config CONFIG (JSON or YAML; - reads stdin) and report every problem at once.

    Exits 0 when the config is valid, 1 when it is not, 2 when CONFIG cannot be read.
    """
    result = _check(config, max_bytes)
    issues = list(result.issues)
    if check_models and result.config is not None:
        from ovmsd.source.model_check import check_models as check_on_disk  # imports OpenVINO: only when asked

        issues += check_on_disk(result.config, result.positions)
    if as_json:
        click.echo(json.dumps(_as_dict(config, result, issues), indent=2))
    else:
        _print_report(_display_name(config), result, issues, models_skipped=check_models and result.config is None)
    click.get_current_context().exit(1 if issues else 0)


def _check(config: str, max_bytes: int) -> CheckResult:
    from ovmsd.config.loader import check_config, check_config_bytes

    if config == "-":
        with click.open_file("-", "rb") as stdin:
            return check_config_bytes(stdin.read(max_bytes + 1), base_dir=Path.cwd(), max_bytes=max_bytes)
    try:
        return check_config(Path(config), max_bytes=max_bytes)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {config}: {exc.strerror or exc}", param_hint="'CONFIG'") from exc


def _display_name(config: str) -> str:
    return STDIN_NAME if config == "-" else config


def _print_report(name: str, result: CheckResult, issues: list[ConfigIssue], *, models_skipped: bool) -> None:
    for issue in issues:
        click.echo(issue.format(name))
    for warning in result.warnings:
        click.echo(f"warning: {warning}")
    if issues:
        summary = f"{name}: {_plural(len(issues), 'error')}"
        click.echo(summary + (" (models not checked)" if models_skipped else ""))
    else:
        click.echo(f"{name}: valid, {_plural(len(result.model_names), 'model')}")


def _as_dict(config: str, result: CheckResult, issues: list[ConfigIssue]) -> dict[str, object]:
    return {
        "valid": not issues,
        "path": config,
        "models": list(result.model_names),
        "errors": [issue.to_dict() for issue in issues],
        "warnings": list(result.warnings),
    }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
