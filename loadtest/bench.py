"""One benchmark run on this machine: in-process ceiling vs this service vs stock TorchServe vs LitServe.

    python -m loadtest.bench --mode full  --out loadtest/results          # README numbers (~7 min per model)
    python -m loadtest.bench --mode quick --out loadtest/results/quick    # CI smoke run (~1-2 min)

Per model: the handler driven in-process at the batch sizes the server forms (the ceiling), then
each server at several concurrency levels with wrk (same client, same real held-out requests),
then this service paced at 70 % of its peak to read its tail latency, and this service through the
pod's front door (the nginx gateway) vs directly. With --previous DIR, this service also serves
the models of DIR (an earlier version, e.g. before retraining) in the same run: "previous". A
model whose training module offers long_requests() (sentiment: 10,000-character reviews) also
gets their latency at concurrency 1 and their throughput at the peak concurrency. Writes
bench.json (every figure), bench.md (tables) and bench.png (throughput vs concurrency, latency
percentiles).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import platform
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtest.inprocess import inprocess_throughput
from loadtest.launcher import GatewayProcess
from loadtest.load import BodyFiles, require_wrk, run_wrk
from loadtest.servers import build_store, litserve, torchserve
from training.catalog import CATALOG, REPO

SERVERS = ("ours", "previous", "stock", "litserve")  # "previous" only with --previous
BASELINES = ("inprocess", "stock", "litserve")  # every ratio: this service's peak over each baseline's
PACED_FRACTION = 0.7


@dataclass(frozen=True)
class Mode:
    seconds: float               # per concurrency level
    levels: tuple[int, ...]      # concurrent connections
    inprocess_seconds: float
    all_process_layouts: bool    # also 1 process x 2 threads and 2 x 1 at the server's batch size
    door_rounds: int             # alternating direct / through-the-gateway runs at the peak concurrency


MODES = {
    "quick": Mode(seconds=2, levels=(1, 8), inprocess_seconds=1, all_process_layouts=False, door_rounds=1),
    "full": Mode(seconds=10, levels=(1, 4, 8, 16, 32, 64), inprocess_seconds=5, all_process_layouts=True,
                 door_rounds=3),
}
GATEWAY_KEY = "bench-client-key"


def machine() -> dict:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    return {"cores": psutil.cpu_count(), "cpu_model": cpu_model, "memory_gib": round(psutil.virtual_memory().total
                                                                                      / 2**30, 1),
            "platform": platform.platform()}


def measure_inprocess(name: str, artifacts: Path, mode: Mode) -> list[dict]:
    config = CATALOG[name].model_config()
    batch, workers = int(config.get("batchSize", 1)), int(config.get("minWorkers", 1))
    layouts = {(1, 1, 1), (batch, workers, 1)}
    if mode.all_process_layouts:
        layouts |= {(batch, 1, 1), (batch, 2, 1), (batch, 1, 2)}
    return [{"batch_size": b, "processes": p, "threads": t,
             "throughput_rps": inprocess_throughput(name, artifacts / name, b, p, t, mode.inprocess_seconds)}
            for b, p, t in sorted(layouts)]


def measure_server(server, name: str, bodies: BodyFiles, mode: Mode) -> list[dict]:
    run_wrk(server.url(name), bodies, server.token, max(mode.levels), 1, server.pids)  # warm-up, not recorded
    return [run_wrk(server.url(name), bodies, server.token, level, mode.seconds, server.pids).as_dict()
            for level in mode.levels]


def paced_tail(server, name: str, bodies: BodyFiles, levels: list[dict], mode: Mode) -> dict:
    """Latency at ~70 % of peak: each connection thinks between requests, so the server is not saturated."""
    peak = max(levels, key=lambda level: level["throughput_rps"])
    target = PACED_FRACTION * peak["throughput_rps"]
    connections = max(peak["concurrency"], math.ceil(target * 0.010))  # >= 10 ms per cycle: wrk delays are whole ms
    service_ms = min(level["p50_ms"] for level in levels)
    delay_ms = max(connections / target * 1000 - service_ms, 1.0)
    result = run_wrk(server.url(name), bodies, server.token, connections, mode.seconds, server.pids,
                     mean_delay_ms=delay_ms).as_dict()
    return {**result, "target_rps": target, "fraction_of_peak": result["throughput_rps"] / peak["throughput_rps"],
            "mean_think_ms": delay_ms, "p99_over_p50": result["p99_ms"] / result["p50_ms"]}


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


def peak(levels: list[dict]) -> dict:
    return max(levels, key=lambda level: level["throughput_rps"])


def peak_throughput(figures: dict, baseline: str) -> float:
    if baseline == "inprocess":
        return max(row["throughput_rps"] for row in figures["inprocess"])
    return peak(figures["servers"][baseline]["levels"])["throughput_rps"]


def ratios(models: dict) -> dict:
    """Every model over every baseline, from the same run: {"mnist_ours_over_stock": 1.5, ...}."""
    over_baselines = {f"{name}_ours_over_{baseline}":
                      peak_throughput(figures, "ours") / peak_throughput(figures, baseline)
                      for name, figures in models.items() for baseline in BASELINES}
    door = {f"{name}_gateway_over_direct": figures["servers"]["ours"]["through_gateway"]["gateway_over_direct"]
            for name, figures in models.items()}
    previous = {f"{name}_ours_over_previous": peak_throughput(figures, "ours") / peak_throughput(figures, "previous")
                for name, figures in models.items() if "previous" in figures["servers"]}
    return {**over_baselines, **door, **previous}


def long_documents(server, name: str, bodies: BodyFiles, levels: list[dict], mode: Mode) -> dict:
    """Long requests alone: latency at concurrency 1, throughput at the short requests' peak concurrency."""
    alone = run_wrk(server.url(name), bodies, server.token, 1, mode.seconds, server.pids).as_dict()
    loaded = run_wrk(server.url(name), bodies, server.token, peak(levels)["concurrency"], mode.seconds,
                     server.pids).as_dict()
    return {"body_bytes_mean": bodies.mean_bytes, "alone": alone, "at_peak_concurrency": loaded}


