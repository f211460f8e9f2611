"""A real TorchServe for tests and benchmarks, started by the production entrypoint.

`python -m deploy.entrypoint` is what the container, the pod and `make serve` run: checksum
check, unpacking with the deployment's model-config, rendered config, private run folder,
graceful stop. This wrapper only chooses free loopback ports and a private folder, so tests and
benchmarks run exactly that path and never touch a server a user has running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from deploy.client import TorchServeClient

REPO = Path(__file__).resolve().parents[1]
PORT_NAMES = ("inference", "management", "metrics", "grpc_inference", "grpc_management")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EntrypointServer:
    workdir: Path
    model_store: Path
    models: list[str]
    settings: dict[str, str] = field(default_factory=dict)  # SERVE_* variables (deploy/serve_settings.py)
    ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in PORT_NAMES})
    process: subprocess.Popen | None = None

    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def key_file(self) -> Path:
        return self.run_dir / "key_file.json"

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['management']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    def client(self) -> TorchServeClient:
        return TorchServeClient(self.inference_url, self.management_url, self.key_file)

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO),
                "SERVE_MODEL_STORE": str(self.model_store), "SERVE_MODELS": ",".join(self.models),
                "SERVE_RUN_DIR": str(self.run_dir),
                "SERVE_INFERENCE_ADDRESS": self.inference_url, "SERVE_MANAGEMENT_ADDRESS": self.management_url,
                "SERVE_METRICS_ADDRESS": self.metrics_url,
                "SERVE_GRPC_INFERENCE_PORT": str(self.ports["grpc_inference"]),
                "SERVE_GRPC_MANAGEMENT_PORT": str(self.ports["grpc_management"]), **self.settings}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "entrypoint.log", "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "deploy.entrypoint"], cwd=REPO,
                                            env=self.environment(), stdout=log, stderr=subprocess.STDOUT)

    @contextlib.contextmanager
    def running(self, timeout: float = 240):
        """Started and READY for the block, stopped after it whatever happens."""
        self.start()
        try:
            status = self.wait_until_ready(timeout)
            if not status:
                raise RuntimeError("TorchServe never became ready: " + "; ".join(status.reasons) + "\n" + self.logs())
            yield self
        finally:
            self.stop()

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until_ready(self, timeout: float = 180):
        return self.client().wait_until_ready(self.models, timeout=timeout, is_alive=self.is_alive)

    def stop(self, timeout: float = 90) -> int | None:
        """SIGTERM, as `docker stop` and Kubernetes send it; the entrypoint's exit status."""
        if self.process is None:
            return None
        if self.is_alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:  # the entrypoint hung: leave nothing of it running
                for process in [*psutil.Process(self.process.pid).children(recursive=True), self.process]:
                    with contextlib.suppress(psutil.Error, ProcessLookupError):
                        process.kill()
                self.process.wait()
        return self.process.returncode

    def logs(self, lines: int = 80) -> str:
        text = []
        for log in (self.workdir / "entrypoint.log", self.run_dir / "logs" / "model_log.log",
                    self.run_dir / "logs" / "ts_log.log"):
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                text.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(text)

    def worker_pids(self, model: str) -> set[int]:
        return {worker["pid"] for version in self.client().describe(model) for worker in version["workers"]}
