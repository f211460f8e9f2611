"""The shipped config.properties carries the protection TorchServe 0.12 no longer patches."""

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture(scope="module")
def config() -> dict[str, str]:
    return properties((REPO / "config.properties").read_text())


@pytest.mark.parametrize("key", ["management_address", "metrics_address"])
def test_management_and_metrics_bind_only_to_loopback(config, key):
    assert urlparse(config[key]).hostname == "127.0.0.1"


def test_grpc_apis_bind_only_to_loopback(config):
    assert config["grpc_inference_address"] == "127.0.0.1"
    assert config["grpc_management_address"] == "127.0.0.1"


def test_the_open_inference_protocol_shares_the_inference_ports_and_their_token(config):
    # REST /v2 on inference_address, gRPC on grpc_inference_address: no port of its own to guard
    assert config["ts_open_inference_protocol"] == "true"
    assert config["disable_token_authorization"] == "false"


def test_inference_binds_to_loopback_by_default(config):
    assert urlparse(config["inference_address"]).hostname == "127.0.0.1"


def test_token_authorization_is_on_and_env_cannot_override_it(config):
    assert config["disable_token_authorization"] == "false"
    assert config["enable_envvars_config"] == "false"


def test_model_register_api_is_off(config):
    assert config["enable_model_api"] == "false"


def test_allowed_urls_admit_only_local_mar_files_from_the_model_store(config):
    pattern = re.compile(config["allowed_urls"].replace("\\\\", "\\"))
    assert pattern.fullmatch("file:///srv/app/model_store/mnist.mar")
    for url in ("http://attacker.example/evil.mar", "https://127.0.0.1/model_store/mnist.mar",
                "file:///etc/passwd", "file:///srv/model_store/../../etc/x.mar", "file:///tmp/../model_store/x.mar", "s3://bucket/model_store/a.mar"):
        assert not pattern.fullmatch(url), url


def test_request_and_response_sizes_are_bounded(config):
    assert 0 < int(config["max_request_size"]) <= 16 * 1024 * 1024
    assert 0 < int(config["max_response_size"]) <= 16 * 1024 * 1024


def test_metrics_are_prometheus(config):
    assert config["metrics_mode"] == "prometheus"


@pytest.mark.parametrize("path", ["config.properties", "deploy/config/cpu.properties", "deploy/config/gpu.properties"])
def test_inference_keys_expire_within_a_week(path):
    """A leaked key stops working on its own; the example configs are rendered from config.properties."""
    minutes = int(properties((REPO / path).read_text())["token_expiration_min"])
    assert 0 < minutes <= 7 * 24 * 60
