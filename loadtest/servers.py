"""Start the servers the benchmark compares, each in a private directory on free loopback ports.

  ours:     the production entrypoint with the shipped config.properties, model-config and log4j2.xml
  fp32:     the same, serving the fp32 variant of each model (the accuracy gate's baseline)
  stock:    TorchServe as it comes: `torchserve --foreground` with its default config.properties
            (only ports and the model store set), its built-in logging, default workers (one per
            core), batch size 1, and torch's default threads; our handler and archive, with the
            handler's input limits and no thread setting
  litserve: loadtest.litserve_app, same handler code and TorchScript file, in the configuration
            the caller names (workers, API servers, batching)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from deploy.client import read_keys
from deploy.serve_settings import render_properties_text
from loadtest.launcher import EntrypointServer, free_port
from training.archive import archive
from training.catalog import CATALOG, REPO



@dataclass
class RunningServer:
    label: str
    base_url: str
    token: str
    pids: list[int]
    cold_start_s: float
    entrypoint: EntrypointServer | None = None  # ours and stock: what a gateway can be put in front of

    def url(self, model: str) -> str:
        return f"{self.base_url}{CATALOG[model].endpoint}"


def build_store(artifacts: Path, store: Path, models: list[str], stock: bool,
                model_config_overrides: dict | None = None, variant: str | None = None) -> Path:
    """Archive `models` from `artifacts` (their shipped variant, or `variant`) with the shipped
    model-config, or for stock only the handler's input limits; `model_config_overrides` applied on
    top (a nested `handler` dict merges into the handler section)."""
    # Beside the store, not in it: stock TorchServe loads every entry of its store as a model, and a
    # config folder in there became a model whose workers crash-looped next to the one measured.
    configs = store.with_name(f"{store.name}-model-config")
    configs.mkdir(parents=True, exist_ok=True)
    for name in models:
        config = CATALOG[name].model_config()
        for key, value in (model_config_overrides or {}).items():
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
        if stock:
            config = {"handler": {key: value for key, value in config["handler"].items() if key != "torch_threads"}}
        (configs / f"{name}.yaml").write_text(yaml.safe_dump(config))
        archive(name, artifacts, store, model_config=configs / f"{name}.yaml", variant=variant)
    return store


def base_config_with(workdir: Path, properties: dict[str, str]) -> Path:
    """The shipped config.properties with `properties` replacing its lines."""
    path = workdir / "base.config.properties"
    path.write_text(render_properties_text((REPO / "config.properties").read_text(), properties))
    return path


class StockTorchServe(EntrypointServer):
    """`torchserve --foreground` with TorchServe's defaults: a config.properties that sets only the
    loopback ports and the model store, and no log config, worker, batch or thread setting."""

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        properties = {"inference_address": self.inference_url, "management_address": self.management_url,
                      "metrics_address": self.metrics_url, "grpc_inference_port": str(self.ports["grpc_inference"]),
                      "grpc_management_port": str(self.ports["grpc_management"]),
                      "model_store": str(self.model_store), "load_models": "all"}
        config = self.run_dir / "config.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
        with open(self.workdir / "entrypoint.log", "ab") as log:  # cwd: where TorchServe writes its key file
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("torchserve")), "--start", "--foreground", "--ts-config",
                 str(config), "--model-store", str(self.model_store)],
                cwd=self.run_dir, env={**environment, "PYTHONPATH": str(REPO), "LOG_LOCATION": str(self.run_dir / "logs")},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, timeout: float = 90) -> int | None:
        if self.process is not None and self.is_alive():
            os.killpg(self.process.pid, signal.SIGTERM)  # the launcher and its Java frontend and workers
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return None if self.process is None else self.process.returncode


@contextlib.contextmanager
def torchserve(label: str, workdir: Path, store: Path, models: list[str], stock: bool = False,
               properties: dict[str, str] | None = None, settings: dict[str, str] | None = None):
    """TorchServe through the entrypoint (`properties` replace lines of the base config.properties,
    `settings` are extra SERVE_* variables), or stock TorchServe."""
    workdir.mkdir(parents=True, exist_ok=True)
    if stock:
        launcher = StockTorchServe(workdir / "server", store, models)
    else:
        settings = {"SERVE_BASE_CONFIG": str(base_config_with(workdir, properties or {})), **(settings or {})}
        launcher = EntrypointServer(workdir / "server", store, models, settings)
    started = time.monotonic()
    with launcher.running(timeout=300) as server:
        cold_start = time.monotonic() - started
        token = read_keys(server.key_file)["inference"]
        yield RunningServer(label, server.inference_url, token, [server.process.pid], cold_start, server)


@dataclass(frozen=True)
class LitServeConfig:
    """One point of the LitServe sweep; None leaves LitServe's own default."""
    workers: int = 1                  # inference processes (workers_per_device on the one CPU device)
    api_servers: int | None = None    # HTTP processes; LitServe's default is one per inference worker
    batch_size: int = 1               # max_batch_size; LitServe's default is no batching
    batch_delay_ms: float = 0.0       # batch_timeout
    torch_threads: int | None = None  # per worker; None: torch's default (one per core)

    @property
    def label(self) -> str:
        api = "default" if self.api_servers is None else self.api_servers
        threads = "default" if self.torch_threads is None else self.torch_threads
        return (f"{self.workers} worker(s) x {threads} thread(s), {api} API server(s), "
                f"batch {self.batch_size} / {self.batch_delay_ms:g} ms")


@contextlib.contextmanager
def litserve(workdir: Path, artifacts: Path, model: str, config: LitServeConfig):
    workdir.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_urlsafe(24)
    command = [sys.executable, "-m", "loadtest.litserve_app", "--model", model, "--model-dir", str(artifacts / model),
               "--port", str(port), "--workers", str(config.workers), "--batch-size", str(config.batch_size),
               "--batch-delay-ms", str(config.batch_delay_ms)]
    for option, value in (("--api-servers", config.api_servers), ("--torch-threads", config.torch_threads)):
        if value is not None:
            command += [option, str(value)]
    log = open(workdir / "litserve.log", "wb")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**{key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"},
                                    "LITSERVE_TOKEN": token})
    try:
        base_url = f"http://127.0.0.1:{port}"
        while not _litserve_ready(base_url, token):
            if process.poll() is not None or time.monotonic() - started > 300:
                raise RuntimeError("LitServe never became ready:\n" + (workdir / "litserve.log").read_text()[-3000:])
            time.sleep(0.25)
        yield RunningServer("litserve", base_url, token, [process.pid], time.monotonic() - started)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()


def _litserve_ready(base_url: str, token: str) -> bool:
    try:  # LitServe applies the API's authorize() to /health too
        response = requests.get(f"{base_url}/health", headers={"Authorization": f"Bearer {token}"}, timeout=2)
        return response.status_code == 200
    except requests.RequestException:
        return False
