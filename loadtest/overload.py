"""Overload: ten times the peak's connections against one model, one lever at a time.

    python -m loadtest.overload --model mnist --out loadtest/results/overload

For each lever, a fresh server (the production entrypoint, and the gateway where the lever has
one) runs three rounds of three phases; this machine drifts, so each round's overload is
compared with the normal run just before it, and the median round is reported:
- normal: wrk at the peak concurrency (64 connections), its goodput the reference;
- overload: wrk at 10x those connections, a closed loop that sends again the moment it is
  answered, so every refusal comes straight back as a new request;
- recovery: after the load stops, the seconds until a polite probe's requests are answered again
  at the normal probe latency.
All along, the probe sends one request every 20 ms and records what a single client sees (answer
or refusal, latency, Retry-After), and the frontend's RSS and heap are sampled every second.
Goodput is answers with status 200 per second. All traffic goes to 127.0.0.1 and is bounded in
time. Writes overload.json and overload.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import requests

from deploy.client import read_keys
from loadtest.launcher import EntrypointServer, GatewayProcess
from loadtest.load import BodyFiles, run_wrk
from loadtest.openloop import percentile_ms
from loadtest.soak import java_heap_used_mb
from training.archive import archive
from training.catalog import CATALOG, REPO

PEAK_CONCURRENCY = 64
OVERLOAD_FACTOR = 10
PROBE_INTERVAL_S = 0.02
ROUNDS = 3
GATEWAY_KEY = "overload-client-key"


@dataclass(frozen=True)
class Lever:
    name: str
    job_queue_size: int | None = None   # per model (SERVE_JOB_QUEUE_SIZE); None: config.properties' 256
    gateway_admit: int = 0              # the gateway's own cap per model (0: none)
    gateway: bool = False               # the pod's gateway (nginx) in front


LEVERS = (
    Lever("TorchServe alone, job queue 256 (as shipped)"),
    Lever("TorchServe alone, job queue 32", job_queue_size=32),
    Lever("TorchServe alone, job queue 2048", job_queue_size=2048),
    Lever("gateway in front, TorchServe's queue refuses (as shipped in the pod)", gateway=True),
    Lever("gateway in front, admitting 64 per model", gateway=True, gateway_admit=64),
)


class Probe:
    """One polite client: a request every PROBE_INTERVAL_S, each outcome with its time."""

    def __init__(self, url: str, body: bytes, content_type: str, token: str):
        self.url, self.body = url, body
        self.headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
        self.outcomes: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(PROBE_INTERVAL_S):
                sent = time.monotonic()
                try:
                    response = session.post(self.url, data=self.body, headers=self.headers, timeout=30)
                    status, retry_after = response.status_code, response.headers.get("Retry-After")
                except requests.RequestException as failure:
                    status, retry_after = type(failure).__name__, None
                self.outcomes.append({"sent": sent, "status": status, "seconds": time.monotonic() - sent,
                                      "retry_after": retry_after})

    def between(self, start: float, end: float) -> list[dict]:
        return [outcome for outcome in self.outcomes if start <= outcome["sent"] < end]


def frontend_memory(server: EntrypointServer) -> dict:
    """The Java frontend's RSS and heap in use."""
    java = server.frontend()
    if java is None:
        return {}
    return {"rss_mb": round(java.memory_info().rss / 2**20, 1), "heap_mb": java_heap_used_mb(java.pid)}


def recovery_seconds(probe: Probe, load_end: float, normal_p50_s: float) -> float | None:
    """From the end of the load to the first of five answered probes in a row at most 2x the normal p50."""
    after = probe.between(load_end, float("inf"))
    for index in range(len(after) - 4):
        window = after[index:index + 5]
        if all(o["status"] == 200 and o["seconds"] <= 2 * normal_p50_s for o in window):
            return round(window[0]["sent"] - load_end, 3)
    return None


