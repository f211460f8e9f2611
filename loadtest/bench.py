"""One benchmark run on this machine: in-process ceiling vs this service (int8 and fp32) vs stock
TorchServe vs LitServe's best configuration, each model served alone.

    python -m loadtest.bench --mode full  --out loadtest/results          # README numbers (~15 min per model)
    python -m loadtest.bench --mode quick --out loadtest/results/quick    # smoke run (~3 min per model)

Per model:
  in-process   the handler driven directly at the batch sizes the server forms (the ceiling), and
               microseconds per example of each stage (decode, preprocess, model, postprocess)
  ours         this service with the shipped (int8 where it passed the gate) model; fp32: the same
               with the fp32 model; previous (--previous DIR): the same serving DIR's models
  stock        TorchServe's defaults (loadtest/servers.py), our handler and archive
  litserve     a small sweep that includes LitServe's defaults; the best peak is the baseline
Each server: a closed-loop curve (wrk at several concurrencies, the same real held-out
requests) and, for ours, stock and LitServe, the latency-bounded throughput of MLPerf's server
scenario: the highest rate of open-loop Poisson arrivals (loadtest/openloop.py) whose p99 stays
under the model's bound (catalog `latency_bound_ms`). Ours also gets an open-loop run at 70 % of
its peak, the pod's gateway in front of it, and long requests where the model has them. Then a
cold start of this service with every model in one server, by phase (loadtest/coldstart.py).
Then the protocols: /predictions, Open Inference Protocol REST and gRPC against one server of ours
per model that speaks v2 (loadtest/transports.py); `--transports-only` measures just these into an
existing bench.json.
A generator (catalog kind) gets none of the above but its own figures, `generation`: images per
second at 1 and 16 images per request, served by ours (closed loop at each concurrency level)
against its handler driven in process in the served layout; `--generation-only` measures just
these into an existing bench.json.
`--servers ours previous` (any subset) measures only those servers, for a quick comparison.
Every ratio in bench.json is computed here; bench.md and the README's table come from bench.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import platform
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtest import coldstart, transports
from loadtest.inprocess import inprocess_throughput
from loadtest.launcher import GatewayProcess
from loadtest.load import BodyFiles, require_wrk, run_wrk
from loadtest.openloop import latency_bounded_throughput, run_open_loop
from loadtest.servers import LitServeConfig, build_store, litserve, torchserve
from loadtest.stages import stage_microseconds
from training.catalog import CATALOG, REPO
from training.optimize import FP32

SERVERS = ("ours", "fp32", "previous", "stock", "litserve")  # "previous" only with --previous
BASELINES = ("inprocess", "fp32", "previous", "stock", "litserve")  # every ratio: ours' peak over each baseline's
BOUNDED = ("ours", "stock", "litserve")  # servers whose latency-bounded throughput is measured
PACED_FRACTION = 0.7


@dataclass(frozen=True)
class Mode:
    seconds: float               # per concurrency level, and per open-loop run
    levels: tuple[int, ...]      # concurrent connections
    inprocess_seconds: float
    all_process_layouts: bool    # also 1 process x 2 threads and 2 x 1 at the server's batch size
    door_rounds: int             # alternating direct / through-the-gateway runs at the peak concurrency
    bound_steps: int             # open-loop runs of each latency-bounded search
    full_litserve_sweep: bool    # every configuration below, else LitServe's defaults and ours
    cold_start_runs: int
    transport_rounds: int        # alternating rounds of the three protocols


MODES = {
    "quick": Mode(seconds=2, levels=(1, 8), inprocess_seconds=1, all_process_layouts=False, door_rounds=1,
                  bound_steps=3, full_litserve_sweep=False, cold_start_runs=1, transport_rounds=1),
    "full": Mode(seconds=10, levels=(1, 4, 8, 16, 32, 64), inprocess_seconds=5, all_process_layouts=True,
                 door_rounds=3, bound_steps=6, full_litserve_sweep=True, cold_start_runs=3, transport_rounds=3),
}
TRANSPORT_CONCURRENCY = 16  # near ours' closed-loop peak for every model (bench.md's curves)
IMAGES_PER_REQUEST = (1, 16)  # a generator's figures: one image per request, and a grid's worth
GATEWAY_KEY = "bench-client-key"


def machine() -> dict:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    return {"cores": psutil.cpu_count(), "cpu_model": cpu_model, "memory_gib": round(psutil.virtual_memory().total
                                                                                      / 2**30, 1),
            "platform": platform.platform()}


def served_batching(name: str) -> tuple[int, int, float]:
    """(batch size, workers, batch delay ms) of the shipped model-config."""
    config = CATALOG[name].model_config()
    return int(config.get("batchSize", 1)), int(config.get("minWorkers", 1)), float(config.get("maxBatchDelay", 0))


def litserve_sweep(name: str, full: bool) -> list[LitServeConfig]:
    """LitServe's defaults first, then the layouts and batching this service uses."""
    batch, workers, delay = served_batching(name)
    ours = LitServeConfig(workers=workers, batch_size=batch, batch_delay_ms=delay, torch_threads=1)
    if not full:
        return [LitServeConfig(), ours]
    return [LitServeConfig(), LitServeConfig(workers=workers, torch_threads=1), ours,
            dataclasses.replace(ours, api_servers=1)]


