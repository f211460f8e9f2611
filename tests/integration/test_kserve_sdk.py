"""KServe's own Python SDK (its v2 REST and gRPC clients) against a real TorchServe: the held-out
labels /predictions gives, a clean error for a hostile input, a refusal without the key. The SDK
runs in its own virtualenv (tests/clients/kserve_sdk.py says why)."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from deploy.client import read_keys
from training.catalog import CATALOG, REPO

KSERVE_PYTHON = REPO / ".venv-kserve" / "bin" / "python"
pytestmark = pytest.mark.skipif(not KSERVE_PYTHON.exists(),
                                reason="needs the KServe SDK's virtualenv: `make kserve-client` (`make test` builds it)")


@pytest.fixture(scope="module")
def token(server) -> str:
    return read_keys(server.key_file)["inference"]


def kserve_infer(server, tmp_path, transport: str, model: str, elements: list[bytes], token: str | None) -> dict:
    spec = {"transport": transport, "base_url": server.inference_url, "target": server.grpc_target, "model": model,
            "input": CATALOG[model].handler_class().signature.input.name, "token": token,
            "elements": [base64.b64encode(element).decode() for element in elements]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([str(KSERVE_PYTHON), str(REPO / "tests" / "clients" / "kserve_sdk.py"),
                           str(tmp_path / "spec.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("name", [name for name, entry in CATALOG.items() if entry.speaks_v2])
def test_kserve_sdk_gets_the_labels_predictions_gives(server, client, token, tmp_path, transport, name):
    entry = CATALOG[name]
    samples = entry.heldout_requests(6)
    expected = [client.predict(name, data=s.body, headers={"Content-Type": s.content_type}).json() for s in samples]
    expected = [str(answer["label"] if isinstance(answer, dict) else answer[0]["label"]) for answer in expected]
    answer = kserve_infer(server, tmp_path, transport, name, [entry.v2_element(s) for s in samples], token)
    assert answer.get("labels") == expected, answer
    assert answer["outputs"] == [output.name for output in entry.handler_class().signature.outputs]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_kserve_sdk_sees_a_clean_error_for_a_hostile_input_and_a_refusal_without_the_key(
        server, token, tmp_path, transport):
    broken = kserve_infer(server, tmp_path, transport, "mnist", [b"not an image"], token)
    assert "error" in broken and "image" in broken["message"] and "Traceback" not in broken["message"], broken
    sample = CATALOG["mnist"].heldout_requests(1)[0]
    refused = kserve_infer(server, tmp_path, transport, "mnist", [sample.body], "wrong-key")
    assert "error" in refused, refused
    # TorchServe's token check answers a bad key with 400 over REST, PERMISSION_DENIED over gRPC
    assert "PERMISSION_DENIED" in refused["message"] if transport == "grpc" else "400 Bad Request" in refused["message"]
    assert "Token Authorization failed" in refused["message"]
