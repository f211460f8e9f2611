"""Soak a running server with mixed real requests and watch its memory.

    python -m loadtest.soak --requests 20000 --concurrency 8 --out loadtest/results/soak

Sends `--requests` real held-out samples round-robin over every registered model from
`--concurrency` threads (loopback only), and every `--sample-every` requests records each
model's worker RSS and the Java frontend's RSS and heap (jstat, old + young generation in
use). Writes soak.json and soak.png; exits 1 on any error or on worker RSS growth past
`--max-rss-growth` after the warm-up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import psutil

from deploy.client import DEFAULT_KEY_FILE, TorchServeClient
from training.catalog import CATALOG

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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
    snapshot = {"requests": done, "workers_rss_mb": {}}
    frontend = None
    for model in models:
        total = 0.0
        for pid in worker_pids(client, model):
            try:
                process = psutil.Process(pid)
                total += process.memory_info().rss / 2**20
                frontend = frontend or process.parent()
            except psutil.Error:
                pass
        snapshot["workers_rss_mb"][model] = total
    if frontend is not None:
        snapshot["frontend_rss_mb"] = frontend.memory_info().rss / 2**20
        snapshot["frontend_heap_mb"] = java_heap_used_mb(frontend.pid)
    return snapshot


def growth_after_warmup(series: list[float], warmup_points: int) -> float:
    """Relative growth from the first post-warm-up point to the largest later one."""
    after = [value for value in series[warmup_points:] if value > 0]
    return max(after) / after[0] - 1 if len(after) >= 2 else 0.0


def soak(client: TorchServeClient, total: int, concurrency: int, sample_every: int, warmup_fraction: float) -> dict:
    models = client.registered_models()
    plan = [(model, sample) for model in models for sample in CATALOG[model].heldout_requests(20)]
    jobs = itertools.islice(itertools.cycle(plan), total)
    statuses, latencies, lock = Counter(), [], threading.Lock()
    snapshots = [memory_snapshot(client, models, 0)]

    def send(job):
        model, sample = job
        started = time.perf_counter()
        try:
            status = client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type}).status_code
        except Exception:  # noqa: BLE001 — a dropped connection counts as an error, not a crash of the soak
            status = 0
        with lock:
            statuses[status] += 1
            latencies.append(time.perf_counter() - started)
            done = sum(statuses.values())
        if done % sample_every == 0:
            snapshot = memory_snapshot(client, models, done)
            with lock:
                snapshots.append(snapshot)

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, jobs))
    elapsed = time.monotonic() - started
    snapshots.append(memory_snapshot(client, models, total))
    snapshots.sort(key=lambda s: s["requests"])

    warmup_points = sum(1 for s in snapshots if s["requests"] < warmup_fraction * total)
    rss_growth = {model: growth_after_warmup([s["workers_rss_mb"][model] for s in snapshots], warmup_points)
                  for model in models}
    heap = [s.get("frontend_heap_mb") for s in snapshots]
    latencies.sort()
    return {
        "requests": total, "concurrency": concurrency, "models": models, "seconds": round(elapsed, 2),
        "requests_per_second": round(total / elapsed, 1),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "errors": total - statuses[200],
        "latency_ms": {f"p{q}": round(1000 * latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))], 2)
                       for q in (50, 95, 99)},
        "worker_rss_growth_after_warmup": rss_growth,
        "frontend_heap_mb": {"first_after_warmup": heap[warmup_points] if heap[warmup_points:] else None,
                             "last": heap[-1]},
        "snapshots": snapshots,
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snapshots = report["snapshots"]
    x = [s["requests"] for s in snapshots]
    fig, (workers_ax, frontend_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    for model in report["models"]:
        workers_ax.plot(x, [s["workers_rss_mb"][model] for s in snapshots], label=model)
    workers_ax.set(xlabel="requests", ylabel="MiB", title="worker RSS")
    workers_ax.legend()
    frontend_ax.plot(x, [s.get("frontend_rss_mb") for s in snapshots], label="RSS")
    if any(s.get("frontend_heap_mb") is not None for s in snapshots):
        frontend_ax.plot(x, [s.get("frontend_heap_mb") for s in snapshots], label="heap in use")
    frontend_ax.set(xlabel="requests", ylabel="MiB", title="Java frontend")
    frontend_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--management", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--warmup-fraction", type=float, default=0.1)
    parser.add_argument("--max-rss-growth", type=float, default=0.10)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/soak"))
    args = parser.parse_args(argv)
    for url in (args.url, args.management):
        if urlparse(url).hostname not in LOOPBACK:
            parser.error(f"{url}: the soak only targets loopback addresses")

    client = TorchServeClient(args.url, args.management, args.key_file)
    report = soak(client, args.requests, args.concurrency, args.sample_every, args.warmup_fraction)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out / "soak.png")
    growth = report["worker_rss_growth_after_warmup"]
    print(f"{report['requests']} requests in {report['seconds']} s ({report['requests_per_second']} req/s), "
          f"errors {report['errors']}, statuses {report['statuses']}, p50/p95/p99 {report['latency_ms']}, "
          f"worker RSS growth after warm-up {growth}, frontend heap {report['frontend_heap_mb']}")
    return 0 if report["errors"] == 0 and all(g <= args.max_rss_growth for g in growth.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
