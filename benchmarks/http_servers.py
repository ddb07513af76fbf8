"""HTTP server libraries for the daemon's REST endpoint (issue 9): which one to build on, by measurement.

Each candidate runs in a child process on a free 127.0.0.1 port with the same handlers:

- ``GET /ready``: 200, empty body;
- ``POST /echo-size``: reads the whole body, answers a small fixed JSON body (400 if fewer bytes than announced);
- ``POST /echo-size-pool``: the same, plus ``time.sleep(0.001)`` in a worker pool of ``--workers`` threads (a
  blocking, GIL-free ~1 ms inference; OVMS's ``--rest_workers``). Where the library's handlers already run in its
  own fixed thread pool (waitress) or in a thread per connection (stdlib), the sleep runs there;
- ``GET /slow``: 1 s in the pool (the in-flight request of the drain test).

Body limit 1 MiB (aiohttp's default; the 600 KB POST passes), enforced by the library where it has a setting
(aiohttp ``client_max_size``, waitress ``max_request_body_size``, tornado ``max_body_size``) and by the app
(Content-Length checked before the body is received) where it has none (uvicorn, stdlib).

The client is ``wrk`` (Debian's, C, epoll, 1 thread): a Python client at 4 connections would need a core of its own
on this 2-core machine and would measure itself as much as the server. The POST body comes from a generated Lua
script; its ``done()`` prints requests, errors and latency percentiles as JSON.

Measured, per candidate:

1. throughput, p50/p99 and server CPU per request at 1 and 4 connections, for each endpoint; rounds interleave the
   candidates (all servers started at once, idle while another is measured) and the table gives medians of rounds;
2. 2,000 idle keep-alive connections (raw sockets, one ``GET /ready`` each, then left open): server threads, RSS and
   socket descriptors before and with them open, ``/ready`` latency at 1 connection while they stay open, and how
   many the server still holds afterwards;
3. an oversized body: ``Content-Length: 2000000000`` and no body for 1 s (an answer now = refused on the headers),
   then body bytes in 64 KiB pieces until an answer comes (at most 8 MiB or 6 s): the status and how many body bytes
   were sent before it (loopback socket buffers absorb about 2.6 MiB, so a count near that means "not read");
4. drain on SIGTERM: a 1 s request in flight and one idle keep-alive connection; SIGTERM after 0.2 s; 0.2 s later a
   new connection is tried; reported: whether the in-flight request got its 200, whether the new connection was
   refused, and when the process exited.

Usage: ``.venv/bin/python benchmarks/http_servers.py [--rounds 3] [--duration 2] [--only aiohttp,uvicorn]``.
Writes ``benchmarks/results/http_servers-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

FIXED = b'{"status":"ok"}'
MAX_BODY = 1024**2
SLOW_S = 1.0
WORK_S = 0.001
KEEPALIVE_S = 75  # every candidate's idle keep-alive timeout, set alike (defaults differ, see the notes)
CANDIDATES = ("aiohttp", "aiohttp+uvloop", "uvicorn", "waitress", "tornado", "stdlib")


def _work(seconds: float) -> None:
    time.sleep(seconds)


# -- servers (child process) ---------------------------------------------------------------------------------------


def serve_aiohttp(port: int, workers: int, uvloop: bool = False) -> None:
    import asyncio

    from aiohttp import web

    pool = ThreadPoolExecutor(workers, thread_name_prefix="work")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()  # 413 past client_max_size
        if len(body) != (request.content_length or 0):
            return web.Response(status=400)
        if request.path.endswith("-pool"):
            await asyncio.get_running_loop().run_in_executor(pool, _work, WORK_S)
        return web.Response(body=FIXED, content_type="application/json")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.get_running_loop().run_in_executor(pool, _work, SLOW_S)
        return web.Response(body=FIXED, content_type="application/json")

    app = web.Application(client_max_size=MAX_BODY)
    app.add_routes([web.get("/ready", ready), web.post("/echo-size", echo), web.post("/echo-size-pool", echo)])
    app.add_routes([web.get("/slow", slow)])
    # run_app turns SIGTERM into GracefulExit: stop listening, close idle connections, wait up to shutdown_timeout
    if uvloop:
        import uvloop as uvloop_module

        asyncio.set_event_loop_policy(uvloop_module.EventLoopPolicy())
    web.run_app(
        app, host="127.0.0.1", port=port, shutdown_timeout=10, keepalive_timeout=KEEPALIVE_S,
        access_log=None, print=None,
    )  # fmt: skip


def serve_uvicorn(port: int, workers: int) -> None:
    import asyncio

    import uvicorn

    pool = ThreadPoolExecutor(workers, thread_name_prefix="work")

    async def respond(send: Any, status: int, body: bytes = b"", close: bool = False) -> None:
        headers = [(b"content-length", str(len(body)).encode())]
        if body:
            headers.append((b"content-type", b"application/json"))
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/ready":
            return await respond(send, 200)
        if path == "/slow":
            await asyncio.get_running_loop().run_in_executor(pool, _work, SLOW_S)
            return await respond(send, 200, FIXED)
        if path.startswith("/echo-size") and scope["method"] == "POST":
            length = 0
            for name, value in scope["headers"]:
                if name == b"content-length":
                    length = int(value)
            if length > MAX_BODY:  # uvicorn has no body limit: the app refuses before receiving
                return await respond(send, 413, close=True)
            chunks, more = [], True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            if len(body) != length:
                return await respond(send, 400)
            if path.endswith("-pool"):
                await asyncio.get_running_loop().run_in_executor(pool, _work, WORK_S)
            return await respond(send, 200, FIXED)
        return await respond(send, 404)

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off", access_log=False,
        log_level="warning", timeout_keep_alive=KEEPALIVE_S, timeout_graceful_shutdown=10,
    )  # fmt: skip
    uvicorn.Server(config).run()  # SIGTERM -> should_exit: stop listening, close idle, wait for in-flight


def serve_waitress(port: int, workers: int, defaults: bool = False) -> None:
    import waitress

    def app(environ: dict, start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path == "/ready":
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        if path == "/slow":
            _work(SLOW_S)
        elif path.startswith("/echo-size"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)  # waitress buffered it already (413 past the limit)
            if len(body) != length:
                start_response("400 Bad Request", [("Content-Length", "0")])
                return [b""]
            if path.endswith("-pool"):
                _work(WORK_S)  # the handler already runs in waitress's pool of `threads`
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(FIXED)))])
        return [FIXED]

    if defaults:  # connection_limit=100, select(), channel_timeout=120
        server = waitress.create_server(app, host="127.0.0.1", port=port, threads=workers)
    else:
        server = waitress.create_server(
            app, host="127.0.0.1", port=port, threads=workers, max_request_body_size=MAX_BODY,
            connection_limit=4000, asyncore_use_poll=True, channel_timeout=KEEPALIVE_S,
        )  # fmt: skip

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(0)  # server.run() catches it and calls close(): thread pool shutdown (5 s), close all

    signal.signal(signal.SIGTERM, on_term)
    server.run()


def serve_tornado(port: int, workers: int) -> None:
    import asyncio

    import tornado.httpserver
    import tornado.web

    pool = ThreadPoolExecutor(workers, thread_name_prefix="work")
    inflight = [0]

    class Base(tornado.web.RequestHandler):
        def prepare(self) -> None:
            inflight[0] += 1

        def on_finish(self) -> None:
            inflight[0] -= 1

        def set_default_headers(self) -> None:
            self.clear_header("Server")

    class Ready(Base):
        def get(self) -> None:
            self.finish()

    class Echo(Base):
        async def post(self) -> None:
            body = self.request.body  # buffered by the server, 400 (not 413) past max_body_size
            if len(body) != int(self.request.headers.get("Content-Length", 0)):
                self.set_status(400)
                return self.finish()
            if self.request.path.endswith("-pool"):
                await asyncio.get_running_loop().run_in_executor(pool, _work, WORK_S)
            self.set_header("Content-Type", "application/json")
            self.finish(FIXED)

    class Slow(Base):
        async def get(self) -> None:
            await asyncio.get_running_loop().run_in_executor(pool, _work, SLOW_S)
            self.set_header("Content-Type", "application/json")
            self.finish(FIXED)

    async def main() -> None:
        app = tornado.web.Application(
            [("/ready", Ready), ("/echo-size", Echo), ("/echo-size-pool", Echo), ("/slow", Slow)],
            log_function=lambda handler: None,
        )
        server = tornado.httpserver.HTTPServer(app, max_body_size=MAX_BODY, idle_connection_timeout=KEEPALIVE_S)
        server.listen(port, "127.0.0.1")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        # tornado has no graceful stop: stop listening, wait for in-flight handlers ourselves, then close
        server.stop()
        deadline = time.monotonic() + 10
        while inflight[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let the last responses flush
        await server.close_all_connections()

    asyncio.run(main())


def serve_stdlib(port: int, workers: int) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    inflight = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def reply(self, status: int, body: bytes = b"", close: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if body:
                self.send_header("Content-Type", "application/json")
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/ready":
                return self.reply(200)
            if self.path == "/slow":
                with lock:
                    inflight[0] += 1
                try:
                    _work(SLOW_S)
                    return self.reply(200, FIXED)
                finally:
                    with lock:
                        inflight[0] -= 1
            return self.reply(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self.reply(413, close=True)
            body = self.rfile.read(length)
            if len(body) != length:
                return self.reply(400, close=True)
            if self.path.endswith("-pool"):
                _work(WORK_S)  # each connection has its own thread already
            return self.reply(200, FIXED)

    Handler.disable_nagle_algorithm = True  # headers and body are 2 writes: without it, 40 ms delayed ACK stalls
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.request_queue_size = 128

    def on_term(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    server.serve_forever(poll_interval=0.05)
    server.socket.close()  # stop accepting; threads are daemon threads: wait for in-flight ones ourselves
    deadline = time.monotonic() + 10
    while inflight[0] and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)


SERVERS = {
    "aiohttp": serve_aiohttp,
    "aiohttp+uvloop": lambda port, workers: serve_aiohttp(port, workers, uvloop=True),
    "uvicorn": serve_uvicorn,
    "waitress": serve_waitress,
    "waitress-defaults": lambda port, workers: serve_waitress(port, workers, defaults=True),
    "tornado": serve_tornado,
    "stdlib": serve_stdlib,
}


# -- client side ---------------------------------------------------------------------------------------------------

WRK_LUA = """
wrk.method = "%(method)s"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/octet-stream"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%.1f,"p99_us":%%.1f,"mean_us":%%.1f,"max_us":%%.1f,' ..
    '"err_connect":%%d,"err_read":%%d,"err_write":%%d,"err_status":%%d,"err_timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

