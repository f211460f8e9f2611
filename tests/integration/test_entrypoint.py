"""deploy/entrypoint.py on the host, as the container runs it: serve every test model, stop on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from deploy.client import TorchServeClient
from tests.conftest import FAST_TRAINING
from deploy.samples import SAMPLES
from deploy.torchserve_process import free_port

REPO = Path(__file__).resolve().parents[2]
ENV_BATCH_SIZE = 3  # differs from every shipped model-config, so the test sees the env win


def entrypoint(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deploy.entrypoint"], cwd=REPO, env=env,
                            stdout=open(cwd / "entrypoint.log", "wb"), stderr=subprocess.STDOUT)


def base_env(model_store: Path, run_dir: Path) -> dict[str, str]:
    return {**os.environ, "SERVE_MODEL_STORE": str(model_store), "SERVE_RUN_DIR": str(run_dir),
            "SERVE_CPU_COUNT": "1", "SERVE_GPU_COUNT": "0", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def served(model_store, tmp_path_factory):
    """The entrypoint serving the test model store on free loopback ports; stopped by each test's end."""
    workdir = tmp_path_factory.mktemp("entrypoint")
    ports = {name: free_port() for name in ("inference", "management", "metrics", "grpc_i", "grpc_m")}
    env = {**base_env(model_store, workdir / "run"),
           "SERVE_INFERENCE_ADDRESS": f"http://127.0.0.1:{ports['inference']}",
           "SERVE_MANAGEMENT_ADDRESS": f"http://127.0.0.1:{ports['management']}",
           "SERVE_METRICS_ADDRESS": f"http://127.0.0.1:{ports['metrics']}",
           "SERVE_GRPC_INFERENCE_PORT": str(ports["grpc_i"]), "SERVE_GRPC_MANAGEMENT_PORT": str(ports["grpc_m"]),
           "SERVE_BATCH_SIZE": str(ENV_BATCH_SIZE)}
    process = entrypoint(env, workdir)
    client = TorchServeClient(env["SERVE_INFERENCE_ADDRESS"], env["SERVE_MANAGEMENT_ADDRESS"],
                              workdir / "run" / "key_file.json")
    try:
        status = client.wait_until_ready(list(FAST_TRAINING), timeout=180, is_alive=lambda: process.poll() is None)
        if not status:
            pytest.fail("entrypoint never became ready: " + "; ".join(status.reasons) + "\n"
                        + (workdir / "entrypoint.log").read_text(errors="replace")[-4000:])
        yield process, client, workdir
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_every_test_model_has_a_sample_request():
    assert set(FAST_TRAINING) <= set(SAMPLES)


def test_entrypoint_serves_every_model_with_env_settings_and_private_files(served):
    _, client, workdir = served
    for model in FAST_TRAINING:
        response = client.predict(model, data=SAMPLES[model](1)[0].body)
        assert response.status_code == 200, response.text
        description = client.describe(model)[0]
        assert description["batchSize"] == ENV_BATCH_SIZE
        assert description["deviceType"] == "cpu"
        assert description["minWorkers"] == description["maxWorkers"] == 1
    run_dir = workdir / "run"
    for private in (run_dir, run_dir / "tmp", run_dir / "logs"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700, private
    assert stat.S_IMODE((run_dir / "key_file.json").stat().st_mode) == 0o600


def probe(client: TorchServeClient, *flags: str) -> int:
    """deploy.readiness as the container's HEALTHCHECK and the pod's probes run it."""
    return subprocess.run([sys.executable, "-m", "deploy.readiness", "--management", client.management_url,
                           "--key-file", str(client.key_file), *flags], cwd=REPO, capture_output=True).returncode


def test_readiness_and_liveness_probes_pass_while_serving(served):
    _, client, _ = served
    assert probe(client) == 0
    assert probe(client, "--live") == 0


def test_sigterm_stops_torchserve_gracefully_with_status_0(served):
    process, client, workdir = served
    torchserve = psutil.Process(process.pid).children(recursive=True)
    assert torchserve, "the entrypoint has no TorchServe processes"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0, (workdir / "entrypoint.log").read_text(errors="replace")[-4000:]
    gone, alive = psutil.wait_procs(torchserve, timeout=10)
    assert not alive, f"left running after the stop: {alive}"
    assert not client.readiness()
    assert probe(client, "--live") == 1
    assert "stopping TorchServe gracefully" in (workdir / "entrypoint.log").read_text()


def test_tampered_archive_is_refused_before_anything_starts(model_store, tmp_path):
    tampered = tmp_path / "model_store"
    shutil.copytree(model_store, tampered)
    victim = sorted(FAST_TRAINING)[0]
    with open(tampered / f"{victim}.mar", "ab") as archive:
        archive.write(b"\0")
    process = entrypoint(base_env(tampered, tmp_path / "run"), tmp_path)
    assert process.wait(timeout=60) == 2
    log = (tmp_path / "entrypoint.log").read_text()
    assert f"refusing to start: {tampered / victim}.mar does not match SHA256SUMS" in log
    assert not (tmp_path / "run" / "config.properties").exists()
