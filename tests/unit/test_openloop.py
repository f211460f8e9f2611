"""The open-loop generator against a real HTTP/1.1 keep-alive server on loopback (h11, in a thread).

The server answers each POST after a fixed service time: body b"fail" gets 503, b"chunked" a
chunked 200, anything else a 200 with Content-Length. A serial server answers one request at a
time, so its capacity is 1 / service time.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter, deque
from pathlib import Path

import h11
import pytest

from loadtest.load import BodyFiles
from loadtest.openloop import latency_bounded_throughput, parse_response, parse_url, run_failures, run_open_loop
from training.heldout import Sample

TOKEN = "t0ken"


class StubConnection(asyncio.Protocol):
    def __init__(self, server: StubServer):
        self.server = server
        self.http = h11.Connection(h11.SERVER)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections += 1

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        while (event := self.http.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            if isinstance(event, h11.Request):
                self.headers, self.body = dict(event.headers), b""
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.server.received(self, self.headers, self.body)

    def respond(self, body: bytes) -> None:
        answer = b'{"label": "7"}'
        length = [] if body == b"chunked" else [("Content-Length", str(len(answer)))]  # none: h11 chunks it
        response = h11.Response(status_code=503 if body == b"fail" else 200, headers=length)
        self.transport.write(self.http.send(response) + self.http.send(h11.Data(data=answer))
                             + self.http.send(h11.EndOfMessage()))
        self.http.start_next_cycle()


class StubServer:
    """Runs on its own event loop in a thread while the generator process loads it."""

    def __init__(self, service_s: float, serial: bool = False):
        self.service_s, self.serial = service_s, serial
        self.connections = 0
        self.requests: list[tuple[dict, bytes]] = []
        self.queue: deque[tuple[StubConnection, bytes]] = deque()
        self.busy = False
        self.loop = asyncio.new_event_loop()

    def __enter__(self) -> StubServer:
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: StubConnection(self), "127.0.0.1", 0, backlog=1024))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/predictions/stub"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def received(self, connection: StubConnection, headers: dict, body: bytes) -> None:
        self.requests.append((headers, body))
        if not self.serial:
            self.loop.call_later(self.service_s, connection.respond, body)
            return
        self.queue.append((connection, body))
        if not self.busy:
            self._serve_next()

    def _serve_next(self) -> None:
        self.busy = bool(self.queue)
        if self.busy:
            connection, body = self.queue.popleft()
            self.loop.call_later(self.service_s, self._finish, connection, body)

    def _finish(self, connection: StubConnection, body: bytes) -> None:
        connection.respond(body)
        self._serve_next()


def body_files(folder: Path, bodies: list[bytes]) -> list[str]:
    paths = []
    for index, body in enumerate(bodies):
        path = folder / f"{index}.body"
        path.write_bytes(body)
        paths.append(str(path))
    return paths


def test_arrivals_come_at_the_offered_rate_and_every_answer_is_counted_by_status():
    bodies = BodyFiles([Sample(body, "text/plain", expected="7") for body in (b"plain", b"chunked", b"fail")])
    with StubServer(service_s=0.005) as server:
        run = run_open_loop(server.url, bodies, None, TOKEN, rate_rps=300, seconds=2, server_pids=[])
    bodies.close()
    arrivals = run["arrivals"]
    assert 0.8 * 600 <= arrivals <= 1.2 * 600  # a Poisson count: its sd is 4 % of 600
    assert run["sent"] == run["answered"] == arrivals == len(server.requests)
    assert run["timeouts"] == run["connection_errors"] == 0
    # Bodies rotate, so every third arrival is the one the server refuses.
    assert run["non_2xx"] == {"503": arrivals // 3}
    assert run["ok"] == arrivals - arrivals // 3
    assert Counter(body for _, body in server.requests) == Counter(
        [b"plain", b"chunked", b"fail"][index % 3] for index in range(arrivals))
    assert {(headers[b"authorization"], headers[b"content-type"]) for headers, _ in server.requests} \
        == {(b"Bearer t0ken", b"text/plain")}
    assert run["throughput_rps"] == pytest.approx(300 * 2 / 3, rel=0.25)
    assert run["min_ms"] >= 5.0
    assert run["p50_ms"] < 50  # 5 ms of service and no queue: ~1.5 requests in flight
    assert run["connections_opened"] == server.connections < arrivals / 10  # keep-alive reuse
    assert run["generator_cpu_us_per_request"] > 0


def test_over_capacity_latency_grows_with_the_length_of_the_run(tmp_path):
    """The defining property of open loop: 200/s offered to a 100/s server builds a queue without bound."""
    bodies = body_files(tmp_path, [b"plain"])
    with StubServer(service_s=0.010, serial=True) as server:
        short, long = (run_open_loop(server.url, bodies, "text/plain", TOKEN, rate_rps=200, seconds=seconds,
                                     server_pids=[]) for seconds in (0.5, 1))
    for run in (short, long):
        assert run["ok"] == run["arrivals"]
        assert run["throughput_rps"] < 110
    # An arrival at time t waits ~t seconds: mean latency ~0.25 s over half a second, ~0.5 s over one.
    assert short["mean_ms"] > 100
    assert long["mean_ms"] > 1.5 * short["mean_ms"]
    assert long["max_ms"] > 1.5 * short["max_ms"]


def test_at_the_connection_cap_waiting_for_a_connection_counts_in_latency(tmp_path):
    bodies = body_files(tmp_path, [b"plain"])
    with StubServer(service_s=0.020) as server:  # two connections carry at most 100/s
        run = run_open_loop(server.url, bodies, "text/plain", TOKEN, rate_rps=200, seconds=1, server_pids=[],
                            max_connections=2)
    assert run["connections_opened"] == server.connections == 2
    assert run["waited_for_connection"] > run["arrivals"] / 3
    assert run["ok"] == run["arrivals"]
    assert run["p99_ms"] > 200  # timed from the send instead, every request would take ~20 ms


def test_bound_search_returns_a_rate_under_a_serial_servers_capacity(tmp_path):
    bodies = body_files(tmp_path, [b"plain"])
    # Rates tried: 150 (fails), 75, then 112.5 or 37.5, then one more; none of them exactly the capacity,
    # where a short run's p99 is a coin toss.
    with StubServer(service_s=0.010, serial=True) as server:  # capacity 100/s
        result = latency_bounded_throughput(server.url, bodies, "text/plain", TOKEN, p99_limit_ms=100,
                                            server_pids=[], start_rps=150, seconds=1.5, steps=4, pause_s=0.2)
    runs = {run["offered_rps"]: run for run in result["runs"]}
    assert list(runs)[:2] == [150, 75]
    assert "p99 over the limit" in runs[150]["failures"]
    assert 0 < result["rate_rps"] < 100
    assert runs[result["rate_rps"]]["failures"] == []
    assert all(run["failures"] for rate, run in runs.items() if rate > result["rate_rps"])
    assert result["generator_cpu_share_at_result"] == runs[result["rate_rps"]]["generator_cpu_share"]
    assert result["generator_lag_p99_ms_at_result"] == runs[result["rate_rps"]]["lateness_p99_ms"]


def test_refused_connections_are_counted_as_errors_and_fail_the_bound(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the probe is closed
    result = latency_bounded_throughput(f"http://127.0.0.1:{port}/x", body_files(tmp_path, [b"plain"]),
                                        "text/plain", TOKEN, p99_limit_ms=100, server_pids=[], start_rps=100,
                                        seconds=0.3, steps=1)
    run, = result["runs"]
    assert run["connection_errors"] == run["arrivals"] > 0
    assert run["answered"] == run["ok"] == 0 and run["p99_ms"] is None
    assert "failed requests" in run["failures"]
    assert result["rate_rps"] == 0 and result["generator_cpu_share_at_result"] is None


def test_a_run_fails_the_bound_on_its_p99_or_any_failed_request_not_on_the_generators_lag():
    run = {"p99_ms": 20.0, "non_2xx": {}, "connection_errors": 0, "timeouts": 0, "arrivals": 1000,
           "lateness_p99_ms": 2.0}
    assert run_failures(run, p99_limit_ms=25) == []
    # Lag is already inside the p99 (latency counts from the scheduled arrival), so it fails a run only through it.
    assert run_failures({**run, "lateness_p99_ms": 10.0}, p99_limit_ms=25) == []
    assert run_failures({**run, "p99_ms": 25.5}, p99_limit_ms=25) == ["p99 over the limit"]
    assert run_failures({**run, "non_2xx": {"503": 1}}, p99_limit_ms=25) == ["failed requests"]
    assert run_failures({**run, "timeouts": 1}, p99_limit_ms=25) == ["failed requests"]
    assert run_failures({**run, "connection_errors": 1}, p99_limit_ms=25) == ["failed requests"]


@pytest.mark.parametrize("url", ["http://10.1.2.3:8080/predictions/mnist", "http://example.com/predictions/mnist",
                                 "https://127.0.0.1:8443/predictions/mnist", "http://0.0.0.0:8080/x"])
def test_urls_off_loopback_are_refused(url, tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        run_open_loop(url, body_files(tmp_path, [b"plain"]), "text/plain", TOKEN, 10, 1, [])


def test_loopback_urls_give_host_port_and_target():
    assert parse_url("http://127.0.0.1:8080/predictions/mnist") == ("127.0.0.1", 8080, "/predictions/mnist")
    assert parse_url("http://[::1]:8080/p?x=1") == ("::1", 8080, "/p?x=1")


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
SIZED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"


def test_responses_end_where_their_framing_says_and_not_before():
    for response, status, close in ((CHUNKED, 200, False), (SIZED, 503, True)):
        assert all(parse_response(response[:cut]) is None for cut in range(len(response)))
        assert parse_response(response + b"HTTP/1.1 200 OK\r\n") == (status, len(response), close)
    unframed = b"HTTP/1.0 200 OK\r\n\r\nbody until close"
    assert parse_response(unframed) is None
    assert parse_response(unframed, eof=True) == (200, len(unframed), True)
