"""Composition root: build the manager and the gRPC server, start serving, react to signals, drain and stop.

Signal handlers do nothing but wake the main loop (through ``signal.set_wakeup_fd``); the main loop acts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from ovmsd.config.loader import ConfigError, load_config, single_model_config
from ovmsd.config.models import ServerConfig
from ovmsd.grpc.server import BindError, build_server
from ovmsd.logs import configure
from ovmsd.serving.instance import ServingOptions, instance_loader
from ovmsd.serving.manager import ModelManager, ModelOutcome
from ovmsd.settings import Settings, parse
from ovmsd.signals import SignalInbox

log = logging.getLogger("ovmsd")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        options = ServingOptions(
            shape_cache_size=settings.shape_cache_size,
            reshape_timeout_s=settings.reshape_timeout_s,
            cache_dir=settings.cache_dir,
        )
        self.manager = ModelManager(instance_loader(options), drain_timeout_s=settings.drain_timeout_s)
        self._reload_lock = threading.Lock()
        self.config_generation = 0

    def read_config(self) -> ServerConfig:
        s = self.settings
        if s.config_path is not None:
            return load_config(s.config_path)
        return single_model_config(**s.single_model)

    def reload(self) -> tuple[bool, str]:
        """Read the config again and apply it; a bad config changes nothing."""
        with self._reload_lock:
            try:
                config = self.read_config()
            except (ConfigError, OSError) as exc:
                log.error("config reload rejected, keeps serving the previous config: %s", exc)
                return False, f"config rejected: {exc}"
            outcomes = self.apply(config)
            return all(not o.errors for o in outcomes), summarize(outcomes)

    def apply(self, config: ServerConfig) -> list[ModelOutcome]:
        for warning in config.warnings:
            log.warning("%s", warning)
        outcomes = self.manager.apply(config)
        self.config_generation += 1
        log.info("config generation %d applied: %s", self.config_generation, summarize(outcomes))
        return outcomes

    def run(self) -> int:
        s = self.settings
        try:
            config = self.read_config()
        except (ConfigError, OSError) as exc:
            log.error("invalid configuration: %s", exc)
            return 1
        try:
            server, port = build_server(
                self.manager,
                self.reload,
                bind_address=s.bind_address,
                port=s.port,
                workers=s.grpc_workers,
                max_message_bytes=s.max_message_bytes,
            )
        except BindError as exc:
            log.error("%s", exc)
            return 1
        inbox = SignalInbox((*STOP_SIGNALS, signal.SIGHUP))
        server.start()
        log.info("gRPC server listening on %s:%d", s.bind_address, port)
        self.apply(config)
        log.info("ready: serving %d models", len(config.models))
        self._main_loop(inbox)
        log.info("stopping: refusing new requests, draining those in flight (up to %.0f s)", s.drain_timeout_s)
        server.stop(grace=s.drain_timeout_s).wait()
        self.manager.shutdown()
        log.info("stopped")
        return 0

    def _main_loop(self, inbox: SignalInbox) -> None:
        while True:
            for signum in inbox.wait():
                if signum in STOP_SIGNALS:
                    log.info("received %s", signum.name)
                    return
                if signum == signal.SIGHUP:
                    log.info("received SIGHUP: reloading the config")
                    self.reload()


def summarize(outcomes: list[ModelOutcome]) -> str:
    parts = []
    for o in outcomes:
        versions = ",".join(str(v) for v in o.available) or "none"
        text = f"{o.model} {o.action} (available: {versions})"
        if o.errors:
            text += " errors: " + "; ".join(o.errors)
        parts.append(text)
    return "; ".join(parts) or "no models"


def main(argv: list[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    configure(settings.log_level, settings.log_file)
    log.info("ovmsd starting (pid %d)", os.getpid())
    return Daemon(settings).run()
