"""deploy/compose.yaml run by a real Compose implementation (Debian's docker-compose) on the test image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from loadtest.launcher import free_port
from tests.containers import docker, inspect, unique, wait_until_healthy
from training.catalog import CATALOG

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
IMAGE = os.environ.get("SERVE_TEST_IMAGE", "")
pytestmark = pytest.mark.skipif(not IMAGE, reason="needs SERVE_TEST_IMAGE: run `make docker-test`")


class Compose:
    def __init__(self):
        self.project, self.port = unique("compose"), free_port()
        self.env = {**os.environ, "SERVE_IMAGE": IMAGE, "SERVE_PORT": str(self.port)}

    def __call__(self, *args: str, timeout: float = 180) -> str:
        command = [shutil.which("docker-compose") or "docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE),
                   *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def container(self, service: str = "cpu") -> str:
        return self("ps", "-q", service).strip()


@pytest.fixture(scope="module")
def compose():
    project = Compose()
    project("up", "-d", "--no-build", "cpu")
    try:
        wait_until_healthy(project.container())
        yield project
    finally:
        project("down", "-v", "--timeout", "70", timeout=300)


def test_compose_up_serves_every_model_with_the_key_read_as_the_file_says(compose):
    keys = json.loads(compose("exec", "-T", "cpu", "cat", "/srv/run/key_file.json"))
    for model in CATALOG:
        sample = CATALOG[model].heldout_requests(1)[0]
        response = requests.post(f"http://127.0.0.1:{compose.port}/predictions/{model}", data=sample.body,
                                 headers={"Authorization": f"Bearer {keys['inference']['key']}",
                                          "Content-Type": sample.content_type}, timeout=60)
        assert response.status_code == 200, response.text


def test_compose_applies_the_hardening_and_limits_it_declares(compose):
    host = json.loads(inspect(compose.container(), "{{json .HostConfig}}"))
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"] and "/tmp" in host["Tmpfs"]
    assert host["NanoCpus"] == 2 * 10**9 and host["Memory"] == 4 * 2**30
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(compose.port)}]}


def test_a_plain_up_leaves_the_gpu_service_to_its_profile(compose):
    compose("up", "-d", "--no-build")  # every service without a profile: the GPU one needs `--profile gpu`
    listed = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={compose.project}",
                    "--format", '{{.Label "com.docker.compose.service"}}').stdout.split()
    assert listed == ["cpu"]


def test_compose_stop_is_graceful(compose):
    container = compose.container()
    compose("stop", "cpu", timeout=120)
    assert inspect(container, "{{.State.ExitCode}}") == "0"
