"""Soak a server with mixed real requests, optionally with faults, and watch its memory.

    python -m loadtest.soak --requests 20000 --concurrency 8 --out loadtest/results/soak   # `make serve`'s
    python -m loadtest.soak --serve model_store --requests 100000 --kill-every 2000 --restart-at 50000 \
        --out loadtest/results/soak-faults      # its own server, worker kills and a frontend restart

Sends `--requests` real held-out samples round-robin over every registered model from
`--concurrency` threads (loopback only), and every `--sample-every` requests records each
model's worker RSS and the Java frontend's RSS and heap (jstat, old + young generation in use).

With `--serve STORE` the soak starts its own server (the production entrypoint) and can inject
faults: `--kill-every N` kill -9s a random worker every N requests, `--restart-at N` stops the
frontend gracefully and starts it again after N requests. The client then behaves as a
production client should: a request the service never accepted (connection refused while it
restarts) or one refused for a fault (a 5xx of a killed worker's batch, a connection closed by
the restart, a 503) is sent again after growing pauses, for up to `--retry-for` seconds. A request with no
answer within the client's timeout is **lost**: accepted and never answered. First-attempt
outcomes and final outcomes are both recorded.

Writes soak.json and soak.png; exits 1 on a lost request, on a final answer other than 200, or
on worker RSS growth past `--max-rss-growth` after the warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import psutil
import requests

from deploy.client import DEFAULT_KEY_FILE, TorchServeClient
from deploy.serve_settings import read_checksums
from training.catalog import CATALOG

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CLIENT_TIMEOUT_S = 30
RETRY_PAUSE_S = 0.5


def worker_pids(client: TorchServeClient, model: str) -> list[int]:
    return [w["pid"] for version in client.describe(model) for w in version["workers"] if w.get("pid")]


def java_heap_used_mb(pid: int) -> float | None:
    """Young + old generation in use, from `jstat -gc` (None where the JDK tools are absent)."""
    if shutil.which("jstat") is None:
        return None
    try:
        out = subprocess.run(["jstat", "-gc", str(pid)], capture_output=True, text=True, timeout=10).stdout.split()
        half = len(out) // 2
        columns = dict(zip(out[:half], out[half:]))
        return sum(float(columns[key]) for key in ("S0U", "S1U", "EU", "OU")) / 1024
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return None


def memory_snapshot(client: TorchServeClient, models: list[str], done: int) -> dict:
    snapshot = {"requests": done, "workers_rss_mb": {}, "worker_rss_mb_by_pid": {}}
    frontend = None
    for model in models:
        by_pid = {}
        for pid in worker_pids(client, model):
            try:
                process = psutil.Process(pid)
                by_pid[str(pid)] = process.memory_info().rss / 2**20
                frontend = frontend or process.parent()
            except psutil.Error:
                pass
        snapshot["workers_rss_mb"][model] = sum(by_pid.values())
        snapshot["worker_rss_mb_by_pid"][model] = by_pid
    if frontend is not None:
        snapshot["frontend_rss_mb"] = frontend.memory_info().rss / 2**20
        snapshot["frontend_heap_mb"] = java_heap_used_mb(frontend.pid)
    return snapshot


def growth_after_warmup(series: list[float], warmup_points: int) -> float:
    """Relative growth from the first post-warm-up point to the largest later one."""
    after = [value for value in series[warmup_points:] if value > 0]
    return max(after) / after[0] - 1 if len(after) >= 2 else 0.0


def worker_rss_growth(snapshots: list[dict], model: str, warmup_requests: float) -> float:
    """The largest growth of any one worker of `model` over its own life after the warm-up.

    Per process, because a killed worker's replacement starts small and grows to its working size:
    summed over a model's workers, that refill would read as a leak. A worker's first two points
    are its own warm-up."""
    series: dict[str, list[float]] = {}
    for snapshot in snapshots:
        if snapshot["requests"] >= warmup_requests:
            for pid, rss in snapshot.get("worker_rss_mb_by_pid", {}).get(model, {}).items():
                series.setdefault(pid, []).append(rss)
    return max((growth_after_warmup(values, 2) for values in series.values()), default=0.0)


@dataclass(frozen=True)
class Faults:
    kill_every: int = 0   # requests between worker kills; 0: none
    restart_at: int = 0   # requests after which the frontend restarts once; 0: never
    retry_for_s: float = 0.0  # how long a client keeps retrying one request; 0: one try


class FaultInjector:
    """Kills a random worker every `kill_every` completed requests and restarts the frontend once."""

    def __init__(self, server, client: TorchServeClient, models: list[str], faults: Faults, started: float):
        self.server, self.client, self.models, self.faults, self.started = server, client, models, faults, started
        self.events: list[dict] = []
        self.rng = random.Random(0)
        self.restarting = threading.Event()
        self.threads: list[threading.Thread] = []

    def after(self, done: int) -> None:
        if self.faults.restart_at and done == self.faults.restart_at:
            thread = threading.Thread(target=self._restart, daemon=True)
            self.threads.append(thread)
            thread.start()
        elif self.faults.kill_every and done % self.faults.kill_every == 0 and not self.restarting.is_set():
            self._kill(done)

    def _kill(self, done: int) -> None:
        model = self.rng.choice(self.models)
        try:
            pids = worker_pids(self.client, model)
            if pids:
                os.kill(self.rng.choice(pids), signal.SIGKILL)
                self.events.append({"kind": "worker kill", "model": model, "requests": done,
                                    "at_s": round(time.monotonic() - self.started, 3)})
        except (OSError, ValueError):
            pass  # a worker already gone, or the management API (or its key) missing during a restart

    def _restart(self) -> None:
        self.restarting.set()
        stopped = time.monotonic()
        self.server.stop()
        self.server.start()
        ready = self.server.wait_until_ready(timeout=240)
        self.events.append({"kind": "frontend restart", "requests": self.faults.restart_at,
                            "at_s": round(stopped - self.started, 3),
                            "back_after_s": round(time.monotonic() - stopped, 3), "ready": bool(ready)})
        self.restarting.clear()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


def send_with_retries(client: TorchServeClient, model: str, sample, retry_for_s: float) -> tuple[str, str, int]:
    """(first outcome, final outcome, tries); an outcome is a status, "lost" or an exception's name.

    A read timeout is a lost request and is never retried. Refused or closed connections and 5xx
    answers are tried again, after pauses growing from 0.25 s to 2 s, for up to retry_for_s."""
    first, pause, deadline, tries = None, 0.25, time.monotonic() + retry_for_s, 0
    while True:
        tries += 1
        try:
            outcome = client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type}).status_code
        except requests.exceptions.ReadTimeout:
            outcome = "lost"
        except (OSError, ValueError) as failure:  # refused or closed; or no key file while the server restarts
            outcome = type(failure).__name__
        first = outcome if first is None else first
        final = outcome == 200 or outcome == "lost" or (isinstance(outcome, int) and outcome < 500)
        if final or time.monotonic() + pause > deadline:
            return str(first), str(outcome), tries
        time.sleep(pause)
        pause = min(2 * pause, 2.0)


def soak(client: TorchServeClient, total: int, concurrency: int, sample_every: int, warmup_fraction: float,
         faults: Faults = Faults(), server=None) -> dict:
    models = client.registered_models()
    plan = [(model, sample) for model in models for sample in CATALOG[model].heldout_requests(20)]
    jobs = itertools.islice(itertools.cycle(plan), total)
    first_outcomes, final_outcomes, retried = Counter(), Counter(), Counter()
    latencies, timeline, lock = [], [], threading.Lock()
    snapshots = [memory_snapshot(client, models, 0)]
    started = time.monotonic()
    injector = FaultInjector(server, client, models, faults, started) if server is not None else None

    def send(job):
        model, sample = job
        sent = time.monotonic()
        first, final, tries = send_with_retries(client, model, sample, faults.retry_for_s)
        answered = time.monotonic()
        with lock:
            first_outcomes[first] += 1
            final_outcomes[final] += 1
            retried[tries - 1] += 1
            latencies.append(answered - sent)
            timeline.append((round(answered - started, 3), round(answered - sent, 4)))
            done = sum(final_outcomes.values())
        if injector is not None:
            injector.after(done)
        if done % sample_every == 0 and not (injector and injector.restarting.is_set()):
            # a sample during a restart finds no management API (or key file): that sample is skipped
            with contextlib.suppress(OSError, ValueError, psutil.Error):
                snapshot = memory_snapshot(client, models, done)
                snapshot["at_s"] = round(time.monotonic() - started, 3)
                with lock:
                    snapshots.append(snapshot)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, jobs))
    if injector is not None:
        injector.join()
    elapsed = time.monotonic() - started
    snapshots.append({**memory_snapshot(client, models, total), "at_s": round(elapsed, 3)})
    snapshots.sort(key=lambda s: s["requests"])

    warmup_points = sum(1 for s in snapshots if s["requests"] < warmup_fraction * total)
    rss_growth = {model: worker_rss_growth(snapshots, model, warmup_fraction * total) for model in models}
    heap = [s.get("frontend_heap_mb") for s in snapshots]
    latencies.sort()
    timeline.sort()
    return {
        "requests": total, "concurrency": concurrency, "models": models, "seconds": round(elapsed, 2),
        "requests_per_second": round(total / elapsed, 1),
        "faults": {**faults.__dict__, "events": injector.events if injector else []},
        "statuses": {code: count for code, count in sorted(final_outcomes.items())},
        "first_attempt_statuses": {code: count for code, count in sorted(first_outcomes.items())},
        "requests_by_retries": {str(count): number for count, number in sorted(retried.items())},
        "lost": final_outcomes["lost"],
        "errors": total - final_outcomes["200"],
        "latency_ms": {f"p{q}": round(1000 * latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))], 2)
                       for q in (50, 95, 99)},
        "max_latency_s": round(latencies[-1], 3),
        "worker_rss_growth_after_warmup": rss_growth,
        "frontend_heap_mb": {"first_after_warmup": heap[warmup_points] if heap[warmup_points:] else None,
                             "last": heap[-1]},
        "snapshots": snapshots,
        "timeline": timeline[:: max(len(timeline) // 5000, 1)],  # (answered at s, latency s), thinned
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snapshots = report["snapshots"]
    x = [s["requests"] for s in snapshots]
    fig, (workers_ax, frontend_ax, latency_ax) = plt.subplots(1, 3, figsize=(15, 3.5))
    for colour, model in zip(("C0", "C1", "C2", "C3", "C4"), report["models"]):
        lives: dict[str, list[tuple[int, float]]] = {}  # one line per worker process, from start to kill
        for snapshot in snapshots:
            for pid, rss in snapshot.get("worker_rss_mb_by_pid", {}).get(model, {}).items():
                if rss > 0:  # a killed worker not yet reaped reads 0
                    lives.setdefault(pid, []).append((snapshot["requests"], rss))
        for index, life in enumerate(lives.values()):
            workers_ax.plot(*zip(*life), color=colour, linewidth=1, label=model if index == 0 else None)
    workers_ax.set(xlabel="requests", ylabel="MiB", title="RSS of each worker process")
    workers_ax.legend()
    frontend_ax.plot(x, [s.get("frontend_rss_mb") for s in snapshots], label="RSS")
    if any(s.get("frontend_heap_mb") is not None for s in snapshots):
        frontend_ax.plot(x, [s.get("frontend_heap_mb") for s in snapshots], label="heap in use")
    frontend_ax.set(xlabel="requests", ylabel="MiB", title="Java frontend")
    frontend_ax.legend()
    if report.get("timeline"):
        seconds, latency = zip(*report["timeline"])
        latency_ax.scatter(seconds, [1000 * value for value in latency], s=1, alpha=0.3)
        latency_ax.set_yscale("log")
    for event in report["faults"]["events"]:
        latency_ax.axvline(event["at_s"], color="red" if event["kind"] == "frontend restart" else "grey",
                           linewidth=1.5 if event["kind"] == "frontend restart" else 0.5)
    latency_ax.set(xlabel="seconds", ylabel="ms", title="latency (grey: worker kills, red: restart)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--management", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE)
    parser.add_argument("--serve", type=Path, default=None, metavar="STORE",
                        help="start a server of our own on this model store (needed for faults)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--warmup-fraction", type=float, default=0.1)
    parser.add_argument("--max-rss-growth", type=float, default=0.10)
    parser.add_argument("--kill-every", type=int, default=0, help="kill -9 a random worker every N requests")
    parser.add_argument("--restart-at", type=int, default=0, help="restart the frontend after N requests")
    parser.add_argument("--retry-for", type=float, default=None,
                        help="seconds a client keeps retrying a refused request (default: 60 with faults, else 0)")
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/soak"))
    args = parser.parse_args(argv)
    for url in (args.url, args.management):
        if urlparse(url).hostname not in LOOPBACK:
            parser.error(f"{url}: the soak only targets loopback addresses")
    faulty = bool(args.kill_every or args.restart_at)
    if faulty and args.serve is None:
        parser.error("faults need --serve STORE: the soak only kills and restarts a server it started")
    retry_for = args.retry_for if args.retry_for is not None else (60.0 if faulty else 0.0)
    faults = Faults(args.kill_every, args.restart_at, retry_for)

    with contextlib.ExitStack() as stack:
        server = None
        if args.serve is not None:
            from loadtest.launcher import EntrypointServer

            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
            store = args.serve.resolve()
            models = sorted(name.removesuffix(".mar") for name in read_checksums(store) if name.endswith(".mar"))
            server = stack.enter_context(EntrypointServer(workdir, store, models).running())
            client = server.client()
        else:
            client = TorchServeClient(args.url, args.management, args.key_file)
        client.timeout = CLIENT_TIMEOUT_S
        report = soak(client, args.requests, args.concurrency, args.sample_every, args.warmup_fraction, faults, server)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out / "soak.png")
    growth = report["worker_rss_growth_after_warmup"]
    print(f"{report['requests']} requests in {report['seconds']} s ({report['requests_per_second']} req/s), "
          f"lost {report['lost']}, final statuses {report['statuses']}, first attempts "
          f"{report['first_attempt_statuses']}, p50/p95/p99 {report['latency_ms']}, "
          f"{len(report['faults']['events'])} faults, worker RSS growth after warm-up {growth}, "
          f"frontend heap {report['frontend_heap_mb']}")
    return 0 if report["errors"] == 0 and all(g <= args.max_rss_growth for g in growth.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
