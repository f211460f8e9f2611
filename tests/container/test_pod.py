"""The Kubernetes pod without a cluster: deploy/k8s rendered by kustomize, run with Docker as the
kubelet would (tests/containers.py), compared with the standalone container (`make docker-test`)."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import requests
from PIL import Image

from deploy.client import read_keys
from tests.containers import KubernetesPod, rendered_manifests
from tests.images import encode
from training.catalog import CATALOG

REPO = Path(__file__).resolve().parents[2]
IMAGES = {"torchserve": os.environ.get("SERVE_TEST_IMAGE", ""),
          "gateway": os.environ.get("SERVE_TEST_GATEWAY_IMAGE", "")}
pytestmark = pytest.mark.skipif(not all(IMAGES.values()), reason="needs the images: run `make docker-test`")
CLIENT_KEY = "pod-client-key-one"


@pytest.fixture(scope="module")
def pod(tmp_path_factory):
    documents = rendered_manifests("cpu")
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    config_maps = {doc["metadata"]["name"]: doc["data"] for doc in documents if doc["kind"] == "ConfigMap"}
    secret_dir = tmp_path_factory.mktemp("secret")
    with KubernetesPod(deployment, config_maps, IMAGES, secret_dir).running([CLIENT_KEY]) as running:
        yield running


def send(pod: KubernetesPod, model: str, key: str | None, method: str = "POST") -> requests.Response:
    sample = CATALOG[model].heldout_requests(1)[0]
    headers = {"Content-Type": sample.content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    return requests.request(method, f"{pod.url}/predictions/{model}", data=sample.body, headers=headers, timeout=60)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_key_from_the_secret_gets_the_answers_the_container_gives_directly(pod, client, method):
    for model in CATALOG:
        sample = CATALOG[model].heldout_requests(1)[0]
        direct = client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type})
        through_door = send(pod, model, CLIENT_KEY, method)
        assert through_door.status_code == 200, through_door.text
        assert through_door.json() == direct.json()


@pytest.mark.parametrize("key", [None, "wrong-key", "pod-client-key-on"])
def test_a_wrong_or_missing_key_is_refused(pod, key):
    response = send(pod, next(iter(CATALOG)), key)
    assert response.status_code == 401 and "key" in response.json()["message"]


def test_the_pods_own_torchserve_key_is_not_a_client_key(pod):
    pod_keys = json.loads(pod.exec("torchserve", "cat", "/srv/state/run/key_file.json"))
    assert send(pod, next(iter(CATALOG)), pod_keys["inference"]["key"]).status_code == 401


@pytest.mark.parametrize("path", ["/models", "/models/mnist", "/metrics", "/api-description"])
def test_management_is_unreachable_through_the_door(pod, path):
    response = requests.get(pod.url + path, headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=30)
    assert response.status_code == 404


def test_management_is_not_bound_to_the_pod_address(pod):
    pod_ip = pod.ip()
    with socket.create_connection((pod_ip, 8000), timeout=3):  # the pod's address is reachable at all
        pass
    for port in (8080, 8081, 7070):  # TorchServe's inference, management, gRPC: the pod's loopback only
        with pytest.raises(OSError):
            socket.create_connection((pod_ip, port), timeout=3).close()


def test_rotating_the_secret_to_two_keys_and_back_to_one_needs_no_restart(pod):
    model = next(iter(CATALOG))
    started = {name: pod.started_at(name) for name in ("torchserve", "gateway")}
    pod.write_secret([CLIENT_KEY, "pod-client-key-two"])
    assert [send(pod, model, key).status_code for key in (CLIENT_KEY, "pod-client-key-two")] == [200, 200]
    pod.write_secret(["pod-client-key-two"])
    assert [send(pod, model, key).status_code for key in (CLIENT_KEY, "pod-client-key-two")] == [401, 200]
    pod.write_secret([CLIENT_KEY])
    assert {name: pod.started_at(name) for name in started} == started


def readme_curl_examples() -> list[str]:
    """The curl lines of the README's request examples, continuations joined."""
    block = (REPO / "README.md").read_text().split("```bash\nKEY=", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip().startswith("curl ")]


def run_curl(command: str, base_url: str, key: str, folder: Path) -> dict | list | bytes:
    """The JSON answer, or the bytes of the file an example saves (`-o name`: the generator's PNG)."""
    command = command.replace("http://127.0.0.1:8080", base_url)
    result = subprocess.run(command, shell=True, cwd=folder, env={**os.environ, "KEY": key}, capture_output=True,
                            text=True, timeout=60, check=True)
    saved = re.search(r" -o (\S+)", command)
    if saved:
        body = (folder / saved.group(1)).read_bytes()
        assert body.startswith(b"\x89PNG\r\n\x1a\n"), (command, body[:200])
        return body
    return json.loads(result.stdout)


def write_example_file(command: str, folder: Path) -> None:
    """The file an example uploads (`-T name` or `-F data=@name`): a held-out sample of the model it
    calls, in the format its name says."""
    uploaded = re.search(r"(?:-T |data=@)(\S+)", command)
    if uploaded:
        model = re.search(r"/predictions/(\w+)", command).group(1)
        image = Image.open(io.BytesIO(CATALOG[model].heldout_requests(1)[0].body))
        fmt = "JPEG" if uploaded.group(1).endswith((".jpg", ".jpeg")) else "PNG"
        (folder / uploaded.group(1)).write_bytes(encode(image.convert("RGB") if fmt == "JPEG" else image, fmt))


def test_every_readme_example_works_through_the_door_as_directly(pod, server, tmp_path):
    examples = readme_curl_examples()
    assert len(examples) >= 7, examples
    direct_key = read_keys(server.key_file)["inference"]
    for command in examples:
        write_example_file(command, tmp_path)
        direct = run_curl(command, server.inference_url, direct_key, tmp_path)
        assert not (isinstance(direct, dict) and "code" in direct), (command, direct)
        assert run_curl(command, pod.url, CLIENT_KEY, tmp_path) == direct, command
