"""Many and slow clients against a real TorchServe: none may starve real clients or leak.

On its own server (mnist) so the session server is never disturbed. While thousands of idle
connections, slow-loris headers and bodies, and clients that hang up mid-request all run at once,
a real client keeps sending held-out digits; its p99 is measured against its own p99 just before,
and the frontend's open file descriptors and heap (after a full GC) before and after.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time

import pytest

from loadtest.launcher import EntrypointServer
from loadtest.openloop import percentile_ms
from loadtest.soak import java_heap_used_mb
from tests.heldout import mnist_test_digits
from tests.images import png_of_pixels

IDLE_CONNECTIONS = 2000
SLOW_HEADER_CLIENTS = 200
SLOW_BODY_CLIENTS = 200
HANG_UP_ROUNDS = 300
TRICKLE_INTERVAL_S = 0.5
PHASE_S = 8


@pytest.fixture(scope="module")
def lone_server(model_store, tmp_path_factory):
    with EntrypointServer(tmp_path_factory.mktemp("slow_clients"), model_store, ["mnist"]).running() as server:
        yield server


def open_connection(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.setblocking(False)
    return connection


class Attack:
    """Idle connections, slow-loris headers and bodies, hang-ups; all stopped and closed on exit."""

    def __init__(self, port: int, token: str, body: bytes):
        self.port, self.token, self.body = port, token, body
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._trickle, daemon=True),
                        threading.Thread(target=self._hang_up, daemon=True)]
        self.hang_ups = 0

    def _head(self, length: int) -> bytes:
        return (f"POST /predictions/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
                f"Content-Type: image/png\r\nContent-Length: {length}\r\n\r\n").encode()

    def __enter__(self) -> Attack:
        self.sockets += [open_connection(self.port) for _ in range(IDLE_CONNECTIONS)]
        self.slow_headers = [open_connection(self.port) for _ in range(SLOW_HEADER_CLIENTS)]
        self.slow_bodies = [open_connection(self.port) for _ in range(SLOW_BODY_CLIENTS)]
        for connection in self.slow_bodies:
            connection.send(self._head(100_000))
        self.sockets += self.slow_headers + self.slow_bodies
        for thread in self.threads:
            thread.start()
        return self

    def _trickle(self) -> None:
        """One byte per connection per interval: a header that never ends, a body that never arrives."""
        header = self._head(len(self.body))
        position = 0
        while not self.stop.wait(TRICKLE_INTERVAL_S):
            for connection in self.slow_headers:
                with contextlib.suppress(OSError):
                    connection.send(header[position % len(header):][:1])
            for connection in self.slow_bodies:
                with contextlib.suppress(OSError):
                    connection.send(b"\x00")
            position += 1

    def _hang_up(self) -> None:
        """Clients that close mid-body, and clients that close before their answer."""
        while not self.stop.is_set() and self.hang_ups < HANG_UP_ROUNDS:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=5) as half:
                half.sendall(self._head(len(self.body)) + self.body[: len(self.body) // 2])
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=5) as early:
                early.sendall(self._head(len(self.body)) + self.body)
            self.hang_ups += 1
            time.sleep(0.02)

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        for connection in self.sockets:
            connection.close()


def timed_predictions(client, body: bytes, seconds: float) -> tuple[list[int], list[float]]:
    statuses, latencies = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        statuses.append(client.predict("mnist", data=body).status_code)
        latencies.append(time.monotonic() - started)
    return statuses, latencies


def p99_ms(latencies: list[float]) -> float:
    return percentile_ms(sorted(latencies), 99)


def heap_after_full_gc_mb(pid: int) -> float:
    subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, timeout=30, check=True)
    return java_heap_used_mb(pid)


@pytest.mark.skipif(shutil.which("jcmd") is None, reason="needs the JDK's jcmd for the frontend's heap")
def test_idle_slow_and_vanishing_clients_starve_no_one_and_leak_nothing(lone_server):
    from deploy.client import read_keys

    client = lone_server.client()
    client.timeout = 30
    frontend = lone_server.frontend()
    body = png_of_pixels(mnist_test_digits(1)[0][0])
    timed_predictions(client, body, 1)  # warm
    fds_before, heap_before = frontend.num_fds(), heap_after_full_gc_mb(frontend.pid)
    quiet_statuses, quiet = timed_predictions(client, body, PHASE_S)

    with Attack(int(lone_server.inference_url.rsplit(":", 1)[1]), read_keys(lone_server.key_file)["inference"],
                body) as attack:
        time.sleep(1)
        fds_during = frontend.num_fds()
        loaded_statuses, loaded = timed_predictions(client, body, PHASE_S)
        hang_ups = attack.hang_ups

    time.sleep(3)  # the frontend sees the closes
    fds_after, heap_after = frontend.num_fds(), heap_after_full_gc_mb(frontend.pid)
    after_statuses, _ = timed_predictions(client, body, 1)
    print(f"real client p99 {p99_ms(quiet):.1f} ms alone, {p99_ms(loaded):.1f} ms beside {IDLE_CONNECTIONS} idle, "
          f"{SLOW_HEADER_CLIENTS} slow-header, {SLOW_BODY_CLIENTS} slow-body connections and {2 * hang_ups} "
          f"hang-ups ({len(loaded)} requests); frontend fds {fds_before} -> {fds_during} -> {fds_after}, "
          f"heap after full GC {heap_before:.1f} -> {heap_after:.1f} MiB")
    assert set(quiet_statuses) == set(loaded_statuses) == set(after_statuses) == {200}
    assert fds_during >= fds_before + IDLE_CONNECTIONS  # the connections were really held open
    assert hang_ups > 50
    assert p99_ms(loaded) < 1000  # starving would be seconds: a real client waited behind the attack
    assert fds_after <= fds_before + 16  # every connection's descriptor was released
    assert heap_after <= heap_before + 32
