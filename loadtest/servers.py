"""Start the servers the benchmark compares, each in a private directory on free loopback ports.

  ours:     the production entrypoint with the shipped config.properties, model-config and log4j2.xml
  stock:    the same entrypoint and handler with the same security settings, but TorchServe's own
            performance defaults: default workers (one per core), batch size 1, built-in logging
  litserve: loadtest.litserve_app, same handler and batching as the model-config
"""

from __future__ import annotations

import contextlib
import os
import secrets
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

# config.properties keys that are our tuning, dropped for the stock server (TorchServe defaults apply).
TUNING_KEYS = ("default_workers_per_model", "job_queue_size", "number_of_netty_threads", "netty_client_threads")
# model-config keys that TorchServe itself reads; stock keeps only the handler's own limits.
STOCK_MODEL_CONFIG_KEYS = ("handler", "responseTimeout")


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
                model_config_overrides: dict | None = None) -> Path:
    """Archive `models` from `artifacts` with the shipped model-config (or its stock subset),
    `model_config_overrides` applied on top (a nested `handler` dict merges into the handler section)."""
    configs = store / "model-config"
    configs.mkdir(parents=True, exist_ok=True)
    for name in models:
        config = CATALOG[name].model_config()
        for key, value in (model_config_overrides or {}).items():
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
        if stock:
            config = {key: value for key, value in config.items() if key in STOCK_MODEL_CONFIG_KEYS}
        (configs / f"{name}.yaml").write_text(yaml.safe_dump(config))
        archive(name, artifacts, store, model_config=configs / f"{name}.yaml")
    return store


def base_config_with(workdir: Path, properties: dict[str, str], stock: bool) -> Path:
    """config.properties with `properties` replacing its lines; for stock, without our tuning
    lines (every security line stays)."""
    lines = (REPO / "config.properties").read_text().splitlines()
    if stock:
        lines = [line for line in lines if line.split("=", 1)[0].strip() not in TUNING_KEYS]
    path = workdir / "base.config.properties"
    path.write_text(render_properties_text("\n".join(lines) + "\n", properties))
    return path


@contextlib.contextmanager
def torchserve(label: str, workdir: Path, store: Path, models: list[str], stock: bool = False,
               properties: dict[str, str] | None = None, settings: dict[str, str] | None = None):
    """TorchServe through the entrypoint; `properties` replace lines of the base config.properties,
    `settings` are extra SERVE_* variables."""
    workdir.mkdir(parents=True, exist_ok=True)
    base_config = base_config_with(workdir, properties or {}, stock)
    # TorchServe's own defaults for stock: its built-in logging, one worker per core.
    stock_settings = {"SERVE_LOG_CONFIG": "builtin", "SERVE_WORKERS_PER_MODEL": str(os.cpu_count())}
    settings = {"SERVE_BASE_CONFIG": str(base_config), **(stock_settings if stock else {}), **(settings or {})}
    started = time.monotonic()
    with EntrypointServer(workdir / "server", store, models, settings).running(timeout=300) as server:
        cold_start = time.monotonic() - started
        token = read_keys(server.key_file)["inference"]
        yield RunningServer(label, server.inference_url, token, [server.process.pid], cold_start, server)


@contextlib.contextmanager
def litserve(workdir: Path, artifacts: Path, model: str, workers: int):
    """LitServe with the model-config's batch size and delay and `workers` inference processes."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = CATALOG[model].model_config()
    port, token = free_port(), secrets.token_urlsafe(24)
    command = [sys.executable, "-m", "loadtest.litserve_app", "--model", model, "--model-dir", str(artifacts / model),
               "--port", str(port), "--workers", str(workers), "--batch-size", str(config.get("batchSize", 1)),
               "--batch-delay-ms", str(config.get("maxBatchDelay", 0))]
    log = open(workdir / "litserve.log", "wb")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "LITSERVE_TOKEN": token, "OMP_NUM_THREADS": "1"})
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
