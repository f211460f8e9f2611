"""deploy/entrypoint.py with deployment settings: they reach TorchServe, files stay private,
probes tell the truth, SIGTERM stops it cleanly and a tampered archive never starts."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys

import psutil
import pytest

from deploy.client import TorchServeClient
from loadtest.launcher import REPO, EntrypointServer
from training.catalog import CATALOG

ENV_BATCH_SIZE = 3  # differs from every shipped model-config, so the test sees the env win
SETTINGS = {"SERVE_CPU_COUNT": "1", "SERVE_GPU_COUNT": "0", "SERVE_WORKERS_PER_MODEL": "1",
            "SERVE_BATCH_SIZE": str(ENV_BATCH_SIZE)}


@pytest.fixture(scope="module")
def served(model_store, tmp_path_factory):
    """The entrypoint with deployment settings; the SIGTERM test stops it, the finally in any case."""
    with EntrypointServer(tmp_path_factory.mktemp("entrypoint"), model_store, list(CATALOG),
                          SETTINGS).running() as server:
        yield server


def test_entrypoint_serves_every_model_with_env_settings_and_private_files(served):
    client = served.client()
    for name, entry in CATALOG.items():
        response = client.predict(name, data=entry.heldout_requests(1)[0].body)
        assert response.status_code == 200, response.text
        description = client.describe(name)[0]
        assert description["batchSize"] == ENV_BATCH_SIZE
        assert description["deviceType"] == "cpu"
        assert description["minWorkers"] == description["maxWorkers"] == 1
    for private in (served.run_dir, served.run_dir / "tmp", served.run_dir / "logs"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700, private
    assert stat.S_IMODE(served.key_file.stat().st_mode) == 0o600


def probe(client: TorchServeClient, *arguments: str) -> int:
    """deploy.readiness as the container's HEALTHCHECK and the pod's probes run it."""
    return subprocess.run([sys.executable, "-m", "deploy.readiness", "--management", client.management_url,
                           "--key-file", str(client.key_file), *arguments], cwd=REPO, capture_output=True).returncode


def test_readiness_and_liveness_probes_pass_while_serving(served):
    client = served.client()
    assert probe(client) == 0
    assert probe(client, "--live") == 0
    assert probe(client, "no-such-model") == 1  # a model that is not READY fails the probe


def test_sigterm_stops_torchserve_gracefully_with_status_0(served):
    client = served.client()
    torchserve = psutil.Process(served.process.pid).children(recursive=True)
    assert torchserve, "the entrypoint has no TorchServe processes"
    assert served.stop() == 0, served.logs()
    gone, alive = psutil.wait_procs(torchserve, timeout=10)
    assert not alive, f"left running after the stop: {alive}"
    assert not client.readiness()
    assert probe(client, "--live") == 1
    assert not served.key_file.exists()  # keys die with the server
    assert "stopping TorchServe gracefully" in (served.workdir / "entrypoint.log").read_text()


def test_tampered_archive_is_refused_before_anything_starts(model_store, tmp_path):
    tampered = tmp_path / "model_store"
    shutil.copytree(model_store, tampered)
    victim = sorted(CATALOG)[0]
    with open(tampered / f"{victim}.mar", "ab") as archive:
        archive.write(b"\0")
    server = EntrypointServer(tmp_path / "server", tampered, list(CATALOG))
    server.start()
    try:
        assert server.process.wait(timeout=60) == 2
    finally:
        server.stop()
    log = (server.workdir / "entrypoint.log").read_text()
    assert f"refusing to start: {tampered / victim}.mar does not match SHA256SUMS" in log
    assert not (server.run_dir / "config.properties").exists()
