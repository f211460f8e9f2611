"""Where a cold start's time goes: this service, every model in one server, start to all READY.

    python -m loadtest.coldstart [--artifacts artifacts] [--runs 3]

The entrypoint is started as `make serve` and the container start it; the phases come from the
timestamps TorchServe and the workers write to their logs:
  frontend:        entrypoint (checksums, unpacking, config) and JVM start, to its first log line
  frontend_init:   to the inference API bound (models registered, worker processes launched)
  worker_imports:  to the last worker's "Torch worker started." (Python, torch and ts imported)
  model_load:      to the last handler's "... ready on ..." (handler import, TorchScript load)
  readiness:       to the readiness probe seeing every worker READY (its polling included)
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from loadtest.launcher import EntrypointServer
from training.catalog import CATALOG, REPO

TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3})")
PHASES = ("frontend", "frontend_init", "worker_imports", "model_load", "readiness")


def log_times(path: Path, marker: str) -> list[float]:
    """Epoch seconds of the log lines containing `marker` (TorchServe logs local time)."""
    times = []
    for line in path.read_text(errors="replace").splitlines():
        match = TIMESTAMP.match(line)
        if match and marker in line:
            stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S,%f")
            times.append(stamp.timestamp())
    return times


def breakdown(logs: Path, launched: float, ready: float) -> dict:
    ts_log, model_log = logs / "ts_log.log", logs / "model_log.log"
    logged = [log_times(ts_log, "")[0], log_times(ts_log, "Inference API bind")[0],
              max(log_times(model_log, "Torch worker started.")), max(log_times(model_log, " ready on "))]
    # The frontend writes a worker's stdout lines with its own timestamp, a few ms after the worker
    # printed them, so the last one can land after the probe saw READY: such a mark counts at
    # readiness (and marks never go back), keeping every phase >= 0 and their sum the total.
    marks = [launched, *itertools.accumulate((min(max(mark, launched), ready) for mark in logged), max), ready]
    return {"total_s": ready - launched, **{phase: end - start for phase, start, end in zip(PHASES, marks, marks[1:])}}


def measure(store: Path, models: list[str], workdir: Path) -> dict:
    server = EntrypointServer(workdir, store, models)
    launched = time.time()
    with server.running(timeout=300):
        ready = time.time()
        return breakdown(server.run_dir / "logs", launched, ready)


def measure_runs(store: Path, models: list[str], workdir: Path, runs: int) -> dict:
    """Median of `runs` cold starts (the first also pays for a cold page cache), and each run."""
    results = [measure(store, models, workdir / f"run{index}") for index in range(runs)]
    return {"models": models, "runs": results,
            "median": {key: statistics.median(run[key] for run in results) for key in results[0]}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="coldstart-") as workdir:
        result = measure_runs(args.store, list(CATALOG), Path(workdir), args.runs)
    print(json.dumps(result["median"], indent=2))


if __name__ == "__main__":
    main()