def run(models: list[str], artifacts: Path, mode_name: str, workdir: Path, seconds: float | None = None,
        levels: tuple[int, ...] | None = None, previous: Path | None = None) -> dict:
    mode = MODES[mode_name]
    mode = dataclasses.replace(mode, seconds=seconds or mode.seconds, levels=tuple(levels or mode.levels))
    require_wrk()
    bodies = {name: BodyFiles(CATALOG[name].heldout_requests(64)) for name in models}
    long_bodies = {name: BodyFiles(requests) for name in models
                   for requests in [CATALOG[name].long_requests(16)] if requests}
    results = {name: {"unit": CATALOG[name].unit, "inprocess": measure_inprocess(name, artifacts, mode),
                      "servers": {}} for name in models}
    compared = [name for name in models if previous and (previous / name / f"{name}.torchscript.pt").exists()]
    for label in ("ours", "previous", "stock"):
        served = compared if label == "previous" else models
        if not served:
            continue
        store = build_store(previous if label == "previous" else artifacts, workdir / label / "store", served,
                            stock=label == "stock")
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(torchserve(label, workdir / label, store, served, stock=label == "stock"))
            if label == "ours":
                gateway = stack.enter_context(GatewayProcess(workdir / "gateway", server.entrypoint,
                                                             [GATEWAY_KEY]).running())
            for name in served:
                levels = measure_server(server, name, bodies[name], mode)
                figures = {"cold_start_s": server.cold_start_s, "levels": levels}
                if label == "ours":
                    figures["paced_at_70pct_of_peak"] = paced_tail(server, name, bodies[name], levels, mode)
                    figures["through_gateway"] = through_the_door(server, gateway, name, bodies[name], levels, mode)
                # Last: a loaded run of long requests leaves a backlog that the next measurement would wait on.
                if name in long_bodies and label != "stock":
                    figures["long_documents"] = long_documents(server, name, long_bodies[name], levels, mode)
                results[name]["servers"][label] = figures
    for name in models:
        workers = int(CATALOG[name].model_config().get("minWorkers", 1))
        with litserve(workdir / "litserve" / name, artifacts, name, workers) as server:
            results[name]["servers"]["litserve"] = {"cold_start_s": server.cold_start_s,
                                                    "levels": measure_server(server, name, bodies[name], mode)}
    for files in [*bodies.values(), *long_bodies.values()]:
        files.close()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "mode": mode_name, "machine": machine(), "load_generator": "wrk -t1 (loadtest/post.lua)",
            "seconds_per_level": mode.seconds, "ratios": ratios(results),
            "not_measured": sorted(set(CATALOG) - set(models)), "models": results}


