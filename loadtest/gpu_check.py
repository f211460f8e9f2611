"""The GPU path end to end on a CUDA host: train, export, archive, serve on GPU workers, compare with CPU.

    make gpu-check        # python -m loadtest.gpu_check --out loadtest/results/gpu

Per model of the catalog: its small fast training configuration on CUDA (the engine uses fp16
autocast + GradScaler there), export and archive as `make archive` does, then the production
entrypoint twice over the same archives: GPU workers (SERVE_GPU_COUNT=1, SERVE_WORKERS_PER_GPU)
and CPU workers (SERVE_GPU_COUNT=0, no visible GPU). Each gets the same held-out requests for
accuracy, then a bounded closed loop of them for throughput. Builds no image and touches no
artifact of `make train`: everything lives in a temporary folder; gpu_check.json is the record.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from loadtest.launcher import EntrypointServer
from loadtest.predict import count_judged_right
from loadtest.verify import count_correct, send_all
from training.archive import archive
from training.catalog import CATALOG, REPO

CONCURRENCY = 16


def train_on_cuda(artifacts: Path) -> dict[str, dict]:
    trained = {}
    for name, entry in CATALOG.items():
        started = time.monotonic()
        entry.train_fast(artifacts / name)
        metadata = json.loads((artifacts / name / "metadata.json").read_text())
        trained[name] = {"train_seconds": round(time.monotonic() - started, 1),
                         "test": metadata["quality"] if entry.is_generator else metadata["test"]}
    return trained


def throughput(client, model: str, samples, seconds: float) -> float:
    """Requests per second of a closed loop: CONCURRENCY clients, each sending the next sample when answered."""
    deadline = time.monotonic() + seconds

    def loop(offset: int) -> int:
        sent = 0
        while time.monotonic() < deadline:
            sample = samples[(offset + sent) % len(samples)]
            response = client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type})
            response.raise_for_status()
            sent += 1
        return sent

    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        total = sum(pool.map(loop, range(CONCURRENCY)))
    return total / (time.monotonic() - started)


def serve_and_measure(workdir: Path, store: Path, settings: dict[str, str], count: int, seconds: float) -> dict:
    results = {}
    with EntrypointServer(workdir, store, list(CATALOG), settings).running(timeout=600) as server:
        client = server.client()
        for name, entry in CATALOG.items():
            samples = entry.heldout_requests(count)
            answers = send_all(client, name, samples)
            correct = (count_judged_right(client, entry, samples, answers) if entry.is_generator
                       else count_correct(samples, answers))
            results[name] = {"accuracy": correct / len(samples), "samples": len(samples),
                             "throughput_rps": throughput(client, name, samples, seconds)}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "gpu")
    parser.add_argument("--count", type=int, default=200, help="held-out samples per model")
    parser.add_argument("--seconds", type=float, default=10, help="closed-loop seconds per model and device")
    parser.add_argument("--workers-per-gpu", type=int, default=2)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check needs a CUDA device: torch.cuda.is_available() is False here")
        return 2
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        workdir = Path(folder)
        trained = train_on_cuda(workdir / "artifacts")
        for name in CATALOG:
            archive(name, workdir / "artifacts", workdir / "store")
        gpu = serve_and_measure(workdir / "gpu", workdir / "store", {
            "SERVE_GPU_COUNT": "1", "SERVE_WORKERS_PER_GPU": str(args.workers_per_gpu)}, args.count, args.seconds)
        cpu = serve_and_measure(workdir / "cpu", workdir / "store", {
            "SERVE_GPU_COUNT": "0", "CUDA_VISIBLE_DEVICES": ""}, args.count, args.seconds)
    report = {"date": time.strftime("%Y-%m-%d"), "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cuda": torch.version.cuda, "platform": platform.platform(), "concurrency": CONCURRENCY,
              "models": {name: {"trained_on_cuda": trained[name], "served_gpu": gpu[name], "served_cpu": cpu[name],
                                "gpu_over_cpu": gpu[name]["throughput_rps"] / cpu[name]["throughput_rps"]}
                         for name in CATALOG}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['gpu']}, torch {report['torch']} (CUDA {report['cuda']}), {CONCURRENCY} concurrent clients")
    for name, figures in report["models"].items():
        print(f"{name}: trained in {figures['trained_on_cuda']['train_seconds']} s; served accuracy "
              f"GPU {figures['served_gpu']['accuracy']:.1%} / CPU {figures['served_cpu']['accuracy']:.1%}; "
              f"{figures['served_gpu']['throughput_rps']:.0f} vs {figures['served_cpu']['throughput_rps']:.0f} "
              f"req/s ({figures['gpu_over_cpu']:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
