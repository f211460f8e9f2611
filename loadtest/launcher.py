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
import time
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
    def grpc_target(self) -> str:
        """host:port of gRPC inference: TorchServe's own API and the Open Inference Protocol."""
        return f"127.0.0.1:{self.ports['grpc_inference']}"

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

    def frontend(self) -> psutil.Process | None:
        """TorchServe's Java frontend: the child of the `torchserve` launcher the entrypoint started."""
        if not self.is_alive():
            return None
        for launcher in psutil.Process(self.process.pid).children():
            for child in launcher.children():
                if child.name() == "java":
                    return child
        return None

    def worker_pids(self, model: str) -> set[int]:
        return {worker["pid"] for version in self.client().describe(model) for worker in version["workers"]}


@dataclass
class GatewayProcess:
    """deploy/gateway.py (nginx) in front of `upstream`, as the pod's sidecar runs it, on a free loopback port."""

    workdir: Path
    upstream: EntrypointServer
    client_keys: list[str]
    max_body: int = 4 * 1024 * 1024
    settings: dict[str, str] = field(default_factory=dict)  # more SERVE_GATEWAY_* variables (deploy/gateway.py)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def keys_file(self) -> Path:
        return self.workdir / "client-keys"

    @property
    def log_file(self) -> Path:
        return self.workdir / "gateway.log"

    def write_keys(self, keys: list[str]) -> None:
        """Replace the keys file at once, as the kubelet swaps a mounted Secret."""
        staged = self.workdir / "client-keys.new"
        staged.write_text("\n".join(keys) + "\n")
        staged.replace(self.keys_file)

    @contextlib.contextmanager
    def running(self, timeout: float = 30):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_keys(self.client_keys)
        env = {**os.environ, "PYTHONPATH": str(REPO), "SERVE_GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
               "SERVE_GATEWAY_KEYS_FILE": str(self.keys_file), "SERVE_GATEWAY_UPSTREAM": self.upstream.inference_url,
               "SERVE_GATEWAY_TS_KEY_FILE": str(self.upstream.key_file),
               "SERVE_GATEWAY_MAX_BODY": str(self.max_body), **self.settings}
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "deploy.gateway"], cwd=REPO, env=env,
                                            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not self.accepts_connections():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not start:\n" + self.log_file.read_text(errors="replace"))
                time.sleep(0.1)
            yield self
        finally:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def accepts_connections(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False