def measure_lever(lever: Lever, name: str, store: Path, work: Path, seconds: float, recovery_window_s: float) -> dict:
    bodies = BodyFiles(CATALOG[name].heldout_requests(64))
    sample = CATALOG[name].heldout_requests(1)[0]
    settings = {"SERVE_JOB_QUEUE_SIZE": str(lever.job_queue_size)} if lever.job_queue_size else {}
    rounds, samples = [], []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(EntrypointServer(work / "server", store, [name], settings).running())
        url, token = f"{server.inference_url}{CATALOG[name].endpoint}", read_keys(server.key_file)["inference"]
        pids = [server.process.pid]
        if lever.gateway:
            gateway = stack.enter_context(GatewayProcess(
                work / "gateway", server, [GATEWAY_KEY],
                settings={"SERVE_GATEWAY_ADMIT_PER_MODEL": str(lever.gateway_admit)}).running())
            url, token, pids = f"{gateway.url}{CATALOG[name].endpoint}", GATEWAY_KEY, [*pids, gateway.process.pid]
        run_wrk(url, bodies, token, PEAK_CONCURRENCY, 2, pids)  # warm-up
        probe = stack.enter_context(Probe(url, sample.body, sample.content_type, token))
        memory = {"before": frontend_memory(server)}
        sampler_stop = threading.Event()

        def sample_memory() -> None:
            while not sampler_stop.wait(1.0):
                samples.append(frontend_memory(server))

        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        for _ in range(ROUNDS):
            normal_start = time.monotonic()
            normal = run_wrk(url, bodies, token, PEAK_CONCURRENCY, seconds, pids).as_dict()
            time.sleep(1)
            overload_start = time.monotonic()
            overload = run_wrk(url, bodies, token, OVERLOAD_FACTOR * PEAK_CONCURRENCY, seconds, pids).as_dict()
            load_end = time.monotonic()
            time.sleep(recovery_window_s)
            rounds.append({"normal": normal, "overload": overload, "goodput_share":
                           overload["throughput_rps"] / normal["throughput_rps"],
                           "refusals_per_second": overload["errors"] / overload["seconds"],
                           "times": (normal_start, overload_start, load_end)})
        sampler_stop.set()
        sampler.join()
        memory["after"] = frontend_memory(server)
        stack.pop_all().close()  # stops probe, gateway and server

    for result in rounds:
        normal_start, overload_start, load_end = result.pop("times")
        normal_p50_s = statistics.median(o["seconds"] for o in probe.between(normal_start, overload_start - 1)
                                         if o["status"] == 200)
        result["recovery_s"] = recovery_seconds(probe, load_end, normal_p50_s)
        result["probe_normal_p50_ms"] = round(1000 * normal_p50_s, 2)
        during = probe.between(overload_start, load_end)
        refused = [o for o in during if o["status"] == 503]
        answered = [o for o in during if o["status"] == 200]
        result["probe_during_overload"] = {
            "sent": len(during), "answered": len(answered), "refused": len(refused),
            "other": sorted({str(o["status"]) for o in during} - {"200", "503"}),
            "answered_p50_ms": percentile_ms(sorted(o["seconds"] for o in answered), 50),
            "answered_p99_ms": percentile_ms(sorted(o["seconds"] for o in answered), 99),
            "refused_p50_ms": percentile_ms(sorted(o["seconds"] for o in refused), 50),
            "refused_p99_ms": percentile_ms(sorted(o["seconds"] for o in refused), 99),
            "refusals_with_retry_after": sum(o["retry_after"] is not None for o in refused)}
    median = sorted(rounds, key=lambda result: result["goodput_share"])[len(rounds) // 2]
    recoveries = [result["recovery_s"] for result in rounds]
    return {
        "lever": asdict(lever), "rounds": rounds, "median_round": rounds.index(median),
        "goodput_share": median["goodput_share"], "goodput_shares": [r["goodput_share"] for r in rounds],
        "normal_rps": median["normal"]["throughput_rps"], "overload_goodput_rps": median["overload"]["throughput_rps"],
        "refusals_per_second": median["refusals_per_second"],
        "recovery_s_worst": None if None in recoveries else max(recoveries),
        "memory": {**memory, "peak": {"rss_mb": max((s.get("rss_mb") or 0 for s in samples), default=None),
                                      "heap_mb": max((s.get("heap_mb") or 0 for s in samples), default=None)}},
    }


def markdown(report: dict) -> str:
    lines = [f"# Overload: {report['model']}, {OVERLOAD_FACTOR}x {PEAK_CONCURRENCY} connections "
             f"({report['seconds']} s a phase, median of {ROUNDS} rounds, {report['date']})", "",
             "| lever | normal req/s | goodput under overload | share (3 rounds) | refusals/s "
             "| probe refused p50/p99 ms | Retry-After | recovery s (worst) | frontend RSS MiB before/peak/after |",
             "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for result in report["levers"]:
        probe = result["rounds"][result["median_round"]]["probe_during_overload"]
        memory = result["memory"]
        shares = ", ".join(f"{share:.2f}" for share in result["goodput_shares"])
        lines.append(
            f"| {result['lever']['name']} | {result['normal_rps']:,.0f} | {result['overload_goodput_rps']:,.0f} "
            f"| {result['goodput_share']:.2f} ({shares}) | {result['refusals_per_second']:,.0f} "
            f"| {probe['refused_p50_ms']} / {probe['refused_p99_ms']} "
            f"| {probe['refusals_with_retry_after']}/{probe['refused']} | {result['recovery_s_worst']} "
            f"| {memory['before'].get('rss_mb')} / {memory['peak']['rss_mb']} / {memory['after'].get('rss_mb')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist", choices=sorted(CATALOG))
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--recovery-window", type=float, default=5)
    parser.add_argument("--levers", type=int, nargs="+", default=None, help="indices into LEVERS (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "overload")
    args = parser.parse_args(argv)
    levers = [LEVERS[index] for index in args.levers] if args.levers is not None else list(LEVERS)
    with tempfile.TemporaryDirectory(prefix="overload-") as work_dir:
        work = Path(work_dir)
        store = work / "store"
        archive(args.model, args.artifacts, store)
        results = []
        for index, lever in enumerate(levers):
            result = measure_lever(lever, args.model, store, work / f"lever{index}", args.seconds,
                                   args.recovery_window)
            print(f"{lever.name}: goodput {result['overload_goodput_rps']:,.0f} of {result['normal_rps']:,.0f} "
                  f"req/s ({result['goodput_shares']}), {result['refusals_per_second']:,.0f} refusals/s, "
                  f"recovery {result['recovery_s_worst']} s", flush=True)
            results.append(result)
    report = {"model": args.model, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": args.seconds,
              "machine": {"cores": psutil.cpu_count()}, "levers": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "overload.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
