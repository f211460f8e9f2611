"""Open-loop Poisson load and the latency-bounded throughput it defines (MLPerf's server scenario).

wrk (loadtest.load) is closed loop: a connection sends its next request only after the last answer,
so a slow server slows its own load down. Here arrivals follow a Poisson process scheduled against
the clock whatever the answers do, and each latency counts from the arrival's scheduled time: time
spent waiting for the generator, for a free connection or for the server all counts (no coordinated
omission). Latency-bounded throughput is the highest such rate whose p99 stays under a limit.

The generator is its own process, so it shares no GIL with the caller and its CPU cost is its
rusage; it imports neither torch nor the rest of loadtest, so it starts in a tenth of a second.

    python -m loadtest.openloop --rate 2000 --seconds 3 --content-type image/png URL BODY_FILE...
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psutil
import uvloop

if TYPE_CHECKING:
    from loadtest.load import BodyFiles

REPO = Path(__file__).resolve().parents[1]
TOKEN_VARIABLE = "OPENLOOP_AUTH_TOKEN"  # the token travels in the environment: argv is readable by other users
LATE_S = 0.001  # an arrival sent later than this after its time counts as late: the generator lagged
# Arrivals due within this of a wake-up go with it, rather than waking again a few microseconds later.
EARLY_S = 0.0001
MAX_CONNECTIONS = 1024
DRAIN_TIMEOUT_S = 10.0


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, request target) of an http:// URL on this machine's loopback; anything else is refused."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise ValueError(f"open-loop load only goes to http:// on loopback, not {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, parts.port or 80, target


def parse_response(buffer: bytes | bytearray, eof: bool = False) -> tuple[int, int, bool] | None:
    """(status, bytes it spans, server closes) of the response at the start of buffer; None while incomplete.

    The body is delimited by Content-Length, by chunked transfer encoding or, with neither, by the
    server closing the connection (eof).
    """
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    status_line, *header_lines = bytes(buffer[:head_end]).split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length, chunked, close = None, False, status_line.startswith(b"HTTP/1.0")
    for line in header_lines:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            close = value == b"close"
    body_start = head_end + 4
    if status in (204, 304):
        end = body_start
    elif chunked:
        end = _chunked_end(buffer, body_start)
    elif length is not None:
        end = body_start + length if len(buffer) >= body_start + length else None
    else:
        end, close = (len(buffer) if eof else None), True
    return None if end is None else (status, end, close)


def _chunked_end(buffer: bytes | bytearray, position: int) -> int | None:
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2
        if size == 0:
            break
        position += size + 2
    if buffer[position:position + 2] == b"\r\n":
        return position + 2
    trailers_end = buffer.find(b"\r\n\r\n", position)
    return None if trailers_end < 0 else trailers_end + 4


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, load: OpenLoop):
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.started: float | None = None  # where the latency of the request in flight counts from

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, started: float, request: bytes) -> None:
        self.started = started
        self.load.sent += 1
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._take_response(eof=False)

    def eof_received(self) -> None:
        self._take_response(eof=True)

    def connection_lost(self, exc) -> None:
        self.load.connection_closed(self)

    def _take_response(self, eof: bool) -> None:
        response = parse_response(self.buffer, eof) if self.started is not None else None
        if response is None:
            return
        status, length, close = response
        del self.buffer[:length]
        started, self.started = self.started, None
        if close:
            self.transport.close()
        self.load.answered(self, started, status, reusable=not close)


class OpenLoop:
    """Poisson arrivals at `rate` for `seconds`, each on an idle connection or a new one up to the cap."""

    def __init__(self, host: str, port: int, requests: list[bytes], max_connections: int):
        self.host, self.port, self.requests, self.max_connections = host, port, requests, max_connections
        self.idle: list[Connection] = []
        self.waiting: deque[tuple[float, bytes]] = deque()  # arrivals waiting for a connection at the cap
        self.connections = 0  # open or opening
        self.opening: set[asyncio.Task] = set()  # the loop holds tasks only weakly
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.arrivals = self.sent = self.connection_errors = self.connections_opened = 0
        self.waited_for_connection = 0
        self.lateness: list[float] = []  # of each arrival's sending after its scheduled time
        self.schedule: list[float] = []  # arrival times, on time.monotonic()'s clock
        self.arrivals_over = False
        self.all_accounted = asyncio.Event()

    async def run(self, rate: float, seconds: float, seed: int, drain_timeout: float) -> dict:
        rng = random.Random(seed)
        loop = asyncio.get_running_loop()
        cpu_start, start = time.process_time(), time.monotonic()
        offset, offsets = rng.expovariate(rate), []
        while offset < seconds:
            offsets.append(offset)
            offset += rng.expovariate(rate)
        self.schedule = [start + offset for offset in offsets]
        # The loop's own timers tick in milliseconds (uvloop's, and epoll's timeout), which alone made
        # 1.3 ms of lag at p99 on an idle machine. A clock thread sleeps to each arrival with
        # nanosecond time.sleep and wakes the loop; the loop does all the sending.
        clock = threading.Thread(target=self._clock, args=(loop,), daemon=True)
        clock.start()
        try:
            await asyncio.wait_for(self.all_accounted.wait(), seconds + drain_timeout)
        except TimeoutError:
            pass
        duration = time.monotonic() - start
        cpu_seconds = time.process_time() - cpu_start
        for connection in list(self.idle):
            connection.transport.close()
        return self._summary(rate, seconds, duration, cpu_seconds)

    def _clock(self, loop: asyncio.AbstractEventLoop) -> None:
        for due in self.schedule:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            loop.call_soon_threadsafe(self._send_due)
        loop.call_soon_threadsafe(self._arrivals_over)

    def _send_due(self) -> None:
        due_by = time.monotonic() + EARLY_S
        while self.arrivals < len(self.schedule) and self.schedule[self.arrivals] <= due_by:
            scheduled, now = self.schedule[self.arrivals], time.monotonic()
            self.lateness.append(max(now - scheduled, 0.0))
            # An arrival sent early is timed from its sending, so latency is never understated.
            self.dispatch(min(scheduled, now), self.requests[self.arrivals % len(self.requests)])
            self.arrivals += 1

    def _arrivals_over(self) -> None:
        self._send_due()
        self.arrivals_over = True
        self._check_accounted()

    def dispatch(self, started: float, request: bytes) -> None:
        if self.idle:
            self.idle.pop().send(started, request)
        elif self.connections < self.max_connections:
            self._open(started, request)
        else:
            self.waited_for_connection += 1
            self.waiting.append((started, request))

    def _open(self, started: float, request: bytes) -> None:
        self.connections += 1
        task = asyncio.get_running_loop().create_task(self._connect(started, request))
        self.opening.add(task)
        task.add_done_callback(self.opening.discard)

    async def _connect(self, started: float, request: bytes) -> None:
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: Connection(self), self.host, self.port)
        except OSError:
            self.connections -= 1
            self.connection_errors += 1
            self._check_accounted()
            return
        self.connections_opened += 1
        connection.send(started, request)

    def answered(self, connection: Connection, started: float, status: int, reusable: bool) -> None:
        self.latencies.append(time.monotonic() - started)
        self.statuses[status] += 1
        if reusable:
            if self.waiting:
                connection.send(*self.waiting.popleft())
            else:
                self.idle.append(connection)
        self._check_accounted()

    def connection_closed(self, connection: Connection) -> None:
        self.connections -= 1
        if connection.started is not None:
            self.connection_errors += 1
        elif connection in self.idle:
            self.idle.remove(connection)
        if self.waiting:
            self._open(*self.waiting.popleft())
        self._check_accounted()

    def _check_accounted(self) -> None:
        if self.arrivals_over and len(self.latencies) + self.connection_errors == self.arrivals:
            self.all_accounted.set()

    def _summary(self, rate: float, seconds: float, duration: float, cpu_seconds: float) -> dict:
        latencies, lateness = sorted(self.latencies), sorted(self.lateness)
        ok = sum(count for status, count in self.statuses.items() if 200 <= status < 300)
        # The duration runs to the last answer (or the drain timeout), so late answers count in the throughput.
        return {
            "offered_rps": rate, "arrival_seconds": seconds, "duration_s": round(duration, 3),
            "throughput_rps": ok / duration, "arrivals": self.arrivals, "sent": self.sent,
            "answered": len(latencies), "ok": ok,
            "non_2xx": {str(status): count for status, count in sorted(self.statuses.items())
                        if not 200 <= status < 300},
            "connection_errors": self.connection_errors,
            "timeouts": self.arrivals - len(latencies) - self.connection_errors,
            "min_ms": percentile_ms(latencies, 0), "p50_ms": percentile_ms(latencies, 50),
            "p95_ms": percentile_ms(latencies, 95), "p99_ms": percentile_ms(latencies, 99),
            "max_ms": percentile_ms(latencies, 100),
            "mean_ms": round(sum(latencies) / len(latencies) * 1000, 3) if latencies else None,
            "connections_opened": self.connections_opened, "waited_for_connection": self.waited_for_connection,
            "late_arrivals": sum(lag > LATE_S for lag in lateness), "lateness_p99_ms": percentile_ms(lateness, 99),
            "max_lateness_ms": percentile_ms(lateness, 100),
            "cpu_seconds": round(cpu_seconds, 4),
        }


def percentile_ms(ordered: list[float], p: int) -> float | None:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    return round(ordered[max(math.ceil(len(ordered) * p / 100) - 1, 0)] * 1000, 3) if ordered else None


def post_request(host: str, port: int, target: str, body: bytes, content_type: str, token: str) -> bytes:
    """One HTTP/1.1 POST, as bytes on the wire."""
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{authorization}\r\n")
    return head.encode("latin-1") + body


def build_requests(host: str, port: int, target: str, body_paths: Sequence[str], content_type: str,
                   token: str) -> list[bytes]:
    return [post_request(host, port, target, Path(path).read_bytes(), content_type, token) for path in body_paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("bodies", nargs="+", help="request-body files, sent in rotation")
    parser.add_argument("--content-type", required=True)
    parser.add_argument("--rate", type=float, required=True, help="mean arrivals per second")
    parser.add_argument("--seconds", type=float, required=True, help="length of the arrival phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    parser.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT_S,
                        help="how long to wait for answers after the last arrival; still missing: timeouts")
    args = parser.parse_args()
    host, port, target = parse_url(args.url)
    requests = build_requests(host, port, target, args.bodies, args.content_type, os.environ.get(TOKEN_VARIABLE, ""))

    async def run() -> dict:
        load = OpenLoop(host, port, requests, args.max_connections)
        return await load.run(args.rate, args.seconds, args.seed, args.drain_timeout)

    print("ready", flush=True)  # the caller starts its CPU counters here, after interpreter start-up
    gc.disable()  # a collection pause would make arrivals late; a run leaves little garbage
    sys.setswitchinterval(0.0001)  # the clock thread gets the GIL within 0.1 ms of waking, not 5 ms
    print(json.dumps(uvloop.run(run())), flush=True)


def run_open_loop(url: str, body_paths: Sequence[str] | BodyFiles, content_type: str | None, token: str,
                  rate_rps: float, seconds: float, server_pids: list[int], seed: int = 0,
                  max_connections: int = MAX_CONNECTIONS, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> dict:
    """One open-loop run in a generator process; its summary plus the CPU shares of server and generator.

    body_paths may be a loadtest.load.BodyFiles, whose content type is used when content_type is None.
    Shares are of all cores' time from the generator's start of load to its exit.
    """
    from loadtest.load import tree_cpu_seconds  # imports torch: kept out of the generator process

    paths, content_type = _bodies(body_paths, content_type)
    parse_url(url)
    command = [sys.executable, "-m", "loadtest.openloop", "--rate", str(rate_rps), "--seconds", str(seconds),
               "--seed", str(seed), "--max-connections", str(max_connections),
               "--drain-timeout", str(drain_timeout_s), "--content-type", content_type, url, *paths]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, TOKEN_VARIABLE: token},
                                   stdout=subprocess.PIPE, stderr=stderr)
        process.stdout.readline()  # "ready", or nothing if it failed to start
        machine_before, server_before = psutil.cpu_times(), tree_cpu_seconds(server_pids)
        started = time.monotonic()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        server_cpu = tree_cpu_seconds(server_pids) - server_before
        machine_after = psutil.cpu_times()
        stdout = process.stdout.read().decode()
        process.stdout.close()
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"open-loop generator failed ({process.returncode}): {stderr.read().decode()}")
    result = json.loads(stdout.strip().splitlines()[-1])
    busy = sum(getattr(machine_after, f) - getattr(machine_before, f) for f in ("user", "system", "nice", "irq",
                                                                                  "softirq", "steal"))
    capacity = wall * psutil.cpu_count()
    run_cpu = result.pop("cpu_seconds")
    result.update(
        server_cpu_share=server_cpu / capacity,
        generator_cpu_seconds=usage.ru_utime + usage.ru_stime,  # the whole process, start-up included
        generator_run_cpu_seconds=run_cpu,                      # from the first arrival to the end of the drain
        generator_cpu_share=run_cpu / capacity,
        generator_cpu_us_per_request=run_cpu / max(result["sent"], 1) * 1e6,
        other_cpu_share=max(busy - server_cpu - run_cpu, 0.0) / capacity)
    return result


def _bodies(body_paths: Sequence[str] | BodyFiles, content_type: str | None) -> tuple[list[str], str]:
    if hasattr(body_paths, "paths"):
        return list(body_paths.paths), content_type or body_paths.content_type
    if content_type is None:
        raise ValueError("content_type is needed with plain body paths")
    return list(body_paths), content_type


def run_failures(run: dict, p99_limit_ms: float) -> list[str]:
    """Why a run does not meet the bound; empty if it does. Any failed request fails it, as in MLPerf.

    The generator's own lag is no reason: latency counts from the scheduled arrival, so lag only
    adds to the p99 being judged, and bunches arrivals the way a burst would.
    """
    failures = []
    if run["p99_ms"] is None or run["p99_ms"] > p99_limit_ms:
        failures.append("p99 over the limit")
    if run["non_2xx"] or run["connection_errors"] or run["timeouts"]:
        failures.append("failed requests")
    return failures


def latency_bounded_throughput(url: str, body_paths: Sequence[str] | BodyFiles, content_type: str | None,
                               token: str, p99_limit_ms: float, server_pids: list[int], start_rps: float,
                               seconds: float, steps: int = 7, pause_s: float = 2.0, resolution: float = 0.05,
                               seed: int = 0) -> dict:
    """The highest Poisson rate whose run meets the bound: p99 ≤ p99_limit_ms and no failed request
    (non-2xx, connection error or timeout).

    From start_rps, the rate grows by half while runs pass and halves while they fail; once one of
    each is known, it bisects between the highest passing and the lowest failing rate until they
    are within `resolution` of each other or `steps` runs are done.
    """
    runs, passing, failing = [], 0.0, None
    # A server that answered nothing in its closed-loop runs (a short smoke run catching it still
    # warming up) is searched from 1 request/s rather than from zero.
    rate = max(start_rps, 1.0)
    for step in range(steps):
        if step:
            time.sleep(pause_s)  # lets the server's queues drain before the next rate
        run = run_open_loop(url, body_paths, content_type, token, rate, seconds, server_pids, seed)
        run["failures"] = run_failures(run, p99_limit_ms)
        runs.append(run)
        if run["failures"]:
            failing = rate if failing is None else min(failing, rate)
        else:
            passing = max(passing, rate)
        if failing is None:
            rate = passing * 1.5
        elif passing == 0:
            rate = failing / 2
        elif failing - passing <= resolution * failing:
            break
        else:
            rate = (passing + failing) / 2
    at_result = next((run for run in runs if run["offered_rps"] == passing and not run["failures"]), None)
    return {"p99_limit_ms": p99_limit_ms, "rate_rps": passing, "runs": runs,
            "generator_cpu_share_at_result": at_result["generator_cpu_share"] if at_result else None,
            "generator_lag_p99_ms_at_result": at_result["lateness_p99_ms"] if at_result else None}


if __name__ == "__main__":
    main()
