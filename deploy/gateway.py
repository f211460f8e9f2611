"""The pod's front door: nginx in front of one TorchServe, one client key for every replica.

    python -m deploy.gateway     # SERVE_GATEWAY_* variables below; needs nginx + its njs module

TorchServe 0.12 draws fresh random keys at each start and writes them to its key_file.json,
so behind a load-balanced Service every pod has different keys and no client could hold the
right one. This gateway runs beside TorchServe in the pod (the sidecar image): nginx checks the
client's `Authorization: Bearer <key>` against the keys in a mounted Secret, in constant time,
and forwards the request to TorchServe on loopback with the pod's own inference key
(deploy/config/gateway.nginx.conf and gateway.js). Only the prediction routes and /ping pass;
management never does. Keys are never logged.

This module renders nginx's config from the settings and supervises nginx: SIGTERM (what
`docker stop` and the kubelet send) becomes nginx's graceful stop, so requests in flight finish.

  SERVE_GATEWAY_LISTEN      host:port to listen on (default 0.0.0.0:8000)
  SERVE_GATEWAY_KEYS_FILE   client keys, one per line: two lines while rotating (required)
  SERVE_GATEWAY_UPSTREAM    TorchServe's inference address (default http://127.0.0.1:8080)
  SERVE_GATEWAY_TS_KEY_FILE TorchServe's key_file.json (default /srv/run/key_file.json)
  SERVE_GATEWAY_MAX_BODY    largest request body in bytes (default 4194304, as config.properties)
  SERVE_GATEWAY_WORKERS     nginx worker processes (default 1: one handles thousands of requests/s)
  SERVE_GATEWAY_ADMIT_PER_MODEL  a cap on predictions let through to TorchServe at once, per model and
                            nginx worker; the next get nginx's 503 with Retry-After at once. Default 0:
                            no cap, TorchServe's own per-model queue refuses (README "Overload" measures why)
  SERVE_GATEWAY_RETRY_AFTER_S    the Retry-After of the gateway's own refusals, in seconds (default 1)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

CONFIG_DIR = Path(__file__).resolve().parent / "config"
TEMPLATE = CONFIG_DIR / "gateway.nginx.conf"
SCRIPT = CONFIG_DIR / "gateway.js"


@dataclass(frozen=True)
class GatewaySettings:
    keys_file: Path
    listen: str = "0.0.0.0:8000"
    upstream: str = "http://127.0.0.1:8080"
    torchserve_key_file: Path = Path("/srv/run/key_file.json")
    max_body: int = 4 * 1024 * 1024
    workers: int = 1
    admit_per_model: int = 0
    retry_after_s: int = 1

    @classmethod
    def from_env(cls, env: dict[str, str]) -> GatewaySettings:
        if not env.get("SERVE_GATEWAY_KEYS_FILE"):
            raise ValueError("SERVE_GATEWAY_KEYS_FILE must name the mounted file of client keys (a Secret)")
        defaults = cls(Path(env["SERVE_GATEWAY_KEYS_FILE"]))
        return cls(keys_file=defaults.keys_file,
                   listen=env.get("SERVE_GATEWAY_LISTEN", defaults.listen),
                   upstream=env.get("SERVE_GATEWAY_UPSTREAM", defaults.upstream),
                   torchserve_key_file=Path(env.get("SERVE_GATEWAY_TS_KEY_FILE", defaults.torchserve_key_file)),
                   max_body=int(env.get("SERVE_GATEWAY_MAX_BODY", defaults.max_body)),
                   workers=int(env.get("SERVE_GATEWAY_WORKERS", defaults.workers)),
                   admit_per_model=int(env.get("SERVE_GATEWAY_ADMIT_PER_MODEL", defaults.admit_per_model)),
                   retry_after_s=int(env.get("SERVE_GATEWAY_RETRY_AFTER_S", defaults.retry_after_s)))

    def upstream_address(self) -> str:
        address = urlparse(self.upstream)
        if address.scheme != "http" or not address.hostname or not address.port:
            raise ValueError(f"SERVE_GATEWAY_UPSTREAM must be http://host:port, not {self.upstream!r}")
        return f"{address.hostname}:{address.port}"


def render(settings: GatewaySettings, state_dir: Path) -> str:
    fields = {"WORKERS": str(settings.workers), "STATE_DIR": str(state_dir), "MAX_BODY": str(settings.max_body),
              "SCRIPT_DIR": str(SCRIPT.parent), "KEYS_FILE": str(settings.keys_file),
              "TORCHSERVE_KEY_FILE": str(settings.torchserve_key_file), "UPSTREAM": settings.upstream_address(),
              "LISTEN": settings.listen, "ADMIT_PER_MODEL": str(settings.admit_per_model),
              "RETRY_AFTER_S": str(settings.retry_after_s)}
    for value in fields.values():  # a value is pasted into nginx's syntax: no room for a second directive
        if not value or any(character in value for character in ";{}'\" \n#$"):
            raise ValueError(f"unusable gateway setting {value!r}")
    text = TEMPLATE.read_text()
    if not settings.admit_per_model:
        text = "".join(line for line in text.splitlines(keepends=True) if "@ADMIT_PER_MODEL@;" not in line)
    for name, value in fields.items():
        text = text.replace(f"@{name}@", value)
    if os.geteuid() == 0:  # nginx started by root would run its workers as nobody, who cannot read the keys
        text = "user root;\n" + text
    return text


def main() -> int:
    os.umask(0o077)
    try:
        settings = GatewaySettings.from_env(dict(os.environ))
        if not any(line.strip() for line in settings.keys_file.read_text().splitlines()):
            raise ValueError(f"{settings.keys_file} holds no key")
        state_dir = Path(tempfile.mkdtemp(prefix="gateway-"))
        config = state_dir / "nginx.conf"
        config.write_text(render(settings, state_dir))
    except (OSError, ValueError) as failure:
        print(f"[gateway] {failure}", file=sys.stderr)
        return 2
    print(f"[gateway] listening on {settings.listen}, forwarding to {settings.upstream}", file=sys.stderr, flush=True)
    nginx = subprocess.Popen(["nginx", "-p", str(state_dir), "-c", str(config), "-e", "stderr"])
    # SIGQUIT is nginx's graceful stop: no new connections, requests in flight answered.
    signal.signal(signal.SIGTERM, lambda *_: nginx.send_signal(signal.SIGQUIT))
    signal.signal(signal.SIGINT, lambda *_: nginx.send_signal(signal.SIGQUIT))
    return nginx.wait()


if __name__ == "__main__":
    sys.exit(main())