def measure_inprocess(name: str, artifacts: Path, mode: Mode) -> list[dict]:
    batch, workers, _ = served_batching(name)
    layouts = {(1, 1, 1), (batch, workers, 1)}
    if mode.all_process_layouts:
        layouts |= {(batch, 1, 1), (batch, 2, 1), (batch, 1, 2)}
    return [{"batch_size": b, "processes": p, "threads": t,
             "throughput_rps": inprocess_throughput(name, artifacts / name, b, p, t, mode.inprocess_seconds)}
            for b, p, t in sorted(layouts)]


def measure_levels(server, name: str, bodies: BodyFiles, mode: Mode, levels=None) -> list[dict]:
    run_wrk(server.url(name), bodies, server.token, max(mode.levels), 1, server.pids)  # warm-up, not recorded
    return [run_wrk(server.url(name), bodies, server.token, level, mode.seconds, server.pids).as_dict()
            for level in levels or mode.levels]


def peak(levels: list[dict]) -> dict:
    return max(levels, key=lambda level: level["throughput_rps"])


def latency_bounded(server, name: str, bodies: BodyFiles, levels: list[dict], mode: Mode) -> dict:
    return latency_bounded_throughput(server.url(name), bodies.paths, bodies.content_type, server.token,
                                      CATALOG[name].latency_bound_ms, server.pids,
                                      start_rps=peak(levels)["throughput_rps"], seconds=mode.seconds,
                                      steps=mode.bound_steps)


def paced_tail(server, name: str, bodies: BodyFiles, levels: list[dict], mode: Mode) -> dict:
    """Open-loop Poisson arrivals at 70 % of the closed-loop peak: the tail a server shows when it
    is busy but not saturated."""
    target = PACED_FRACTION * peak(levels)["throughput_rps"]
    result = run_open_loop(server.url(name), bodies.paths, bodies.content_type, server.token, target, mode.seconds,
                           server.pids)
    return {**result, "fraction_of_peak": PACED_FRACTION}


def through_the_door(server, gateway: GatewayProcess, name: str, bodies: BodyFiles, levels: list[dict],
                     mode: Mode) -> dict:
    """The pod's front door (nginx gateway) vs TorchServe directly, alternating at this service's peak
    concurrency so drift on a noisy machine hits both alike; medians over the rounds."""
    concurrency = peak(levels)["concurrency"]
    gateway_url = f"{gateway.url}{CATALOG[name].endpoint}"
    pids = [*server.pids, gateway.process.pid]
    rounds = [{"direct": run_wrk(server.url(name), bodies, server.token, concurrency, mode.seconds, pids).as_dict(),
               "gateway": run_wrk(gateway_url, bodies, GATEWAY_KEY, concurrency, mode.seconds, pids).as_dict()}
              for _ in range(mode.door_rounds)]
    median = {side: statistics.median(r[side]["throughput_rps"] for r in rounds) for side in ("direct", "gateway")}
    return {"concurrency": concurrency, "direct_rps": median["direct"], "gateway_rps": median["gateway"],
            "gateway_over_direct": median["gateway"] / median["direct"], "rounds": rounds}


