"""Try one serving lever at a time against the shipped settings and print what each changed.

    python -m loadtest.tuning [--model mnist] [--seconds 5] [--levels 8 32]

Each variant is the shipped config.properties + model-config + log4j2.xml with one change,
started fresh and measured with the same wrk client; the result goes to loadtest/results/tuning.md.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from pathlib import Path

from loadtest.bench import machine
from loadtest.load import BodyFiles, run_wrk
from training.catalog import CATALOG, REPO
from loadtest.servers import build_store, torchserve

# name -> (model-config overrides, config.properties overrides, use the quiet log4j2.xml)
VARIANTS = {
    "shipped settings": ({}, {}, True),
    "TorchServe's built-in logging": ({}, {}, False),
    "1 worker x 1 thread": ({"minWorkers": 1, "maxWorkers": 1}, {}, True),
    "2 workers x 1 thread": ({"minWorkers": 2, "maxWorkers": 2}, {}, True),
    "1 worker x 2 threads": ({"minWorkers": 1, "maxWorkers": 1, "handler": {"torch_threads": 2}}, {}, True),
    "batch 1": ({"batchSize": 1}, {}, True),
    "batch 16": ({"batchSize": 16}, {}, True),
    "max delay 2 ms": ({"maxBatchDelay": 2}, {}, True),
    "max delay 5 ms": ({"maxBatchDelay": 5}, {}, True),
    "max delay 10 ms": ({"maxBatchDelay": 10}, {}, True),
    "1 netty thread each side": ({}, {"number_of_netty_threads": "1", "netty_client_threads": "1"}, True),
    "job queue 1000": ({}, {"job_queue_size": "1000"}, True),
}


def log_lines(folder: Path) -> int:
    """Lines in every log TorchServe writes (access, model, ts and metrics logs)."""
    return sum(len(path.read_bytes().splitlines()) for path in folder.glob("*.log"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist", choices=sorted(CATALOG))
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--levels", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "tuning.md")
    args = parser.parse_args(argv)
    bodies = BodyFiles(CATALOG[args.model].heldout_requests(64))
    header = " | ".join(f"c={level} req/s | p50 | p99" for level in args.levels)
    rows = [f"Tuning {args.model}, {datetime.date.today()}, {machine()['cores']} cores {machine()['cpu_model']}, "
            f"wrk {args.seconds:g} s per point, latencies in ms.", "",
            f"| variant | cold start s | {header} | server CPU | wrk CPU | log lines per request |",
            "|---|---:|" + "---:|" * (3 * len(args.levels)) + "---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="tuning-") as workdir:
        for index, name in enumerate(args.variants):
            model_config, properties, quiet_logs = VARIANTS[name]
            work = Path(workdir) / str(index)
            store = build_store(args.artifacts, work / "store", [args.model], stock=False,
                                model_config_overrides=model_config)
            with torchserve(name, work, store, [args.model], properties=properties,
                            settings={} if quiet_logs else {"SERVE_LOG_CONFIG": "builtin"}) as server:
                url = server.url(args.model)
                run_wrk(url, bodies, server.token, max(args.levels), 1, server.pids)  # warm-up
                lines_before = log_lines(server.entrypoint.run_dir / "logs")
                results = [run_wrk(url, bodies, server.token, level, args.seconds, server.pids)
                           for level in args.levels]
                lines = log_lines(server.entrypoint.run_dir / "logs") - lines_before
            cells = " | ".join(f"{r.throughput_rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f}" for r in results)
            rows.append(f"| {name} | {server.cold_start_s:.1f} | {cells} | {results[-1].server_cpu_share:.0%} | "
                        f"{results[-1].loadgen_cpu_share:.1%} | {lines / sum(r.requests for r in results):.3f} |")
            print(rows[-1], flush=True)
    bodies.close()
    args.out.write_text("\n".join(rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
