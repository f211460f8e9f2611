"""What only the running image shows: Docker's HEALTHCHECK, users, read-only root, exposure,
tampered archives, and stop and restart (`make docker-test`; the HTTP checks of the integration
suite run against the same container)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.containers import HARDENED, STOP_GRACE_S, ContainerServer, docker, unique
from training.catalog import CATALOG

IMAGE = os.environ.get("SERVE_TEST_IMAGE", "")
pytestmark = pytest.mark.skipif(not IMAGE, reason="needs SERVE_TEST_IMAGE: run `make docker-test`")
SERVICE_UID = 10001


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def test_dockers_own_healthcheck_says_healthy(server):
    assert docker("inspect", "-f", "{{.State.Health.Status}}", server.name).stdout.strip() == "healthy"


def test_the_key_comes_from_the_run_volume_and_answers_every_model(server, client):
    assert server.key_file.read_text().count('"key"') == 3  # inference, management, API
    for model in CATALOG:
        sample = CATALOG[model].heldout_requests(1)[0]
        response = client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type})
        assert response.status_code == 200, response.text


def test_only_inference_is_published_and_on_the_hosts_loopback_only(server):
    ports = docker("port", server.name).stdout.split()
    assert ports == ["8080/tcp", "->", f"127.0.0.1:{server.port}"], ports


def test_management_and_metrics_are_unreachable_from_the_host(server):
    container_ip = server.container_ip()
    assert connects(container_ip, 8080), "the container's address answers no port at all: the check proves nothing"
    for port in (8081, 8082, 7071):  # management, metrics, gRPC management: bound to the container's loopback
        assert not connects(container_ip, port), port


def test_every_process_runs_as_the_service_user(server):
    uids = server.process_uids()
    assert len(uids) >= 1 + sum(len(server.worker_pids(model)) for model in CATALOG)  # frontend + every worker
    assert set(uids.values()) == {SERVICE_UID}, uids


@pytest.mark.parametrize("path, writable", [("/srv/run/probe", True), ("/tmp/probe", True),
                                            ("/srv/app/model_store/probe", False), ("/srv/app/probe", False),
                                            ("/opt/venv/probe", False), ("/etc/probe", False), ("/probe", False)])
def test_only_the_run_volume_and_tmp_are_writable(server, path, writable):
    result = docker("exec", server.name, "sh", "-c", f"echo x > {path} && rm {path}", check=False)
    assert (result.returncode == 0) == writable, result.stderr


def test_a_tampered_archive_stops_the_container_before_serving_naming_the_file():
    tampered = unique("torchserve-tampered")
    model = next(iter(CATALOG))
    dockerfile = (f"FROM {IMAGE}\nUSER 0\nRUN printf 'tampered' >> /srv/app/model_store/{model}.mar\n"
                  f"USER {SERVICE_UID}:{SERVICE_UID}\n")
    docker("build", "-q", "-t", tampered, "-", stdin=dockerfile)
    try:
        result = docker("run", "--rm", "-v", f"{tampered}:/srv/run", *HARDENED, tampered, check=False, timeout=120)
        assert result.returncode == 2
        assert f"refusing to start: /srv/app/model_store/{model}.mar does not match SHA256SUMS" in result.stderr
    finally:
        docker("rmi", "-f", tampered, check=False)
        docker("volume", "rm", "-f", tampered, check=False)


def test_docker_stop_is_graceful_and_a_restart_on_the_same_volume_serves_again(tmp_path):
    container = ContainerServer(IMAGE, tmp_path)
    with container.running():
        first_key = container.key_file.read_text()
        exit_code, seconds = container.stop()
        assert exit_code == 0, container.logs()
        assert seconds < STOP_GRACE_S / 2, f"took {seconds:.0f} s of a {STOP_GRACE_S} s grace period"
        assert "stopping TorchServe gracefully" in container.logs()
        started = time.monotonic()
        container.restart()
        assert time.monotonic() - started < 240
        assert container.key_file.read_text() != first_key  # TorchServe drew fresh keys on the same volume
        model = next(iter(CATALOG))
        response = container.client().predict(model, data=CATALOG[model].heldout_requests(1)[0].body)
        assert response.status_code == 200, response.text