def long_documents(server, name: str, bodies: BodyFiles, levels: list[dict], mode: Mode) -> dict:
    """Long requests alone: latency at concurrency 1, throughput at the short requests' peak concurrency."""
    alone = run_wrk(server.url(name), bodies, server.token, 1, mode.seconds, server.pids).as_dict()
    loaded = run_wrk(server.url(name), bodies, server.token, peak(levels)["concurrency"], mode.seconds,
                     server.pids).as_dict()
    return {"body_bytes_mean": bodies.mean_bytes, "alone": alone, "at_peak_concurrency": loaded}


def measure_torchserve(label: str, name: str, source: Path, workdir: Path, bodies: BodyFiles,
                       long_bodies: BodyFiles | None, mode: Mode) -> dict:
    store = build_store(source, workdir / "store", [name], stock=label == "stock",
                        variant=FP32 if label == "fp32" else None)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(torchserve(label, workdir, store, [name], stock=label == "stock"))
        levels = measure_levels(server, name, bodies, mode)
        figures = {"cold_start_s": server.cold_start_s, "levels": levels}
        if label in BOUNDED:
            figures["latency_bounded"] = latency_bounded(server, name, bodies, levels, mode)
        if label == "ours":
            figures["paced_at_70pct_of_peak"] = paced_tail(server, name, bodies, levels, mode)
            gateway = stack.enter_context(GatewayProcess(workdir / "gateway", server.entrypoint,
                                                         [GATEWAY_KEY]).running())
            figures["through_gateway"] = through_the_door(server, gateway, name, bodies, levels, mode)
        # Last: a loaded run of long requests leaves a backlog that the next measurement would wait on.
        if long_bodies and label in ("ours", "previous"):
            figures["long_documents"] = long_documents(server, name, long_bodies, levels, mode)
    return figures


def measure_litserve(name: str, artifacts: Path, workdir: Path, bodies: BodyFiles, mode: Mode) -> dict:
    """Each sweep configuration at the two highest concurrencies; the best then gets the whole curve
    and its latency-bounded throughput."""
    sweep = []
    for index, config in enumerate(litserve_sweep(name, mode.full_litserve_sweep)):
        with litserve(workdir / f"sweep{index}", artifacts, name, config) as server:
            levels = measure_levels(server, name, bodies, mode, levels=sorted(mode.levels)[-2:])
            sweep.append({"config": dataclasses.asdict(config), "label": config.label,
                          "peak_rps": peak(levels)["throughput_rps"], "levels": levels})
    best = max(sweep, key=lambda point: point["peak_rps"])
    with litserve(workdir / "best", artifacts, name, LitServeConfig(**best["config"])) as server:
        levels = measure_levels(server, name, bodies, mode)
        return {"cold_start_s": server.cold_start_s, "config": best["label"], "sweep": sweep, "levels": levels,
                "latency_bounded": latency_bounded(server, name, bodies, levels, mode)}


