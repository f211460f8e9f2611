"""The in-process ceiling: the model's own handler driven directly, no HTTP, no frontend.

Each of `processes` processes loads the handler with `threads` torch threads and calls
handle() on batches of real held-out requests (decode + preprocess + TorchScript forward +
postprocess, exactly the served code path) for `seconds`; the throughput is the sum.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from loadtest.handler_driver import load_handler, torchserve_row
from training.catalog import CATALOG
from training.heldout import Sample


def _drive(name: str, model_dir: str, batch_size: int, threads: int, seconds: float, samples, barrier,
           results) -> None:
    handler, context = load_handler(name, Path(model_dir), batch_size, torch_threads=threads)
    samples = samples or CATALOG[name].heldout_requests(64)
    batches = [samples[i:i + batch_size] for i in range(0, len(samples) - batch_size + 1, batch_size)]
    for batch in batches[:3]:  # warm-up: first TorchScript calls optimise the graph
        handler.handle([torchserve_row(sample) for sample in batch], context)
    barrier.wait()
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        batch = batches[done // batch_size % len(batches)]
        handler.handle([torchserve_row(sample) for sample in batch], context)
        done += len(batch)
    results.put(done / (time.perf_counter() - start))


def inprocess_throughput(name: str, model_dir: Path, batch_size: int, processes: int, threads: int,
                         seconds: float, samples: list[Sample] | None = None) -> float:
    """Requests per second over all processes, of `samples` (default: 64 held-out requests)."""
    spawn = multiprocessing.get_context("spawn")  # torch thread pools do not survive fork
    barrier, results = spawn.Barrier(processes), spawn.Queue()
    workers = [spawn.Process(target=_drive, args=(name, str(model_dir), batch_size, threads, seconds, samples,
                                                  barrier, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        rates = [results.get(timeout=seconds + 120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    return sum(rates)
