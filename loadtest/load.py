"""Drive one server with wrk at one concurrency and measure what it and the load generator cost.

CPU share: the server's process tree (psutil, sampled before and after) and wrk's own usage
(its rusage from wait4), each as a fraction of the machine's CPU time over the run; what is
left is idle time or other programs on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from training.heldout import Sample

POST_SCRIPT = Path(__file__).with_name("post.lua")


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (`make bench` does this as root)")
    return wrk


class BodyFiles:
    """Request bodies written once to files for the wrk script to load."""

    def __init__(self, samples: list[Sample]):
        self.content_type = samples[0].content_type
        self.mean_bytes = sum(len(sample.body) for sample in samples) / len(samples)
        self._dir = tempfile.TemporaryDirectory(prefix="wrk-bodies-")
        self.paths = []
        for index, sample in enumerate(samples):
            path = Path(self._dir.name) / f"{index}.body"
            path.write_bytes(sample.body)
            self.paths.append(str(path))

    def close(self) -> None:
        self._dir.cleanup()


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    requests: int
    errors: int
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    server_cpu_share: float     # of all cores' time during the run
    loadgen_cpu_share: float
    other_cpu_share: float      # everything else busy on the machine (other users, the kernel)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def run_wrk(url: str, bodies: BodyFiles, token: str, concurrency: int, seconds: float, server_pids: list[int],
            mean_delay_ms: float = 0.0) -> LoadResult:
    """Closed loop at `concurrency` connections; with mean_delay_ms, each connection also waits."""
    env = {**os.environ, "WRK_AUTH_TOKEN": token, "WRK_MEAN_DELAY_MS": f"{mean_delay_ms:.3f}"}
    command = [require_wrk(), "-t1", f"-c{concurrency}", f"-d{max(int(round(seconds)), 1)}s", "--timeout", "10s",
               "-s", str(POST_SCRIPT), url, "--", bodies.content_type, *bodies.paths]
    machine_before, server_before = psutil.cpu_times(), tree_cpu_seconds(server_pids)
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    server_cpu = tree_cpu_seconds(server_pids) - server_before
    machine_after = psutil.cpu_times()
    stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr or stdout}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    busy = sum(getattr(machine_after, f) - getattr(machine_before, f) for f in ("user", "system", "nice", "irq",
                                                                                  "softirq", "steal"))
    capacity = wall * psutil.cpu_count()
    loadgen_cpu = usage.ru_utime + usage.ru_stime
    latency = {key: value / 1000 for key, value in summary["latency_us"].items()}
    errors = sum(summary["errors"].values())
    duration = summary["duration_us"] / 1e6
    return LoadResult(
        concurrency=concurrency, seconds=round(duration, 3), requests=summary["requests"], errors=errors,
        throughput_rps=(summary["requests"] - errors) / duration,
        p50_ms=latency["p50"], p95_ms=latency["p95"], p99_ms=latency["p99"], mean_ms=latency["mean"],
        max_ms=latency["max"], server_cpu_share=server_cpu / capacity, loadgen_cpu_share=loadgen_cpu / capacity,
        other_cpu_share=max(busy - server_cpu - loadgen_cpu, 0.0) / capacity)
