"""Start and stop a real TorchServe (Java frontend + Python workers) for tests and benchmarks.

Each server lives in its own directory (config, key file, logs, pid file, temp files) and
listens on free loopback ports, so tests never touch a server a user has running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploy.client import TorchServeClient

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render_config(base_config: Path, model_store: Path, models: list[str], ports: dict[str, int],
                  overrides: dict[str, str] | None = None) -> str:
    """The shipped config.properties with test ports, the test model store and `overrides`."""
    settings = {
        "inference_address": f"http://127.0.0.1:{ports['inference']}",
        "management_address": f"http://127.0.0.1:{ports['management']}",
        "metrics_address": f"http://127.0.0.1:{ports['metrics']}",
        "grpc_inference_port": str(ports["grpc_inference"]),
        "grpc_management_port": str(ports["grpc_management"]),
        "model_store": str(model_store),
        "load_models": ",".join(f"{name}.mar" for name in models),
        **(overrides or {}),
    }
    lines, seen = [], set()
    for line in base_config.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in settings and not line.lstrip().startswith("#"):
            line, _ = f"{key}={settings[key]}", seen.add(key)
        lines.append(line)
    lines += [f"{key}={value}" for key, value in settings.items() if key not in seen]
    return "\n".join(lines) + "\n"


@dataclass
class TorchServeProcess:
    workdir: Path
    model_store: Path
    models: list[str]
    overrides: dict[str, str] = field(default_factory=dict)
    log_config: Path | None = None  # a log4j2.xml; None keeps TorchServe's built-in one
    ports: dict[str, int] = field(default_factory=lambda: {
        name: free_port() for name in ("inference", "management", "metrics", "grpc_inference", "grpc_management")})
    process: subprocess.Popen | None = None

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['management']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    def client(self, key_file: Path | None | str = "default") -> TorchServeClient:
        return TorchServeClient(self.inference_url, self.management_url,
                                self.key_file if key_file == "default" else key_file)

    def _env(self) -> dict[str, str]:
        tmp = self.workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "LOG_LOCATION": str(self.workdir / "logs"),
                "METRICS_LOCATION": str(self.workdir / "logs"), "TEMP": str(tmp), "TMPDIR": str(tmp),
                "OMP_NUM_THREADS": "1",
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def start(self, base_config: Path = REPO / "config.properties") -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.properties"
        config.write_text(render_config(base_config, self.model_store, self.models, self.ports, self.overrides))
        self.process = subprocess.Popen(
            [str(VENV_BIN / "torchserve"), "--start", "--foreground", "--ncs", "--ts-config", str(config),
             *(["--log-config", str(self.log_config)] if self.log_config else [])],
            cwd=self.workdir, env=self._env(), stdout=open(self.workdir / "stdout.log", "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until_ready(self, timeout: float = 120):
        return self.client().wait_until_ready(self.models, timeout=timeout, is_alive=self.is_alive)

    def stop(self) -> None:
        if not self.is_alive():
            return
        subprocess.run([str(VENV_BIN / "torchserve"), "--stop", "--foreground"], cwd=self.workdir,
                       env=self._env(), capture_output=True, timeout=90)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def logs(self, lines: int = 80) -> str:
        text = []
        for log in (self.workdir / "stdout.log", self.workdir / "logs" / "model_log.log"):
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                text.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(text)

    def worker_pids(self, model: str) -> set[int]:
        return {worker["pid"] for version in self.client().describe(model) for worker in version["workers"]}


