"""sd_notify: tell systemd (or anything listening on ``NOTIFY_SOCKET``) how start-up, reloads and stop go.

The protocol is one datagram of ``KEY=VALUE`` lines to the Unix socket named by ``NOTIFY_SOCKET`` (an abstract
socket when the name starts with ``@``). Without ``NOTIFY_SOCKET`` every call does nothing. Watchdog pings
(``WATCHDOG=1``) come from a timer thread every half ``WATCHDOG_USEC``, so long model loads never starve them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(name: str) -> str:
    """``@name`` is an abstract-namespace socket (a leading NUL byte); anything else is a path."""
    return "\0" + name[1:] if name.startswith("@") else name


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings: half the watchdog timeout systemd set for this process, or None."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        name = env.get("NOTIFY_SOCKET", "")
        self._address = socket_address(name) if name else None
        self._watchdog_interval = watchdog_interval(env) if name else None
        self._stop = threading.Event()
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> None:
        if self._address is None:
            return
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            if not self._failed:  # say it once; the service goes on either way
                log.warning("sd_notify to %r failed: %s", self._address, exc)
                self._failed = True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def start_watchdog(self) -> None:
        interval = self._watchdog_interval
        if interval is None:
            return
        log.debug("sending watchdog pings every %.1f s", interval)
        threading.Thread(target=self._ping, args=(interval,), name="watchdog", daemon=True).start()

    def _ping(self, interval: float) -> None:
        self.send("WATCHDOG=1")
        while not self._stop.wait(interval):
            self.send("WATCHDOG=1")

    def close(self) -> None:
        self._stop.set()
