"""What the running server exposes: listening sockets, keys, logs."""

from __future__ import annotations

import ipaddress
import stat
import subprocess

import psutil

from deploy.client import read_keys
from tests.conftest import REPO


def frontend_process(server) -> psutil.Process:
    worker = psutil.Process(next(iter(server.worker_pids("mnist"))))
    return worker.parent()


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback  # Java binds IPv4 as ::ffff:127.0.0.1


def test_every_listening_socket_of_the_server_is_loopback_only(server):
    frontend = frontend_process(server)
    listening = [c.laddr for c in frontend.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert {address.port for address in listening} >= {server.ports["inference"], server.ports["management"],
                                                        server.ports["metrics"]}
    assert all(is_loopback(address.ip) for address in listening), listening


def test_keys_are_private_to_the_owner_and_never_logged(server, client):
    client.predict("mnist", data=b"not an image")
    assert stat.S_IMODE(server.key_file.stat().st_mode) == 0o600
    keys = read_keys(server.key_file)
    logs = [server.workdir / "entrypoint.log", *(server.run_dir / "logs").glob("*.log")]
    assert len(logs) >= 3 and all(log.stat().st_size > 0 for log in logs[:2]), logs
    for log in logs:
        text = log.read_text(errors="replace")
        leaked = [kind for kind, key in keys.items() if key in text]
        assert not leaked, f"{leaked} key(s) appear in {log.name}"


def test_keys_and_archives_cannot_be_committed():
    for path in ("key_file.json", "run/key_file.json", "model_store/mnist.mar", "run/logs/model_log.log",
                 "artifacts/mnist/metadata.json"):
        ignored = subprocess.run(["git", "check-ignore", "--quiet", path], cwd=REPO).returncode == 0
        assert ignored, f"{path} is not ignored by git"
