"""deploy/gateway.py renders a config nginx accepts, and refuses settings that would change its meaning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy.gateway import GatewaySettings, render


def nginx_accepts(text: str, folder: Path) -> subprocess.CompletedProcess:
    (folder / "nginx.conf").write_text(text)
    return subprocess.run(["nginx", "-t", "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr"],
                          capture_output=True, text=True)


def test_the_rendered_config_and_its_script_pass_nginxs_own_check(tmp_path):
    settings = GatewaySettings.from_env({"SERVE_GATEWAY_KEYS_FILE": str(tmp_path / "keys"),
                                         "SERVE_GATEWAY_LISTEN": "127.0.0.1:18000", "SERVE_GATEWAY_MAX_BODY": "1234",
                                         "SERVE_GATEWAY_ADMIT_PER_MODEL": "48", "SERVE_GATEWAY_RETRY_AFTER_S": "2"})
    result = nginx_accepts(render(settings, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    text = render(settings, tmp_path)
    assert "client_max_body_size 1234;" in text
    assert "limit_conn per_model 48;" in text and "add_header Retry-After 2 always;" in text
    uncapped = render(GatewaySettings(tmp_path / "keys"), tmp_path)
    assert "limit_conn per_model" not in uncapped and nginx_accepts(uncapped, tmp_path).returncode == 0


def test_a_broken_template_is_caught_by_the_same_check(tmp_path):
    text = render(GatewaySettings(tmp_path / "keys"), tmp_path).replace("proxy_pass http://torchserve;", "proxy_pass;")
    assert nginx_accepts(text, tmp_path).returncode != 0


def test_the_keys_file_is_required():
    with pytest.raises(ValueError, match="SERVE_GATEWAY_KEYS_FILE"):
        GatewaySettings.from_env({})


@pytest.mark.parametrize("field, value", [("listen", "0.0.0.0:8000; include /etc/passwd"),
                                          ("keys_file", Path("/run/keys {")), ("listen", "")])
def test_a_setting_that_would_add_nginx_syntax_is_refused(tmp_path, field, value):
    settings = GatewaySettings(**{"keys_file": tmp_path / "keys", field: value})
    with pytest.raises(ValueError, match="unusable gateway setting"):
        render(settings, tmp_path)


@pytest.mark.parametrize("upstream", ["https://127.0.0.1:8080", "127.0.0.1:8080", "http://127.0.0.1"])
def test_the_upstream_must_be_plain_http_with_a_port(tmp_path, upstream):
    with pytest.raises(ValueError, match="SERVE_GATEWAY_UPSTREAM"):
        render(GatewaySettings(tmp_path / "keys", upstream=upstream), tmp_path)
