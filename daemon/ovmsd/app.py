"""Composition root: build the manager and the servers, start serving, react to signals, drain and stop.

Signal handlers do nothing but wake the main loop (through ``signal.set_wakeup_fd``); the main loop acts, and never
does anything slow itself: the first loads run on the manager's load workers (the port is open meanwhile, answering
"not loaded yet"), reloads run on the reloader's thread. So SIGTERM is answered at once whatever is loading or
reloading. Start-up either reaches "serving" (pidfile written, READY sent to systemd and to ``ovmsctl start``) or
fails with one plain sentence (exit status 1); every resource taken on the way is given back in reverse order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from ovmsd import stages
from ovmsd.api.auth import ApiKey, ApiKeyError, read_api_key
from ovmsd.api.gate import Gate
from ovmsd.api.grpc.health import Health
from ovmsd.api.grpc.server import BindError, build_server
from ovmsd.api.rest.server import RestServer, build_rest_server
from ovmsd.api.tls import Tls, TlsError, TlsFiles
from ovmsd.config.loader import ConfigError, load_config, single_model_config
from ovmsd.config.models import ServerConfig
from ovmsd.observe.logs import configure
from ovmsd.observe.metrics import Metrics, StageCollector
from ovmsd.observe.report import (
    APPLIED,
    APPLIED_WITH_ERRORS,
    REJECTED,
    DaemonState,
    ReloadResult,
    serving_summary,
    status_report,
    summarize,
)
from ovmsd.runtime.control import ControlServer
from ovmsd.runtime.limits import raise_open_files_limit
from ovmsd.runtime.pidfile import AlreadyRunning, PidFile, StateDirLock
from ovmsd.runtime.readyfd import ReadyPipe
from ovmsd.runtime.reloader import Reloader
from ovmsd.runtime.signals import WAKE, SignalInbox
from ovmsd.runtime.statedir import StateDir
from ovmsd.runtime.systemd import Notifier
from ovmsd.serving.dataplane import DataPlane, Reloaded
from ovmsd.serving.instance import ServingOptions, instance_loader
from ovmsd.serving.limits import LimitDefaults
from ovmsd.serving.loads import TimedLoader
from ovmsd.serving.manager import ModelManager
from ovmsd.settings import Settings, parse
from ovmsd.source.objectstore import MirrorSet
from ovmsd.source.updates import LiveUpdates, config_digest

log = logging.getLogger("ovmsd")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
QUIET_S = 0.2  # on stop: no new request for this long before the port closes (see ovmsd.api.gate)
TICK_S = 1.0  # how often the main loop refreshes health statuses when no signal comes
SETTLE_S = 1.0  # a new version directory loads once its files were quiet this long (or it was renamed into place)


def limit_defaults(settings: Settings) -> LimitDefaults:
    """The request limits of models whose config sets none (``--max-concurrent-requests``: half the gRPC workers)."""
    return LimitDefaults(
        max_input_bytes=settings.max_input_bytes,
        max_auto_batch=settings.max_auto_batch,
        max_auto_dim=settings.max_auto_dim,
        shape_cache_bytes=settings.shape_cache_bytes,
        max_concurrent_requests=settings.max_concurrent_requests or max(1, settings.grpc_workers // 2),
    )


class StartupError(Exception):
    """Start-up cannot go on; the message says why in one sentence."""


class Daemon:
    mirrors: MirrorSet | None = None  # local copies of the s3:// base paths; made by _start (see _open_mirrors)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        options = ServingOptions(
            shape_cache_size=settings.shape_cache_size,
            reshape_timeout_s=settings.reshape_timeout_s,
            cache_dir=settings.cache_dir,
            limits=limit_defaults(settings),
        )
        self.loader = TimedLoader(instance_loader(options))
        self.manager = ModelManager(
            self.loader,
            drain_timeout_s=settings.drain_timeout_s,
            settle_s=SETTLE_S,
            load_workers=settings.load_workers,
        )
        self.updates: LiveUpdates | None = None
        self._config_digest: str | None = None  # of the config file last read
        self.state = DaemonState(
            pid=os.getpid(),
            config_path=str(settings.config_path.resolve()) if settings.config_path else None,
            state_dir=str(settings.state_dir.resolve()) if settings.state_dir else None,
        )
        self.health = Health(self.manager.snapshot)
        self.gate = Gate()
        self.metrics: Metrics | None = None
        self.rest: RestServer | None = None
        self.tls: Tls | None = None  # every port's certificates, when TLS is on (made by _secure)
        self.api_key: ApiKey | None = None
        if settings.metrics_port is not None or settings.metrics_enable:
            self.metrics = Metrics(self.manager.snapshot, lambda: self.state.generation)
            self.loader.observers.append(self.metrics.version_loaded)
            self.manager.lifecycle.ended.append(self.metrics.requests.forget_version)
            self.metrics.requests.known_model = self.manager.has_model
        if settings.stage_timers:
            if self.metrics is None:
                log.warning("--stage-timers: the stage times are exported with the metrics; give --metrics-port "
                            "or --metrics-enable")  # fmt: skip
            else:
                stages.enable()
                self.metrics.registry.register(StageCollector())
        self.data_plane = DataPlane(
            self.manager,
            phase=lambda: self.state.phase,
            reload=self._reload_for_api if settings.config_path is not None else None,
            observer=self.metrics.requests if self.metrics else None,
            max_image_pixels=settings.max_image_pixels,
        )
        self.notifier = Notifier()
        self.ready_pipe = ReadyPipe(settings.ready_fd)
        self._reload_lock = threading.Lock()  # two reloads never interleave
        self.reloader: Reloader[ReloadResult] = Reloader(self.reload, self._not_reloaded)

    # -- configuration ---------------------------------------------------------------------------------------------

    def read_config(self) -> ServerConfig:
        s = self.settings
        if s.config_path is not None:
            self._config_digest = config_digest(s.config_path, s.max_config_bytes)
            config = load_config(s.config_path, max_bytes=s.max_config_bytes)
        else:
            config = single_model_config(**s.single_model)
        return self.mirrors.localize(config) if self.mirrors is not None else config

    def reload_if_changed(self) -> None:
        """The config file watcher's callback: ask for a reload when the content differs from what was last read."""
        path = self.settings.config_path
        if path is not None and config_digest(path, self.settings.max_config_bytes) != self._config_digest:
            log.info("config file %s changed: reloading", path)
            self.reloader.request("config file change")

    def reload(self, trigger: str) -> ReloadResult:
        """Read the config again and apply it; a config that cannot be read changes nothing. TLS certificates are
        read again too (rotation without a restart; open connections are kept)."""
        if self.tls is not None:
            self.tls.reload()
        with self._reload_lock:
            if self.state.phase == "stopping":
                return ReloadResult(trigger, False, REJECTED, self.state.generation, "the daemon is stopping")
            serving = self.state.phase == "serving"
            if serving:
                self.state.phase = "reloading"
                self.notifier.reloading()
            try:
                result = self._reload_locked(trigger)
            finally:
                if serving and self.state.phase == "reloading":  # a stop that began meanwhile keeps "stopping"
                    self.state.phase = "serving"
                    self.notifier.ready(self.summary())
                self.health.refresh()
            if self.metrics is not None:
                self.metrics.reloaded(result.outcome)
            return result

    def _reload_locked(self, trigger: str) -> ReloadResult:
        try:
            config = self.read_config()
        except (ConfigError, OSError) as exc:
            generation = self.state.generation
            log.error("config reload (%s) rejected, keeps serving generation %d: %s", trigger, generation, exc)
            result = ReloadResult(trigger, False, REJECTED, generation, f"config rejected: {exc}")
        except Exception as exc:  # no config, however broken, stops the daemon: a rejected reload like the others
            generation = self.state.generation
            reason = f"{type(exc).__name__}: {exc}"
            log.error("config reload (%s) rejected, keeps serving generation %d: %s", trigger, generation, reason)
            log.debug("config reload (%s): the config could not be read", trigger, exc_info=True)
            result = ReloadResult(trigger, False, REJECTED, generation, f"config rejected: {reason}")
        else:
            result = self.apply(config, trigger)
        self.state.last_reload = result
        return result

    def apply(self, config: ServerConfig, trigger: str) -> ReloadResult:
        for warning in config.warnings:
            log.warning("%s", warning)
        # New version directories wait until they are quiet only where the watcher comes back for them later;
        # at start-up, and without live updates, they load as they are.
        settle = trigger != "startup" and self.updates is not None
        unused_mirrors = self.mirrors.configure(config) if self.mirrors is not None else []  # first syncs done
        outcomes = tuple(self.manager.apply(config, settle=settle))
        if self.mirrors is not None:
            self.mirrors.discard(unused_mirrors)  # their models are retired: drop their caches
        if self.updates is not None:
            self.updates.config_applied(config)
        self.state.generation += 1
        message = summarize(outcomes)
        log.info("config generation %d applied (%s): %s", self.state.generation, trigger, message)
        ok = all(not o.errors for o in outcomes)
        outcome = APPLIED if ok else APPLIED_WITH_ERRORS
        return ReloadResult(trigger, ok, outcome, self.state.generation, message, outcomes)

    def _not_reloaded(self, trigger: str, reason: str) -> ReloadResult:
        """The outcome of a reload that failed or never ran (the reloader's; a stop began, say)."""
        return ReloadResult(trigger, False, REJECTED, self.state.generation, reason)

    def _reload_for_api(self) -> Reloaded:
        """A reload asked for through a front end (HandleReloadConfigRequest, REST ``/v1/config/reload``)."""
        result = self.reloader.reload("API reload")
        changed = any(o.action != "unchanged" for o in result.outcomes)
        return Reloaded(result.ok, changed, result.message, result.outcomes, rejected=result.outcome == REJECTED)

    # -- reports ---------------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        stores = self.mirrors.status_by_model() if self.mirrors is not None else None
        return status_report(self.state, self.manager.snapshot(), self.loader.last_seconds, stores)

    def summary(self) -> str:
        """A short line for systemd's STATUS=."""
        return serving_summary(self.state, self.manager.snapshot())

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def run(self) -> int:
        inbox = SignalInbox((*STOP_SIGNALS, signal.SIGHUP))
        with contextlib.ExitStack() as resources:
            resources.callback(self.reloader.close)
            try:
                server, config, state_dir = self._start(resources)
            except StartupError as exc:
                log.error("%s", exc)
                self.ready_pipe.failed(str(exc))
                return 1
            startup = threading.Thread(target=self._first_loads, args=(config, inbox), name="startup", daemon=True)
            startup.start()
            self._main_loop(inbox, lambda: self._serve(config, state_dir, resources))
            self._stop(server)
        log.info("stopped")
        return 0

    def _start(self, resources: contextlib.ExitStack) -> tuple[grpc.Server, ServerConfig, StateDir | None]:
        """Everything up to an open port; the first loads come after, off the main loop."""
        s = self.settings
        self.notifier.start_watchdog()
        resources.callback(self.notifier.close)
        state_dir = StateDir(s.state_dir) if s.state_dir is not None else None
        if state_dir is not None:
            self._claim(state_dir, resources)
        self._open_mirrors(resources)
        try:
            config = self.read_config()
        except (ConfigError, OSError) as exc:
            raise StartupError(f"invalid configuration: {exc}") from exc
        self._secure(resources)
        server = self._listen(resources)
        self._serve_metrics(config, resources)
        self._listen_rest(config, resources)
        if state_dir is not None:
            self._open_control(state_dir, resources)
        server.start()
        log.info("gRPC server listening on %s", self.state.address)
        self.notifier.status(f"loading {len(config.models)} models")
        return server, config, state_dir

    def _first_loads(self, config: ServerConfig, inbox: SignalInbox) -> None:
        """Start-up's loads (every model at once, on the load workers); wakes the main loop when done."""
        try:
            with self._reload_lock:
                self.state.last_reload = self.apply(config, "startup")
        except Exception:  # never leave the main loop waiting for a start-up that died
            log.exception("start-up loads failed")
        inbox.wake()

    def _serve(self, config: ServerConfig, state_dir: StateDir | None, resources: contextlib.ExitStack) -> None:
        """The first loads are done: watch for changes, write the pidfile, say READY."""
        if self.state.phase == "stopping":
            return
        self._watch(config, resources)
        if state_dir is not None:
            try:
                self._write_pidfile(state_dir, resources)
            except StartupError as exc:
                log.error("%s; serving without a pidfile", exc)
        self.state.phase = "serving"
        self.health.serving()
        summary = self.summary()
        self.notifier.ready(summary)
        self.ready_pipe.ready()
        log.info("ready: %s", summary)

    def _claim(self, state_dir: StateDir, resources: contextlib.ExitStack) -> None:
        try:
            state_dir.create()
            lock = StateDirLock(state_dir.path)
            lock.acquire(state_dir.pidfile)
        except AlreadyRunning as exc:
            raise StartupError(str(exc)) from exc
        except OSError as exc:
            raise StartupError(f"cannot use state dir {state_dir.path}: {exc.strerror or exc}") from exc
        resources.callback(lock.release)

    def _open_control(self, state_dir: StateDir, resources: contextlib.ExitStack) -> None:
        try:
            control = ControlServer(state_dir.socket, self._commands())
        except OSError as exc:  # e.g. a path longer than a Unix socket name may be (107 bytes)
            raise StartupError(f"cannot create the control socket {state_dir.socket}: {exc.strerror or exc}") from exc
        control.start()
        resources.callback(control.close)

    def _write_pidfile(self, state_dir: StateDir, resources: contextlib.ExitStack) -> None:
        pidfile = PidFile(state_dir.pidfile)
        try:
            pidfile.write()
        except OSError as exc:
            raise StartupError(f"cannot write the pidfile {state_dir.pidfile}: {exc.strerror or exc}") from exc
        resources.callback(pidfile.remove)

    def _secure(self, resources: contextlib.ExitStack) -> None:
        """TLS material for every port (--ssl-config-file or --tls-cert/--tls-key[/--tls-client-ca]) and the API key
        (--api-key-file or OVMSCTL_API_KEY); either one that cannot be read stops the start-up."""
        s = self.settings
        files = TlsFiles(s.ssl_config_file, s.tls_cert, s.tls_key, s.tls_client_ca)
        if files.enabled or s.tls_client_ca is not None:
            try:
                self.tls = Tls(files)
            except TlsError as exc:
                raise StartupError(f"TLS: {exc}") from exc
            resources.callback(self.tls.close)
            log.info("TLS on every port%s", " with client certificates required" if self.tls.verify_clients else "")
        try:
            self.api_key = read_api_key(s.api_key_file)
        except ApiKeyError as exc:
            raise StartupError(str(exc)) from exc
        if self.api_key is not None:
            log.info("API key required for inference, metadata and reload calls")

    def _listen(self, resources: contextlib.ExitStack) -> grpc.Server:
        s = self.settings
        try:
            server, port = build_server(
                self.data_plane,
                bind_address=s.bind_address,
                port=s.port,
                workers=s.grpc_workers,
                max_message_bytes=s.max_message_bytes,
                gate=self.gate,
                health=self.health,
                metrics=self.metrics.requests if self.metrics else None,
                credentials=self.tls.grpc_credentials() if self.tls else None,
                api_key=self.api_key,
                max_connections=s.max_connections,
                idle_timeout_s=s.idle_timeout_s,
            )
        except BindError as exc:
            raise StartupError(str(exc)) from exc
        resources.callback(server.stop, None)  # no-op after a graceful stop; closes the port if start-up fails
        self.state.address = f"{s.bind_address}:{port}"
        return server

    def _listen_rest(self, config: ServerConfig, resources: contextlib.ExitStack) -> None:
        """TF Serving REST and KServe v2 REST on --rest-port (off unless given, as in OVMS), and /metrics there when
        metrics are on (--metrics-enable or --metrics-port) and the config's monitoring section allows them."""
        s = self.settings
        if s.rest_port is None:
            if s.metrics_enable and s.metrics_port is None:
                log.warning("--metrics-enable serves /metrics on the REST port: give --rest-port too")
            return
        host = s.rest_bind_address or s.bind_address
        metrics, page = self.metrics, None
        if metrics is not None and not config.monitoring.disabled:
            families = config.monitoring.metrics_list

            def page() -> tuple[bytes, str]:
                return metrics.page(families)

        try:
            self.rest = build_rest_server(
                self.data_plane,
                host=host,
                port=s.rest_port,
                workers=s.rest_workers,
                max_body_bytes=s.max_message_bytes,
                gate=self.gate,
                drain_s=s.drain_timeout_s,
                metrics=metrics.requests if metrics else None,
                metrics_page=page,
                ssl_context=self.tls.ssl_context() if self.tls else None,
                api_key=self.api_key,
                max_connections=s.max_connections,
                keep_alive_s=s.idle_timeout_s,
            )
        except BindError as exc:
            raise StartupError(str(exc)) from exc
        rest = self.rest
        resources.callback(rest.stop, 0)  # no-op after the graceful stop; closes the port if start-up fails
        rest.start()
        self.state.rest_address = f"{host}:{rest.port}"
        log.info("REST server listening on %s", self.state.rest_address)

    def _serve_metrics(self, config: ServerConfig, resources: contextlib.ExitStack) -> None:
        """/metrics on --metrics-port, as the config's monitoring section says: off with ``enable: false``, only the
        ``metrics_list`` families when given. Read at start-up only: a reload does not change it."""
        s, monitoring = self.settings, config.monitoring
        if self.metrics is None or s.metrics_port is None:
            if monitoring.asked_for and self.metrics is None:
                log.warning(
                    "the config's monitoring section asks for metrics: give --metrics-port (or --metrics-enable "
                    "with --rest-port) to serve them"
                )
            return
        if monitoring.disabled:
            log.info("metrics are off: the config's monitoring.metrics.enable is false")
            return
        try:
            if self.tls is not None:
                with self.tls.pem_files() as pem:
                    metrics_port = self.metrics.serve(s.bind_address, s.metrics_port, monitoring.metrics_list, pem)
                self.tls.track(self.metrics.ssl_context)
            else:
                metrics_port = self.metrics.serve(s.bind_address, s.metrics_port, monitoring.metrics_list)
        except OSError as exc:
            raise StartupError(
                f"cannot serve metrics on {s.bind_address}:{s.metrics_port}: {exc.strerror or exc}"
            ) from exc
        resources.callback(self.metrics.close)
        self.state.metrics_address = f"{s.bind_address}:{metrics_port}"
        log.info("metrics on http://%s/metrics", self.state.metrics_address)

    def _open_mirrors(self, resources: contextlib.ExitStack) -> None:
        """Object-store base paths are served from local mirrors in one cache root: --object-store-cache-dir, else
        the state dir's object-store folder, else a temporary dir. Each mirror lists its store every
        --file-system-poll-wait-seconds and nudges the manager when a version was installed or removed."""
        s = self.settings
        root = s.object_store_cache_dir or (s.state_dir.absolute() / "object-store" if s.state_dir else None)
        metrics = self.metrics
        self.mirrors = MirrorSet(
            root,
            interval_s=s.file_system_poll_wait_s,
            on_change=self.manager.reconcile,
            on_error=metrics.object_store_error if metrics is not None else lambda name: None,
        )
        resources.callback(self.mirrors.close)

    def _watch(self, config: ServerConfig, resources: contextlib.ExitStack) -> None:
        s = self.settings
        if s.file_system_poll_wait_s <= 0:
            return
        self.updates = LiveUpdates(
            self.manager.reconcile,
            self.reload_if_changed,
            s.config_path.absolute() if s.config_path else None,
            poll_interval_s=s.file_system_poll_wait_s,
            force_polling=s.force_polling,
            files_changed=self.manager.fingerprints.changed,
        )
        self.updates.start(config)
        self.manager.fingerprints.enable()  # events now reach the cache
        resources.callback(self._stop_watching)

    def _stop_watching(self) -> None:
        updates, self.updates = self.updates, None
        if updates is not None:
            updates.stop()

    def _commands(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reload": lambda: {"reload": self.reloader.reload("ovmsctl reload").to_dict(), "status": self.status()},
        }

    def _main_loop(self, inbox: SignalInbox, serve: Callable[[], None]) -> None:
        """Wait for signals and for the first loads' end (``serve``); return on SIGTERM/SIGINT. Nothing slow here."""
        loading = True
        while True:
            for event in inbox.wait(TICK_S):
                if event is WAKE:
                    if loading:
                        loading = False
                        serve()
                elif event in STOP_SIGNALS:
                    log.info("received %s: stopping", event.name)
                    if loading:
                        self.ready_pipe.failed(f"stopped by {event.name} during start-up")
                    return
                elif event == signal.SIGHUP:
                    log.info("received SIGHUP: reloading the config")
                    self.reloader.request("SIGHUP")
            self.health.refresh()

    def _stop(self, server: grpc.Server) -> None:
        """Refuse new requests (UNAVAILABLE), let those running finish, then close the port and unload."""
        grace = self.settings.drain_timeout_s
        deadline = time.monotonic() + grace
        self.state.phase = "stopping"  # a reload in progress sees it and changes nothing more; no lock: stop wins
        self.reloader.close()
        self.gate.close()
        self.health.stopping()
        self.notifier.stopping("stopping: draining requests")
        log.info("stopping: refusing new requests, draining %d in flight (up to %.0f s)", self.gate.running, grace)
        self._stop_watching()
        if self.mirrors is not None:
            self.mirrors.stop()  # an object-store download in progress is abandoned
        if not self.gate.drain(grace, QUIET_S):
            log.warning("%d requests still running after %.0f s: cancelling them", self.gate.running, grace)
        stopped = server.stop(grace=max(0.0, deadline - time.monotonic()))
        if self.rest is not None:
            self.rest.stop(timeout=max(0.0, deadline - time.monotonic()))
        stopped.wait()
        if not self.manager.shutdown(timeout=max(0.0, deadline - time.monotonic())):
            log.warning("model versions still draining at the drain timeout: exiting anyway")


def main(argv: list[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    configure(settings.log_level, settings.log_file)
    log.info("ovmsd starting (pid %d)", os.getpid())
    soft, _ = raise_open_files_limit()
    needed = 2 * settings.max_connections + 256  # both ports full, plus models, logs, sockets
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "the open-files limit (%d) is below what --max-connections %d on two ports needs (%d): raise the hard "
            "limit (LimitNOFILE=, ulimit -Hn) or lower --max-connections",
            soft,
            settings.max_connections,
            needed,
        )
    daemon = Daemon(settings)
    code = daemon.run()
    abandoned = daemon.manager.loads_running
    if abandoned:
        # A compile cannot be interrupted; waiting for it would break the drain timeout. Its thread is a daemon
        # thread, but OpenVINO's own threads may still run: leave without interpreter teardown.
        log.info("abandoning %d model loads still running", abandoned)
        logging.shutdown()
        os._exit(code)
    return code
