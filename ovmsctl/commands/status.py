"""``ovmsctl status``: whether the daemon runs, and every model version it knows."""

from __future__ import annotations

from pathlib import Path

import click

from ovmsctl import output
from ovmsctl.control import EXIT_NOT_RUNNING, NotRunning, call
from ovmsctl.options import resolve_state_dir, state_dir_option
from ovmsd.runtime.statedir import StateDir


@click.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (format in docs/operations.md).")
def status(state_dir: Path | None, as_json: bool) -> None:
    """Show whether the daemon runs (pid, uptime, address, config generation, last reload) and every model version
    (state, error, compiled shapes, requests in flight).

    Exits 0 when it runs, 3 when it does not, 4 when it cannot tell (the daemon does not answer).
    """
    directory = StateDir(resolve_state_dir(state_dir))
    try:
        report = call(directory, "status")
    except NotRunning as exc:
        if as_json:
            stopped = {"running": False, "state_dir": str(directory.path), "stale_pid": exc.stale_pid}
            click.echo(output.to_json(stopped))
        else:
            click.echo(exc.message)
        click.get_current_context().exit(EXIT_NOT_RUNNING)
    if as_json:
        click.echo(output.to_json({"running": True, **report}))
    else:
        click.echo("\n".join(output.status(report)))
