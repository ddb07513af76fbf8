"""Rendering only: status tables, start summaries, reload reports. Input is the daemon's JSON (ovmsd.observe.report)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

Report = dict[str, Any]


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def clock(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def shapes_text(compiled_shapes: Sequence[dict[str, str]]) -> str:
    """``[{"x": "(1,4)"}, {"x": "(8,4)"}]`` -> ``x(1,4), x(8,4)``."""
    variants = [" ".join(f"{name}{shape}" for name, shape in variant.items()) for variant in compiled_shapes]
    return ", ".join(variants) or "-"


def model_line(model: Report) -> str:
    """One line per model: what serves, or why nothing does."""
    versions = model["versions"]
    available = [str(v["version"]) for v in versions if v["state"] == "AVAILABLE"]
    errors = [f"version {v['version']}: {v['error']}" for v in versions if v["error"] and v["state"] != "END"]
    if available:
        text = f"AVAILABLE (version{'s' if len(available) > 1 else ''} {', '.join(available)})"
    elif any(v["state"] in ("START", "LOADING") and not v["error"] for v in versions):
        text = "LOADING"
    else:
        text = "NOT AVAILABLE"
    problems = ([model["problem"]] if model["problem"] else []) + errors
    if problems:
        text += ": " + "; ".join(problems)
    return f"{model['name']}: {text}"


def started(report: Report, log_file: str) -> list[str]:
    lines = [
        f"ovmsd started: pid {report['pid']}, gRPC on {report['address']}",
        f"  state dir: {report['state_dir']}",
        f"  log:       {log_file}",
    ]
    if report.get("rest_address"):
        lines.append(f"  REST:      http://{report['rest_address']}")
    if report["metrics_address"]:
        lines.append(f"  metrics:   http://{report['metrics_address']}/metrics")
    lines += ["  " + model_line(m) for m in report["models"] if m["configured"]]
    return lines


def status(report: Report) -> list[str]:
    config = report["config_path"] or "single model from the command line"
    metrics = f"http://{report['metrics_address']}/metrics" if report["metrics_address"] else "off"
    lines = [
        f"ovmsd is running: pid {report['pid']}, up {duration(report['uptime_s'])}, {report['state']}",
        f"  state dir:   {report['state_dir']}",
        f"  gRPC:        {report['address']}",
        f"  metrics:     {metrics}",
        f"  config:      {config} (generation {report['config_generation']})",
    ]
    last = report["last_reload"]
    if last is not None:
        lines.append(f"  last reload: {last['trigger']} at {clock(last['at'])}: {reload_headline(last)}")
    lines.append("")
    lines += table(
        ["MODEL", "VERSION", "STATE", "IN-FLIGHT", "LOAD TIME", "COMPILED SHAPES", "ERROR"],
        [row for model in report["models"] for row in _model_rows(model)],
    )
    return lines


def _model_rows(model: Report) -> list[list[str]]:
    name = model["name"] + ("" if model["configured"] else " (removed)")
    rows = []
    for v in model["versions"]:
        load = f"{v['load_seconds']:.2f} s" if v["load_seconds"] is not None else "-"
        in_flight = str(v["in_flight"]) if v["state"] in ("AVAILABLE", "UNLOADING") else "-"
        rows.append(
            [name, str(v["version"]), v["state"], in_flight, load, shapes_text(v["compiled_shapes"]), v["error"]]
        )
    if model["problem"] or not rows:
        rows.append([name, "-", "-", "-", "-", "-", model["problem"] or "no version loaded yet"])
    return rows


def _numbers(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["(no models)"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]


def reload_headline(result: Report) -> str:
    if result["outcome"] == "rejected":
        return f"{result['message']} (still serving generation {result['generation']})"
    if result["outcome"] == "applied_with_errors":
        return f"config generation {result['generation']} applied, with errors"
    return f"config generation {result['generation']} applied"


def reloaded(result: Report) -> list[str]:
    lines = [reload_headline(result)]
    for model in result["models"]:
        text = f"  {model['name']}: {model['action']}"
        if model["action"] != "removed":
            text += f" (available: {_numbers(model['available'])}"
            text += f"; settling: {_numbers(model['settling'])})" if model["settling"] else ")"
        lines.append(text)
        lines += [f"    error: {error}" for error in model["errors"]]
    return lines