SCENARIOS = {  # name: (method, path, body bytes)
    "ready": ("GET", "/ready", 0),
    "post48k": ("POST", "/echo-size", 48 * 1024),
    "post600k": ("POST", "/echo-size", 600 * 1024),
    "post48k-pool": ("POST", "/echo-size-pool", 48 * 1024),
}


def wrk_script(folder: Path, scenario: str) -> Path:
    method, _, size = SCENARIOS[scenario]
    body = f'string.rep("x", {size})' if size else "nil"
    path = folder / f"{scenario}.lua"
    path.write_text(WRK_LUA % {"method": method, "body": body})
    return path


def run_wrk(url: str, script: Path, connections: int, duration: float, pid: int | None = None) -> dict[str, Any]:
    from common import process_cpu_s

    cpu0 = process_cpu_s(pid) if pid else None
    seconds = max(1, round(duration))  # wrk takes whole seconds
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30)
    cpu1 = process_cpu_s(pid) if pid else None
    match = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if not match:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    data = json.loads(match.group(1))
    seconds = data["duration_us"] / 1e6
    data["rps"] = data["requests"] / seconds if seconds else 0.0
    data["errors"] = sum(v for k, v in data.items() if k.startswith("err_"))
    if cpu0 is not None and data["requests"]:
        data["server_cpu_us_per_req"] = (cpu1 - cpu0) / data["requests"] * 1e6
        data["server_cores"] = (cpu1 - cpu0) / seconds
    return data


