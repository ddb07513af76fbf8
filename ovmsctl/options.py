"""Options shared by commands: the daemon's options, derived from ``ovmsd.options.OPTIONS``, and ``--state-dir``.

``ovmsctl start`` and ``ovmsctl service`` take the daemon's options under every spelling the table lists (OVMS's
among them) and turn them into the canonical ``python -m ovmsd`` command line. Nothing here defines an option, a
default or a range: add options to the table, and they appear here and in the daemon alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ovmsd.options import Option, in_group
from ovmsd.runtime.statedir import default_state_dir

F = TypeVar("F", bound=Callable[..., Any])

SOURCE_OPTIONS = in_group("source")
MODEL_OPTIONS = in_group("model")
SERVER_OPTIONS = in_group("server")
CLI_OPTIONS = (*SOURCE_OPTIONS, *MODEL_OPTIONS, *SERVER_OPTIONS)  # --state-dir and --ready-fd are set by ovmsctl


def click_type(option: Option) -> click.ParamType:
    """The click type with the table's conversion and range (the daemon's argparse applies the same)."""
    if option.kind == "int":
        if option.minimum is None and option.maximum is None:
            return click.INT
        return click.IntRange(_int(option.minimum), _int(option.maximum), min_open=option.above)
    if option.kind == "float":
        if option.minimum is None and option.maximum is None:
            return click.FLOAT
        return click.FloatRange(option.minimum, option.maximum, min_open=option.above)
    if option.kind == "choice":
        return click.Choice(option.choices, case_sensitive=False)
    if option.kind == "path":
        return click.Path(
            exists=option.group == "source",  # the config file: refused at once when missing
            file_okay=option.path != "dir",
            dir_okay=option.path != "file",
            path_type=Path,
        )
    return click.STRING


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def click_option(option: Option) -> Callable[[F], F]:
    """``option`` as a click option; its default stays None (not given), so the daemon applies the table's."""
    if option.kind == "flag":
        return click.option(*option.spellings, option.key, is_flag=True, default=None, help=option.help_text())
    return click.option(*option.spellings, option.key, type=click_type(option), help=option.help_text())


def state_dir_option(func: F) -> F:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="OVMSCTL_STATE_DIR",
        show_envvar=True,
        help="The daemon's state dir (pidfile, control socket) [default: /run/ovmsctl for root, "
        "else $XDG_RUNTIME_DIR/ovmsctl].",
    )(func)


def resolve_state_dir(state_dir: Path | None) -> Path:
    return (state_dir or default_state_dir()).absolute()


def daemon_options(func: F) -> F:
    """Every option of the table that ``ovmsctl`` passes on: ``--config``, the single-model and server options."""
    for option in reversed(CLI_OPTIONS):
        func = click_option(option)(func)
    return func


def given_model_options(options: dict[str, Any]) -> dict[str, Any]:
    """The single-model options given, by their canonical names (``model_name``...)."""
    return {o.key: options[o.key] for o in MODEL_OPTIONS if options.get(o.key) is not None}


def check_model_source(config: Path | None, options: dict[str, Any]) -> None:
    """Exactly one of: --config, or --model-name with --model-path."""
    given = sorted(given_model_options(options))
    if config is not None and given:
        raise click.UsageError(f"--config cannot be combined with single-model options ({', '.join(given)})")
    if config is None and not {"model_name", "model_path"} <= set(given):
        raise click.UsageError("give --config PATH, or --model-name NAME with --model-path DIR")


def daemon_argv(config: Path | None, options: dict[str, Any]) -> list[str]:
    """The canonical ``python -m ovmsd`` command line for these options (paths made absolute)."""
    argv: list[str] = []
    if config is not None:
        argv += ["--config", str(config.resolve())]
    for option in (*MODEL_OPTIONS, *SERVER_OPTIONS):
        value = options.get(option.key)
        if value is None or value is False:
            continue
        if option.kind == "flag":
            argv.append(option.name)
            continue
        if option.absolute and "://" not in str(value):
            value = Path(value).expanduser().absolute()
        argv += [option.name, str(value)]
    return argv