def measure_model(name: str, artifacts: Path, mode: Mode, workdir: Path, previous: Path | None,
                  servers: tuple[str, ...] = SERVERS) -> dict:
    entry = CATALOG[name]
    batch, _, _ = served_batching(name)
    bodies = BodyFiles(entry.heldout_requests(64))
    long_requests = entry.long_requests(16)
    long_bodies = BodyFiles(long_requests) if long_requests else None
    figures = {"unit": entry.unit, "latency_bound_ms": entry.latency_bound_ms,
               "inprocess": measure_inprocess(name, artifacts, mode),
               "stages_us": stage_microseconds(name, artifacts / name, batch), "servers": {}}
    sources = {label: artifacts for label in ("ours", "fp32", "stock") if label in servers}
    if "previous" in servers and previous and (previous / name / "metadata.json").exists():
        sources["previous"] = previous
    try:
        for label, source in sources.items():
            figures["servers"][label] = measure_torchserve(label, name, source, workdir / label, bodies,
                                                           long_bodies, mode)
        if "litserve" in servers:
            figures["servers"]["litserve"] = measure_litserve(name, artifacts, workdir / "litserve", bodies, mode)
    finally:
        for files in (bodies, long_bodies):
            if files:
                files.close()
    return figures


def peak_throughput(figures: dict, baseline: str) -> float:
    if baseline == "inprocess":
        return max(row["throughput_rps"] for row in figures["inprocess"])
    return peak(figures["servers"][baseline]["levels"])["throughput_rps"]


def ratios(models: dict) -> dict:
    """Every model over every baseline it was measured against, from the same run:
    {"mnist_ours_over_stock": 1.5, "mnist_bounded_ours_over_litserve": 2.0, ...}."""
    result = {}
    for name, figures in models.items():
        servers = figures["servers"]
        ours = peak_throughput(figures, "ours")
        for baseline in BASELINES:
            if baseline == "inprocess" or baseline in servers:
                theirs = peak_throughput(figures, baseline)  # 0: it answered nothing (a smoke run's warm-up)
                result[f"{name}_ours_over_{baseline}"] = ours / theirs if theirs else None
        bounded = servers["ours"]["latency_bounded"]["rate_rps"]
        for baseline in (label for label in BOUNDED[1:] if label in servers):
            theirs = servers[baseline]["latency_bounded"]["rate_rps"]  # 0: no rate kept the bound
            result[f"{name}_bounded_ours_over_{baseline}"] = bounded / theirs if theirs else None
        result[f"{name}_gateway_over_direct"] = servers["ours"]["through_gateway"]["gateway_over_direct"]
    return result


def measure_generation(name: str, artifacts: Path, mode: Mode, workdir: Path) -> dict:
    """Images per second of generator `name` at each of IMAGES_PER_REQUEST: ours over HTTP at each
    concurrency level vs its handler in process (the served batch size and workers, one thread each)."""
    batch, workers, _ = served_batching(name)
    store = build_store(artifacts, workdir / "store", [name], stock=False)
    figures = {}
    with torchserve("ours", workdir, store, [name]) as server:
        for images in IMAGES_PER_REQUEST:
            samples = CATALOG[name].training().heldout_requests(64, images_per_request=images)
            with contextlib.closing(BodyFiles(samples)) as bodies:
                levels = measure_levels(server, name, bodies, mode)
            inprocess = images * inprocess_throughput(name, artifacts / name, batch, workers, 1,
                                                      mode.inprocess_seconds, samples)
            best = peak(levels)
            served = images * best["throughput_rps"]
            figures[str(images)] = {
                "levels": levels, "peak_images_per_s": served, "peak_concurrency": best["concurrency"],
                "p50_ms_at_concurrency_1": levels[0]["p50_ms"], "inprocess_images_per_s": inprocess,
                "served_over_inprocess": served / inprocess}
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cold_start_s": server.cold_start_s, "batch_size": batch, "workers": workers,
            "images_per_request": figures}


def measure_transports(models: list[str], artifacts: Path, mode: Mode, workdir: Path) -> dict:
    """Each model's three protocols against one server of ours (the shipped model) of its own."""
    results = {}
    for name in (name for name in models if CATALOG[name].speaks_v2):
        store = build_store(artifacts, workdir / name / "store", [name], stock=False)
        with torchserve("ours", workdir / name, store, [name]) as server:
            results[name] = transports.compare(server, name, TRANSPORT_CONCURRENCY, mode.seconds,
                                               mode.transport_rounds, workdir / name / "requests")
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "generator": "loadtest/transports.py: asyncio closed loop, one example per request", "models": results}