def http_get(port: int, path: str, timeout: float = 2.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(4096)
    return int(head.split()[1]) if head.startswith(b"HTTP/") else -1


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            if http_get(port, "/ready", 0.5) == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} not ready after {timeout} s")


def read_response(sock: socket.socket, timeout: float) -> tuple[int, bytes]:
    """One response's status and body (Content-Length framing); (-1, b'') if the connection closed first."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return -1, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def server_facts(pid: int) -> dict[str, Any]:
    from common import proc_status_kib

    status = proc_status_kib(pid, "VmRSS", "Threads")
    fds = 0
    with contextlib.suppress(OSError):
        fds = sum(1 for fd in os.listdir(f"/proc/{pid}/fd") if "socket" in os.readlink(f"/proc/{pid}/fd/{fd}"))
    return {"threads": status.get("Threads"), "rss_mib": status.get("VmRSS", 0) / 1024, "sockets": fds}


def idle_test(port: int, pid: int, lua: Path, count: int, duration: float) -> dict[str, Any]:
    before = server_facts(pid)
    socks: list[socket.socket] = []
    answered, failure = 0, None
    start = time.monotonic()
    try:
        for _ in range(count):
            if time.monotonic() - start > 60:
                failure = "over 60 s to open them"
                break
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                socks.append(s)
                s.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                status, _ = read_response(s, 2)
            except OSError as exc:
                failure = f"connection {len(socks)}: {type(exc).__name__} {exc}"
                break
            if status != 200:
                failure = f"connection {len(socks)}: status {status}"
                break
            answered += 1
        open_s = time.monotonic() - start
        time.sleep(1.0)
        during = server_facts(pid)
        try:
            ready = run_wrk(f"http://127.0.0.1:{port}/ready", lua, 1, duration)
        except Exception as exc:  # e.g. no answer at all while the idle ones are held
            ready = {"error": str(exc)[:300]}
        alive = 0
        for s in socks:  # still open (from the server's side) = not readable, or readable without EOF
            s.setblocking(False)
            try:
                alive += 1 if s.recv(1, socket.MSG_PEEK) else 0  # b"": closed by the server
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
    finally:
        for s in socks:
            s.close()
    time.sleep(1.0)
    return {
        "opened": len(socks), "answered": answered, "failure": failure, "open_s": open_s, "before": before,
        "with_idle": during, "still_open_after": alive, "ready_with_idle": ready, "after_close": server_facts(pid),
    }  # fmt: skip


def oversize_test(port: int) -> dict[str, Any]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(
        b"POST /echo-size HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 2000000000\r\n\r\n"
    )
    piece = b"x" * 65536
    sent, start, answer = 0, time.monotonic(), b""
    s.setblocking(False)
    try:
        readable, _, _ = select.select([s], [], [], 1.0)  # first no body at all: a refusal on the headers alone
        while time.monotonic() - start < 6 and not answer:
            readable, writable, _ = select.select([s], [s] if sent < 8 * 1024**2 else [], [], 0.05)
            if readable:
                try:
                    answer = s.recv(4096) or b"<closed>"
                except ConnectionResetError:
                    answer = b"<reset>"
            elif writable:
                with contextlib.suppress(BlockingIOError):
                    sent += s.send(piece)
    except OSError as exc:
        answer = answer or f"<{type(exc).__name__}>".encode()
    finally:
        took = time.monotonic() - start
        s.close()
    first = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    status = int(first.split()[1]) if first.startswith("HTTP/") else None
    return {
        "answer": first or "<none in 6 s>", "status": status, "body_bytes_sent": sent, "answer_s": took,
        "answered_on_headers": bool(answer) and sent == 0,
    }  # fmt: skip


def drain_test(port: int, proc: subprocess.Popen) -> dict[str, Any]:
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    read_response(idle, 5)
    busy = socket.create_connection(("127.0.0.1", port), timeout=5)
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sent = time.monotonic()
    time.sleep(0.2)
    term = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        new = http_get(port, "/ready", 1.0)
        new_conn = f"answered {new}"
    except ConnectionRefusedError:
        new_conn = "refused"
    except TimeoutError:
        new_conn = "accepted, no answer in 1 s"
    except OSError as exc:
        new_conn = f"{type(exc).__name__}"
    try:
        status, _ = read_response(busy, 5)
        inflight = "closed before answering" if status == -1 else f"{status}"
    except OSError as exc:
        inflight = f"{type(exc).__name__}"
    inflight_s = time.monotonic() - sent
    try:
        idle.settimeout(0.5)
        idle_state = "closed by server" if idle.recv(1) == b"" else "data"
    except TimeoutError:
        idle_state = "still open"
    except OSError as exc:
        idle_state = type(exc).__name__
    try:
        proc.wait(timeout=15)
        exit_s = time.monotonic() - term
    except subprocess.TimeoutExpired:
        exit_s = None
    busy.close()
    idle.close()
    return {
        "inflight_status": inflight, "inflight_s": inflight_s, "new_connection": new_conn,
        "idle_keepalive": idle_state, "exit_after_sigterm_s": exit_s, "returncode": proc.returncode,
    }  # fmt: skip


def dependency_closure(package: str) -> list[str]:
    """The installed distributions ``package`` requires (no extras), transitively, with versions."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, str] = {}
    todo = [package]
    while todo:
        name = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            key = canonicalize_name(req.name)
            if key not in seen and key != canonicalize_name(package):
                with contextlib.suppress(PackageNotFoundError):
                    seen[key] = distribution(key).version
                    todo.append(key)
    return [f"{k}=={v}" for k, v in sorted(seen.items())]


