"""``ovmsctl service print`` / ``install``: a systemd unit running ``ovmsctl start --foreground`` with these options."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

import ovmsctl
from ovmsctl.options import check_model_source, daemon_argv, daemon_options, given_model_options
from ovmsctl.unit import UnitSpec, render, uses_tmp
from ovmsd.options import default_of

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NAME = "ovmsctl"  # RuntimeDirectory=ovmsctl is the default state dir of `ovmsctl status`


@click.group()
def service() -> None:
    """Run the daemon as a systemd service (Type=notify, reload on SIGHUP, sandboxed)."""


def _unit_options(func: F) -> F:
    func = daemon_options(func)
    for decorator in reversed(
        [
            click.option("--user", "user_unit", is_flag=True, help="A unit for the user's service manager."),
            click.option(
                "--name",
                default=DEFAULT_NAME,
                show_default=True,
                help="Unit name; the state dir is /run/NAME (or $XDG_RUNTIME_DIR/NAME with --user).",
            ),
            click.option("--run-as", metavar="USER", help="Run the daemon as this user (User=; system units)."),
            click.option(
                "--watchdog-sec",
                type=click.FloatRange(0),
                help="Restart the daemon when it stops pinging systemd for this long (WatchdogSec=) [default: off].",
            ),
        ]
    ):
        func = decorator(func)
    return func


@service.command("print")
@_unit_options
def print_unit(**options: Any) -> None:
    """Print the unit these options give.

    Exits 0 when printed, 1 when the config or the single-model options are invalid, 2 on bad options.
    """
    spec = unit_spec(**options)
    _warn(spec)
    click.echo(render(spec), nl=False)


@service.command()
@_unit_options
@click.option("--force", is_flag=True, help="Replace an existing unit file.")
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the unit here [default: /etc/systemd/system, or ~/.config/systemd/user with --user].",
)
def install(force: bool, unit_dir: Path | None, **options: Any) -> None:
    """Write the unit file, then tell how to enable it.

    Exits 0 when written, 1 when the config is invalid, the unit exists (without --force) or cannot be written,
    2 on bad options.
    """
    spec = unit_spec(**options)
    _warn(spec)
    directory = unit_dir or _default_unit_dir(spec.user_unit)
    path = directory / f"{spec.name}.service"
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; --force replaces it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(render(spec))
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
    systemctl = "systemctl --user" if spec.user_unit else "systemctl"
    state_dir = f"$XDG_RUNTIME_DIR/{spec.name}" if spec.user_unit else f"/run/{spec.name}"
    status = "ovmsctl status" + ("" if spec.name == DEFAULT_NAME else f" --state-dir {state_dir}")
    click.echo(f"wrote {path}")
    click.echo(f"enable and start it: {systemctl} daemon-reload && {systemctl} enable --now {spec.name}")
    click.echo(f"then: {status}; reload: {systemctl} reload {spec.name}; logs: journalctl -u {spec.name}")


def _warn(spec: UnitSpec) -> None:
    if uses_tmp(spec):
        click.echo("warning: models or logs live under /tmp: the unit cannot use PrivateTmp=yes", err=True)


def _default_unit_dir(user_unit: bool) -> Path:
    if not user_unit:
        return Path("/etc/systemd/system")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user"


def unit_spec(
    config: Path | None,
    name: str,
    user_unit: bool,
    run_as: str | None,
    watchdog_sec: float | None,
    **options: Any,
) -> UnitSpec:
    check_model_source(config, options)
    models = _read_models(config, options)
    write_paths = []
    if options.get("log_file") is not None:
        write_paths.append(Path(options["log_file"]).absolute().parent)
    if options.get("cache_dir") is not None:
        write_paths.append(Path(options["cache_dir"]).absolute())
    ports = [_given_or_default(options, "port"), options.get("metrics_port") or 0]
    drain = _given_or_default(options, "drain_timeout_s", "drain_timeout")
    return UnitSpec(
        name=name,
        command=[sys.executable, "-m", "ovmsctl", "start", "--foreground", *daemon_argv(config, options)],
        user_unit=user_unit,
        run_as=run_as,
        read_paths=[*(base for base, _ in models), *([config.resolve()] if config else [])],
        write_paths=write_paths,
        code_paths=[Path(sys.prefix), Path(sys.base_prefix), Path(ovmsctl.__file__).resolve().parent],
        ports=ports,
        cpu_only=all(device.upper() == "CPU" for _, device in models),
        stop_timeout_s=drain + 30,
        watchdog_s=watchdog_sec or None,
    )


def _given_or_default(options: dict[str, Any], dest: str, key: str | None = None) -> Any:
    """The option's value, else the daemon's default from the option table (0 is a value, not "not given")."""
    value = options.get(key or dest)
    return default_of(dest) if value is None else value


def _read_models(config: Path | None, options: dict[str, Any]) -> list[tuple[Path, str]]:
    """(base path, target device) of every model, from the config file or the single-model options."""
    from ovmsd.config.loader import ConfigError, load_config, single_model_config

    try:
        if config is not None:
            server_config = load_config(config)
        else:
            server_config = single_model_config(**given_model_options(options))
    except (ConfigError, OSError, ValueError) as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc
    return [(Path(m.base_path).absolute(), m.target_device) for m in server_config.models]
