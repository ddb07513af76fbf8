"""The ``ovmsctl`` command line: one root group; each command group lives in its own module under commands/."""

from __future__ import annotations

import click

from ovmsctl import __version__
from ovmsctl.commands.config import validate
from ovmsctl.commands.daemon import reload, start, stop
from ovmsctl.commands.service import service
from ovmsctl.commands.status import status


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="ovmsctl")
def cli() -> None:
    """Serve OpenVINO models over the TensorFlow Serving gRPC API."""


for command in (validate, start, stop, status, reload, service):
    cli.add_command(command)


def main() -> None:
    cli()