def markdown(report: dict) -> str:
    lines = [f"Benchmark ({report['mode']} mode), {report['date']}, {report['machine']['cores']} cores "
             f"{report['machine']['cpu_model']}; load generator {report['load_generator']}, "
             f"{report['seconds_per_level']} s per point.", ""]
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
    lines += ["", "| model | server | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        for label in (label for label in SERVERS if label in figures["servers"]):
            for level in figures["servers"][label]["levels"]:
                lines.append(f"| {name} | {label} | {level['concurrency']} | {level['throughput_rps']:.0f} | "
                             f"{level['p50_ms']:.1f} | {level['p95_ms']:.1f} | {level['p99_ms']:.1f} | "
                             f"{level['errors']} |")
    lines += ["", "| model | in-process batch | processes x threads | req/s |", "|---|---:|---|---:|"]
    for name, figures in report["models"].items():
        lines += [f"| {name} | {row['batch_size']} | {row['processes']} x {row['threads']} | "
                  f"{row['throughput_rps']:.0f} |" for row in figures["inprocess"]]
    lines += ["", "| model | paced at 70 % of peak: req/s | p50 ms | p99 ms | p99/p50 | cold start s |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        paced = figures["servers"]["ours"]["paced_at_70pct_of_peak"]
        lines.append(f"| {name} | {paced['throughput_rps']:.0f} | {paced['p50_ms']:.1f} | {paced['p99_ms']:.1f} | "
                     f"{paced['p99_over_p50']:.1f} | {figures['servers']['ours']['cold_start_s']:.1f} |")
    lines += ["", "| model | front door at concurrency | direct req/s | through the gateway req/s | gateway / direct |",
              "|---|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        door = figures["servers"]["ours"]["through_gateway"]
        lines.append(f"| {name} | {door['concurrency']} | {door['direct_rps']:.0f} | {door['gateway_rps']:.0f} | "
                     f"{door['gateway_over_direct']:.2f} |")
    lines += ["", "| model | server | long requests (mean body bytes) | alone: p50 ms | p95 ms | "
              "at peak concurrency: req/s | p50 ms |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        for label, server in figures["servers"].items():
            if "long_documents" in server:
                long = server["long_documents"]
                lines.append(f"| {name} | {label} | {long['body_bytes_mean']:,.0f} | {long['alone']['p50_ms']:.1f} | "
                             f"{long['alone']['p95_ms']:.1f} | {long['at_peak_concurrency']['throughput_rps']:.1f} | "
                             f"{long['at_peak_concurrency']['p50_ms']:.1f} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {key} | {value:.2f} |" for key, value in report["ratios"].items()]
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
        lit = figures["servers"]["litserve"]["levels"]
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
    args = parser.parse_args(argv)
    models = args.models or [name for name in CATALOG if (args.artifacts / name / f"{name}.torchscript.pt").exists()]
    if not models:
        raise SystemExit(f"no trained model under {args.artifacts}: run `make train` first")
    out = args.out or REPO / "loadtest" / "results" / ("" if args.mode == "full" else args.mode)
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        report = run(models, args.artifacts, args.mode, Path(workdir), args.seconds, args.levels, args.previous)
    write_outputs(report, out)
    print(markdown(report))
    print(f"wrote {out}/bench.json, bench.md, bench.png")


if __name__ == "__main__":
    main()
