"""``ovmsctl start``, ``stop`` and ``reload``: the daemon's lifecycle. Accepts OVMS's option spellings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ovmsctl import output
from ovmsctl.control import EXIT_APPLIED_WITH_ERRORS, EXIT_FAILED, ControlError, NotRunning, call, remove_stale_files
from ovmsctl.launch import launch
from ovmsctl.options import check_model_source, daemon_argv, daemon_options, resolve_state_dir, state_dir_option
from ovmsctl.processes import terminate
from ovmsd.runtime.statedir import StateDir, is_daemon_process, read_pid


@click.command()
@daemon_options
@state_dir_option
@click.option("--foreground", is_flag=True, help="Run in the foreground (for systemd and containers).")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds to wait for the daemon to be ready (in the background).",
)
def start(config: Path | None, state_dir: Path | None, foreground: bool, timeout: float, **options: Any) -> None:
    """Start the model server daemon: in the background (the default), or in the foreground.

    In the background, waits until gRPC listens and every model's first load is done (successfully or not), then
    prints the pid, the address and one line per model.

    Exits 0 when the daemon is ready, 1 when it did not start (the reason is printed; a model that fails to load
    is no start failure), 2 on bad options, 4 when a daemon already runs for the state dir but does not answer.
    With --foreground the daemon replaces ovmsctl and exits 0 after a graceful stop, 1 when start-up fails.
    """
    check_model_source(config, options)
    directory = StateDir(resolve_state_dir(state_dir))
    argv = daemon_argv(config, options)
    if foreground:
        os.execv(sys.executable, [sys.executable, "-m", "ovmsd", *argv, "--state-dir", str(directory.path)])
    _refuse_if_running(directory)
    try:
        directory.create()
    except OSError as exc:
        raise ControlError(f"cannot use state dir {directory.path}: {exc.strerror or exc}") from exc
    stale = remove_stale_files(directory)
    if stale is not None:
        click.echo(f"removed stale pidfile of pid {stale} (not running)")
    result = launch(argv, directory, timeout)
    if result.outcome == "ready":
        report = call(directory, "status")
        click.echo("\n".join(output.started(report, str(options.get("log_file") or directory.logfile))))
        return
    if result.outcome == "timeout":
        raise ControlError(
            f"ovmsd (pid {result.pid}) is not ready after {timeout:g} s; it goes on starting in the background: "
            f"`ovmsctl status` shows its progress, `ovmsctl stop` stops it"
        )
    status = f" (exit status {result.exit_code})" if result.exit_code is not None else ""
    if result.outcome == "failed":
        raise ControlError(f"ovmsd did not start{status}: {result.reason}")
    raise ControlError(f"ovmsd exited during start-up{status}; last lines of {directory.logfile}:\n{result.reason}")


def _refuse_if_running(directory: StateDir) -> None:
    try:
        report = call(directory, "status")
    except NotRunning:
        return
    raise ControlError(
        f"ovmsd is already running for state dir {directory.path} (pid {report['pid']}, gRPC on {report['address']})"
    )


@click.command()
@state_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for a graceful stop before SIGKILL.",
)
def stop(state_dir: Path | None, timeout: float) -> None:
    """Stop the daemon: SIGTERM (refuse new requests, finish those in flight, exit), SIGKILL after --timeout.

    Exits 0 when it stopped (or was killed after --timeout) or was not running, 1 when it is still there after
    SIGKILL.
    """
    directory = StateDir(resolve_state_dir(state_dir))
    pid = _running_pid(directory)
    if pid is None:
        stale = remove_stale_files(directory)
        note = f"; removed the stale pidfile of pid {stale}" if stale is not None else ""
        click.echo(f"ovmsd is not running (state dir {directory.path}){note}")
        return
    click.echo(f"stopping ovmsd (pid {pid})...")
    result = terminate(pid, timeout)
    if not result.exited:
        raise ControlError(f"ovmsd (pid {pid}) is still there after SIGKILL")
    remove_stale_files(directory)
    if result.killed:
        click.echo(f"ovmsd (pid {pid}) did not stop within {timeout:g} s: killed it (SIGKILL)")
    else:
        click.echo(f"ovmsd (pid {pid}) stopped in {result.seconds:.1f} s")


def _running_pid(directory: StateDir) -> int | None:
    """The daemon's pid: from its own answer, else from the pidfile when that process still runs ovmsd."""
    try:
        return int(call(directory, "status")["pid"])
    except NotRunning:
        return None
    except ControlError:
        pid = read_pid(directory.pidfile)
        return pid if pid is not None and is_daemon_process(pid) else None


@click.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")
def reload(state_dir: Path | None, as_json: bool) -> None:
    """Re-read the config file now and apply it; print what happened to each model.

    Exits 0 when applied, 1 when the config was rejected (nothing changed), 3 when the daemon is not running,
    4 when it runs but does not answer, 5 when the config was applied but some model versions failed to load.
    """
    directory = StateDir(resolve_state_dir(state_dir))
    answer = call(directory, "reload", timeout=None)
    result = answer["reload"]
    if as_json:
        click.echo(output.to_json(result))
    else:
        click.echo("\n".join(output.reloaded(result)))
    if result["outcome"] == "rejected":
        click.get_current_context().exit(EXIT_FAILED)
    if result["outcome"] == "applied_with_errors":
        click.get_current_context().exit(EXIT_APPLIED_WITH_ERRORS)