def versions() -> dict[str, Any]:
    from importlib.metadata import version

    out: dict[str, Any] = {}
    for name in ("aiohttp", "uvicorn", "httptools", "uvloop", "h11", "waitress", "tornado"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = None
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    out["wrk"] = (wrk.stdout + wrk.stderr).splitlines()[0].strip()
    out["stdlib"] = f"python {sys.version.split()[0]}"
    deps = {name: dependency_closure(name) for name in ("aiohttp", "uvicorn", "waitress", "tornado")}
    extras = [f"{n}=={out[n]}" for n in ("httptools", "uvloop")]
    extras += [*dependency_closure("httptools"), *dependency_closure("uvloop")]
    deps["uvicorn (+ httptools, uvloop)"] = sorted({*deps["uvicorn"], *extras})
    return {"versions": out, "dependencies": deps}


# -- main ----------------------------------------------------------------------------------------------------------


def start(children: Any, name: str, workers: int) -> tuple[subprocess.Popen, int]:
    from common import free_port

    port = free_port()
    args = [sys.executable, __file__, "--serve", name, "--port", str(port), "--workers", str(workers)]
    proc = children.popen(name, args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=4, help="worker pool size (--rest_workers), default 4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run (whole seconds)")
    parser.add_argument("--idle", type=int, default=2000, help="idle keep-alive connections")
    parser.add_argument("--only", default=",".join(CANDIDATES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.serve:
        SERVERS[args.serve](args.port, args.workers)
        return

    from common import REPO, Children, cpu_flags, git_state, machine_info, median, sigterm_as_interrupt, write_json

    names = [n for n in args.only.split(",") if n]
    results: dict[str, Any] = {
        "benchmark": "http_servers",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "cpu_flags": sorted(cpu_flags()),
        "git": git_state(),
        **versions(),
        "settings": {
            "workers": args.workers,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "idle": args.idle,
            "max_body": MAX_BODY,
            "keepalive_s": KEEPALIVE_S,
            "work_s": WORK_S,
            "client": "wrk -t1 (one process, one thread), --timeout 5s",
        },
        "runs": {n: {} for n in names},
    }
    out = args.out or REPO / "benchmarks" / "results" / f"http_servers-{dt.date.today().isoformat()}.json"
    with tempfile.TemporaryDirectory() as tmp, Children() as children, sigterm_as_interrupt():
        scripts = {s: wrk_script(Path(tmp), s) for s in SCENARIOS}
        servers = {n: start(children, n, args.workers) for n in names}
        for name, (_proc, port) in servers.items():  # warm-up, and a check that every endpoint answers 200
            for scenario, (_, path, _) in SCENARIOS.items():
                warm = run_wrk(f"http://127.0.0.1:{port}{path}", scripts[scenario], 4, 1)
                if warm["errors"] or not warm["requests"]:
                    raise RuntimeError(f"{name} {scenario}: {warm}")
        for rnd in range(args.rounds):
            for name in names if rnd % 2 == 0 else reversed(names):
                proc, port = servers[name]
                for scenario, (_, path, _) in SCENARIOS.items():
                    for conns in (1, 4):
                        url = f"http://127.0.0.1:{port}{path}"
                        data = run_wrk(url, scripts[scenario], conns, args.duration, proc.pid)
                        results["runs"][name].setdefault(f"{scenario}/c{conns}", []).append(data)
                print(f"round {rnd + 1}/{args.rounds} {name} done", flush=True)
            write_json(out, results)
        summary: dict[str, Any] = {}
        for name in names:
            proc, port = servers[name]
            summary[name] = {
                key: {f: median(r.get(f, float("nan")) for r in runs)
                      for f in ("rps", "p50_us", "p99_us", "server_cpu_us_per_req", "server_cores", "errors")}
                for key, runs in results["runs"][name].items()
            }  # fmt: skip
            results.setdefault("idle", {})[name] = idle_test(port, proc.pid, scripts["ready"], args.idle, args.duration)
            results.setdefault("oversize", {})[name] = oversize_test(port)
            print(f"{name}: idle {results['idle'][name]['with_idle']}, 413 {results['oversize'][name]}", flush=True)
        results["summary"] = summary
        for name in names:
            proc, port = servers[name]
            results.setdefault("drain", {})[name] = drain_test(port, proc)
            children.stop(proc)
            print(f"{name}: drain {results['drain'][name]}", flush=True)
        if "waitress" in names:  # waitress as shipped: connection_limit=100 and select()
            proc, port = start(children, "waitress-defaults", args.workers)
            results["idle"]["waitress-defaults"] = idle_test(port, proc.pid, scripts["ready"], args.idle, args.duration)
            results["oversize"]["waitress-defaults"] = oversize_test(port)
            children.stop(proc)
    write_json(out, results)
    print_summary(results)
    print(f"\nwrote {out}")


def print_summary(results: dict[str, Any], markdown: bool = False) -> None:
    from common import fmt, print_table

    summary = results["summary"]
    rows = []
    for name, runs in summary.items():
        row = [name]
        for key in ("post48k/c1", "post48k/c4", "post600k/c4", "post48k-pool/c4", "ready/c4"):
            row.append(fmt(runs[key]["rps"], 0))
            if key == "post48k/c4" or key == "post48k-pool/c4":
                row += [fmt(runs[key]["p50_us"] / 1e3, 2), fmt(runs[key]["p99_us"] / 1e3, 2)]
        row.append(fmt(runs["post48k/c4"]["server_cpu_us_per_req"], 0))
        rows.append(row)
    headers = [
        "server", "48K c1 req/s", "48K c4 req/s", "p50 ms", "p99 ms", "600K c4 req/s", "48K+pool c4 req/s",
        "p50 ms", "p99 ms", "ready c4 req/s", "CPU us/req (48K c4)",
    ]  # fmt: skip
    print_table(headers, rows, title="Throughput and latency (medians of rounds)", markdown=markdown)
    rows = []
    for name, idle in results["idle"].items():
        ready = idle["ready_with_idle"]
        over = results["oversize"].get(name, {})
        drain = results.get("drain", {}).get(name, {})
        rows.append([
            name, f"{idle['answered']}/{idle['opened']}", idle["before"]["threads"], idle["with_idle"]["threads"],
            fmt(idle["before"]["rss_mib"], 0), fmt(idle["with_idle"]["rss_mib"], 0), idle["still_open_after"],
            fmt(ready.get("p50_us", float("nan")) / 1e3, 2), fmt(ready.get("p99_us", float("nan")) / 1e3, 2),
            f"{over.get('status')} on headers"
            if over.get("answered_on_headers")
            else f"{over.get('status')} after {over.get('body_bytes_sent', 0) // 1024} KiB sent",
            drain.get("inflight_status", "-"), drain.get("new_connection", "-"),
            fmt(drain.get("exit_after_sigterm_s"), 2),
        ])  # fmt: skip
    headers = [
        "server", "idle answered", "threads before", "threads w/ idle", "RSS MiB before", "RSS MiB w/ idle",
        "idle still open", "/ready p50 ms w/ idle", "p99 ms", "2 GB body", "drain: in-flight", "new conn",
        "exit s",
    ]  # fmt: skip
    title = "2,000 idle keep-alive connections, oversized body, SIGTERM drain"
    print_table(headers, rows, title=title, markdown=markdown)


if __name__ == "__main__":
    main()