def run(models: list[str], artifacts: Path, mode_name: str, workdir: Path, seconds: float | None = None,
        levels: tuple[int, ...] | None = None, previous: Path | None = None, cold_start: bool = True,
        servers: tuple[str, ...] = SERVERS, transports: bool = True) -> dict:
    """`servers`: the servers to measure ("ours" always); the README's run measures them all, with
    the cold start and the protocols."""
    mode = MODES[mode_name]
    mode = dataclasses.replace(mode, seconds=seconds or mode.seconds, levels=tuple(levels or mode.levels))
    require_wrk()
    generators = [name for name in models if CATALOG[name].is_generator]
    servers = ("ours", *(label for label in servers if label != "ours"))
    results = {name: measure_model(name, artifacts, mode, workdir / name, previous, servers) for name in models
               if name not in generators}
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "mode": mode_name, "machine": machine(),
              "load_generator": "wrk -t1 (loadtest/post.lua), closed loop; loadtest/openloop.py, open loop",
              "seconds_per_level": mode.seconds, "ratios": ratios(results),
              "not_measured": sorted(set(CATALOG) - set(models)), "models": results}
    if cold_start:
        store = build_store(artifacts, workdir / "cold-start" / "store", models, stock=False)
        report["cold_start"] = coldstart.measure_runs(store, models, workdir / "cold-start", mode.cold_start_runs)
    if transports:
        report["transports"] = measure_transports(models, artifacts, mode, workdir / "transports")
    report["generation"] = {name: measure_generation(name, artifacts, mode, workdir / name) for name in generators}
    return report


