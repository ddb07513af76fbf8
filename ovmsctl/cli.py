"""The ``ovmsctl`` command line: one root group; each command group lives in its own module under commands/."""

from __future__ import annotations

import click

from ovmsctl import __version__
from ovmsctl.commands.config import validate
from ovmsctl.commands.daemon import start


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="ovmsctl")
def cli() -> None:
    """Serve OpenVINO models over the TensorFlow Serving gRPC API."""


cli.add_command(validate)
cli.add_command(start)


def main() -> None:
    cli()
