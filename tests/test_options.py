"""The option table (``ovmsd.options``) is the only definition: click, argparse and Settings all agree with it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from ovmsctl.cli import cli
from ovmsctl.options import CLI_OPTIONS, daemon_argv, daemon_options
from ovmsd import options as table
from ovmsd.options import OPTIONS, Option
from ovmsd.settings import Settings, parse, parser
from tests.support.daemon import REPO

SINGLE = ["--model-name", "m", "--model-path", "/models/m"]
BOUNDED = [o for o in OPTIONS if o.range_text() is not None and not o.hidden]


@click.command()
@daemon_options
def echo_argv(config: Path | None, **options: Any) -> None:
    """What ``ovmsctl start`` would run: the daemon's command line for these options."""
    click.echo(json.dumps(daemon_argv(config, options)))


def sample(option: Option, tmp_path: Path) -> tuple[list[str], Any]:
    """A valid value for ``option``: the command-line words and the value Settings should hold."""
    if option.kind == "flag":
        return [], True
    if option.kind == "int":
        value = int(option.minimum or 0) + 1
        return [str(value)], value
    if option.kind == "float":
        return ["2.5"], 2.5
    if option.kind == "choice":
        return [option.choices[1].lower()], option.choices[1]
    if option.kind == "path" and option.path == "dir":
        return [str(tmp_path)], tmp_path.resolve()
    if option.kind == "path":
        path = tmp_path / "config.json"
        path.write_text("{}")
        return [str(path)], path.resolve()
    return ["x"], "x"


def settings_value(settings: Settings, option: Option) -> Any:
    if option.group == "model":
        return settings.single_model[option.dest]
    return getattr(settings, option.dest)


def base_args(option: Option) -> list[str]:
    return [] if option.group == "source" else SINGLE


@pytest.mark.parametrize("option", CLI_OPTIONS, ids=lambda o: o.name)
def test_every_spelling_goes_through_ovmsctl_to_the_daemon(option: Option, tmp_path: Path) -> None:
    words, expected = sample(option, tmp_path)
    for spelling in option.spellings:
        done = CliRunner().invoke(echo_argv, [*base_args(option), spelling, *words])
        assert done.exit_code == 0, done.output
        argv = json.loads(done.output)
        settings = parse(argv)
        if option.absolute and option.group != "source":  # made absolute for a daemon that runs from /
            expected = str(Path(words[0]).absolute()) if option.kind == "str" else Path(words[0]).absolute()
        assert settings_value(settings, option) == expected, (spelling, argv)
        assert option.name in argv, "ovmsctl passes the canonical spelling"


@pytest.mark.parametrize("option", [o for o in OPTIONS if not o.hidden], ids=lambda o: o.name)
def test_the_daemon_takes_every_spelling_itself(option: Option, tmp_path: Path) -> None:
    words, expected = sample(option, tmp_path)
    if option.kind == "path":
        expected = Path(words[0])
    for spelling in option.spellings:
        assert settings_value(parse([*base_args(option), spelling, *words]), option) == expected


def test_settings_defaults_are_the_tables() -> None:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    parsed = parse(SINGLE)
    for option in OPTIONS:
        if option.group in ("source", "model"):
            continue
        field = fields[option.dest]
        declared = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        assert declared == option.default_value(), option.name
        assert getattr(parsed, option.dest) == option.default_value(), option.name
    options_fields = {o.dest for o in OPTIONS if o.group not in ("model",)}
    assert set(fields) - {"single_model"} == options_fields, "every Settings field is an option of the table"


def normalized(text: str) -> str:
    return " ".join(text.split())


def test_both_helps_show_every_option_with_the_tables_default() -> None:
    start_help = normalized(CliRunner().invoke(cli, ["start", "--help"]).output)
    daemon_help = normalized(parser().format_help())
    for option in CLI_OPTIONS:
        assert ", ".join(option.spellings) in start_help, option.name
        assert normalized(option.help_text()) in start_help, option.name
    for option in OPTIONS:
        if option.hidden:
            continue
        assert option.name in daemon_help and all(s in daemon_help for s in option.aliases), option.name
        assert normalized(option.help_text()) in daemon_help, option.name
        if option.range_text():
            assert f"[{option.range_text()}]" in daemon_help, option.name
            assert option.group == "daemon" or f"[{option.range_text()}]" in start_help, option.name
    assert "[default: 9000]" in start_help and "[default: 9000]" in daemon_help


def out_of_range(option: Option) -> list[str]:
    values = []
    if option.minimum is not None:
        values.append(option.minimum if option.above else option.minimum - 1)
    if option.maximum is not None:
        values.append(option.maximum + 1)
    return [str(int(v)) if option.kind == "int" else str(v) for v in values]


@pytest.mark.parametrize("option", BOUNDED, ids=lambda o: o.name)
def test_out_of_range_values_are_refused_by_both_with_the_range(
    option: Option, capsys: pytest.CaptureFixture[str]
) -> None:
    for value in out_of_range(option):
        expected = f"is not in the range {option.range_text()}"
        if option.group != "daemon":
            done = CliRunner().invoke(cli, ["start", *SINGLE, option.name, value])
            assert done.exit_code == 2 and expected in done.output and option.name in done.output, done.output
        with pytest.raises(SystemExit) as refused:
            parse([*SINGLE, option.name, value])
        assert refused.value.code == 2
        message = capsys.readouterr().err
        assert expected in message and f"argument {option.name}" in message, message


def test_python_m_ovmsd_refuses_port_70000_as_ovmsctl_start_does() -> None:
    daemon = subprocess.run(
        [sys.executable, "-m", "ovmsd", *SINGLE, "--port", "70000"], capture_output=True, text=True, cwd=REPO
    )
    assert daemon.returncode == 2
    assert "argument --port/--grpc-port/--grpc_port: 70000 is not in the range 0<=x<=65535" in daemon.stderr
    ctl = subprocess.run(
        [sys.executable, "-m", "ovmsctl", "start", *SINGLE, "--grpc_port", "70000"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert ctl.returncode == 2 and "70000 is not in the range 0<=x<=65535" in ctl.stderr


@pytest.mark.parametrize(("cores", "workers"), [(1, 2), (2, 2), (4, 4), (8, 8), (64, 8)])
def test_load_workers_default_is_the_usable_cores_from_2_to_8(
    cores: int, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "usable_cores", lambda: cores)
    assert table.option("load_workers").default_value() == workers
    assert Settings(config_path=None, single_model={}).load_workers == workers


def test_load_workers_is_an_option_of_both() -> None:
    assert parse([*SINGLE, "--load_workers", "3"]).load_workers == 3
    done = CliRunner().invoke(echo_argv, [*SINGLE, "--load-workers", "0"])
    assert done.exit_code == 2 and "0 is not in the range x>=1" in done.output