def markdown(report: dict) -> str:
    lines = [f"Benchmark ({report['mode']} mode), {report['date']}, {report['machine']['cores']} cores "
             f"{report['machine']['cpu_model']}; load generators: {report['load_generator']}; "
             f"{report['seconds_per_level']} s per point. Each model served alone.", ""]
    lines += ["| model | server | peak req/s | at concurrency | p50 ms | p95 ms | p99 ms | server CPU | wrk CPU |"
              " vs in-process |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        ceiling = max(figures["inprocess"], key=lambda row: row["throughput_rps"])
        lines.append(f"| {name} | in-process (batch {ceiling['batch_size']}, {ceiling['processes']} proc x "
                     f"{ceiling['threads']} thr) | {ceiling['throughput_rps']:.0f} | | | | | | | 1.00 |")
        for label in (label for label in SERVERS if label in figures["servers"]):
            top = peak(figures["servers"][label]["levels"])
            lines.append(f"| {name} | {label} | {top['throughput_rps']:.0f} | {top['concurrency']} | "
                         f"{top['p50_ms']:.1f} | {top['p95_ms']:.1f} | {top['p99_ms']:.1f} | "
                         f"{top['server_cpu_share']:.0%} | {top['loadgen_cpu_share']:.1%} | "
                         f"{top['throughput_rps'] / ceiling['throughput_rps']:.2f} |")
    lines += ["", "| model | server | concurrency | req/s | p50 ms | p95 ms | p99 ms | p99 / p50 | errors |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        for label in (label for label in SERVERS if label in figures["servers"]):
            for level in figures["servers"][label]["levels"]:
                lines.append(f"| {name} | {label} | {level['concurrency']} | {level['throughput_rps']:.0f} | "
                             f"{level['p50_ms']:.1f} | {level['p95_ms']:.1f} | {level['p99_ms']:.1f} | "
                             f"{level['p99_ms'] / level['p50_ms']:.1f} | {level['errors']} |")
    lines += ["", "| model | latency bound (p99) | ours req/s | stock req/s | LitServe (best) req/s | "
              "open-loop generator CPU at ours' rate |", "|---|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        rates = [f"{figures['servers'][label]['latency_bounded']['rate_rps']:.0f}" if label in figures["servers"]
                 else "not measured" for label in BOUNDED]
        generator = figures["servers"]["ours"]["latency_bounded"]["generator_cpu_share_at_result"]
        lines.append(f"| {name} | {figures['latency_bound_ms']:g} ms | {' | '.join(rates)} | "
                     f"{'no rate passed' if generator is None else f'{generator:.1%}'} |")
    lines += ["", "| model | stage | µs per example |", "|---|---|---:|"]
    for name, figures in report["models"].items():
        lines += [f"| {name} | {stage} | {micros:.0f} |" for stage, micros in figures["stages_us"].items()]
    lines += ["", "| model | in-process batch | processes x threads | req/s |", "|---|---:|---|---:|"]
    for name, figures in report["models"].items():
        lines += [f"| {name} | {row['batch_size']} | {row['processes']} x {row['threads']} | "
                  f"{row['throughput_rps']:.0f} |" for row in figures["inprocess"]]
    lines += ["", "| model | LitServe configuration | peak req/s |", "|---|---|---:|"]
    for name, figures in report["models"].items():
        lines += [f"| {name} | {point['label']} | {point['peak_rps']:.0f} |"
                  for point in figures["servers"].get("litserve", {}).get("sweep", [])]
    lines += ["", "| model | open loop at 70 % of peak: offered req/s | answered req/s | p50 ms | p99 ms | p99/p50 |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        paced = figures["servers"]["ours"]["paced_at_70pct_of_peak"]
        lines.append(f"| {name} | {paced['offered_rps']:.0f} | {paced['throughput_rps']:.0f} | {paced['p50_ms']:.1f} | "
                     f"{paced['p99_ms']:.1f} | {paced['p99_ms'] / paced['p50_ms']:.1f} |")
    lines += ["", "| model | front door at concurrency | direct req/s | through the gateway req/s | gateway / direct |",
              "|---|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        door = figures["servers"]["ours"]["through_gateway"]
        lines.append(f"| {name} | {door['concurrency']} | {door['direct_rps']:.0f} | {door['gateway_rps']:.0f} | "
                     f"{door['gateway_over_direct']:.2f} |")
    long_rows = [(name, label, server["long_documents"]) for name, figures in report["models"].items()
                 for label, server in figures["servers"].items() if "long_documents" in server]
    if long_rows:
        lines += ["", "| model | server | long requests (mean body bytes) | alone: p50 ms | p95 ms | "
                  "at peak concurrency: req/s | p50 ms |", "|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {label} | {long['body_bytes_mean']:,.0f} | {long['alone']['p50_ms']:.1f} | "
                  f"{long['alone']['p95_ms']:.1f} | {long['at_peak_concurrency']['throughput_rps']:.1f} | "
                  f"{long['at_peak_concurrency']['p50_ms']:.1f} |" for name, label, long in long_rows]
    if "cold_start" in report:
        median = report["cold_start"]["median"]
        lines += ["", f"| cold start, {', '.join(report['cold_start']['models'])} in one server "
                  f"(median of {len(report['cold_start']['runs'])}) | seconds |", "|---|---:|"]
        lines += [f"| {phase} | {median[phase]:.2f} |" for phase in (*coldstart.PHASES, "total_s")]
    if "transports" in report:
        lines += ["", f"| model | protocol ({TRANSPORT_CONCURRENCY} callers, measured {report['transports']['date']}) | "
                  "req/s | p50 ms | p99 ms | over /predictions | generator CPU | errors |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for name, figures in report["transports"]["models"].items():
            lines += [f"| {name} | {transport} | {row['throughput_rps']:.0f} | {row['p50_ms']:.1f} | "
                      f"{row['p99_ms']:.1f} | {row['over_predictions']:.2f} | {row['generator_cpu_share']:.0%} | "
                      f"{row['errors']} |" for transport, row in figures["transports"].items()]
    if report.get("generation"):
        lines += ["", "| generator | images per request | served images/s (peak) | at concurrency | "
                  "p50 ms at concurrency 1 | in-process images/s | served / in-process |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, figures in report["generation"].items():
            lines += [f"| {name} | {images} | {row['peak_images_per_s']:.0f} | {row['peak_concurrency']} | "
                      f"{row['p50_ms_at_concurrency_1']:.1f} | {row['inprocess_images_per_s']:.0f} | "
                      f"{row['served_over_inprocess']:.2f} |"
                      for images, row in figures["images_per_request"].items()]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {key} | {'n/a' if value is None else f'{value:.2f}'} |" for key, value in report["ratios"].items()]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    figure, axes = plt.subplots(len(names), 2, figsize=(11, 4 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        figures = report["models"][name]
        for label in (label for label in SERVERS if label in figures["servers"]):
            levels = figures["servers"][label]["levels"]
            row[0].plot([lv["concurrency"] for lv in levels], [lv["throughput_rps"] for lv in levels], "o-",
                        label=label)
        row[0].axhline(max(r["throughput_rps"] for r in figures["inprocess"]), color="gray", ls="--",
                       label="in-process ceiling")
        row[0].set(xscale="log", yscale="log", xlabel="concurrent connections", ylabel=f"{figures['unit']}/s",
                   title=f"{name}: throughput")
        levels = figures["servers"]["ours"]["levels"]
        for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-")):
            row[1].plot([lv["concurrency"] for lv in levels], [lv[key] for lv in levels], style,
                        label=f"ours {key[:3]}")
        lit = figures["servers"].get("litserve", {}).get("levels", [])
        row[1].plot([lv["concurrency"] for lv in lit], [lv["p99_ms"] for lv in lit], "^:", label="litserve p99")
        row[1].set(xscale="log", yscale="log", xlabel="concurrent connections", ylabel="latency ms",
                   title=f"{name}: latency percentiles")
        for axis in row:
            axis.legend(fontsize=8)
            axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(report))
    plot(report, out / "bench.png")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--models", nargs="+", default=None, help="default: every registered model with artifacts")
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    parser.add_argument("--out", type=Path, default=None, help="default: loadtest/results[/quick]")
    parser.add_argument("--seconds", type=float, default=None, help="override the mode's seconds per point")
    parser.add_argument("--levels", type=int, nargs="+", default=None, help="override the concurrency levels")
    parser.add_argument("--previous", type=Path, default=None,
                        help="artifacts of an earlier version of the models, served by this service in the same run")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS),
                        help="the servers to measure (ours always); default: all of them")
    parser.add_argument("--transports-only", action="store_true",
                        help="measure only the protocols, into the existing bench.json of --out")
    parser.add_argument("--generation-only", action="store_true",
                        help="measure only the generators, into the existing bench.json of --out")
    args = parser.parse_args(argv)
    models = args.models or [name for name in CATALOG if (args.artifacts / name / f"{name}.torchscript.pt").exists()]
    if not models:
        raise SystemExit(f"no trained model under {args.artifacts}: run `make train` first")
    out = args.out or REPO / "loadtest" / "results" / ("" if args.mode == "full" else args.mode)
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        if args.transports_only or args.generation_only:
            report = json.loads((out / "bench.json").read_text())
            mode = dataclasses.replace(MODES[args.mode], seconds=args.seconds or MODES[args.mode].seconds,
                                       levels=tuple(args.levels or MODES[args.mode].levels))
            if args.transports_only:
                report["transports"] = measure_transports(models, args.artifacts, mode, Path(workdir))
            if args.generation_only:
                report["generation"] = {name: measure_generation(name, args.artifacts, mode, Path(workdir) / name)
                                        for name in models if CATALOG[name].is_generator}
        else:
            report = run(models, args.artifacts, args.mode, Path(workdir), args.seconds, args.levels, args.previous,
                         servers=tuple(args.servers))
    write_outputs(report, out)
    print(markdown(report))
    print(f"wrote {out}/bench.json, bench.md, bench.png")


if __name__ == "__main__":
    main()
