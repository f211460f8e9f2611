"""Auth gateway in front of one TorchServe: one client key for every replica.

    python -m deploy.gateway     # SERVE_GATEWAY_* variables below

TorchServe 0.12 draws fresh random keys at each start and writes them to its key_file.json,
so behind a load-balanced Service every pod has different keys and no client could hold the
right one. This gateway runs beside TorchServe in the pod (a sidecar from the same image):
it checks the client's `Authorization: Bearer <key>` against the keys in a mounted Secret,
then forwards the request to TorchServe on loopback with the pod's own inference key. Only
the inference API's prediction routes and /ping pass; management never does. Keys are never
logged.

  SERVE_GATEWAY_LISTEN      host:port to listen on (default 0.0.0.0:8000)
  SERVE_GATEWAY_KEYS_FILE   client keys, one per line: two lines while rotating (required)
  SERVE_GATEWAY_UPSTREAM    TorchServe's inference address (default http://127.0.0.1:8080)
  SERVE_GATEWAY_TS_KEY_FILE TorchServe's key_file.json (default /srv/run/key_file.json)
  SERVE_GATEWAY_MAX_BODY    largest request body in bytes (default 4194304, as config.properties)
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import os
import re
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from deploy.client import read_keys

logger = logging.getLogger("gateway")
# Prediction routes of TorchServe's inference API, and its liveness answer.
ALLOWED_ROUTE = re.compile(r"^/(predictions/[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)?|ping)/?(\?.*)?$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "authorization",
              "proxy-authorization", "host", "content-length"}


class GatewayConfig:
    def __init__(self, keys_file: Path, upstream: str, torchserve_key_file: Path, max_body: int):
        self.keys_file = keys_file
        self.upstream = urlparse(upstream)
        self.torchserve_key_file = torchserve_key_file
        self.max_body = max_body

    def client_keys(self) -> list[bytes]:
        """Read per request: a rotated Secret (kubelet updates the file) takes effect at once."""
        return [line.strip().encode() for line in self.keys_file.read_text().splitlines() if line.strip()]

    def torchserve_key(self) -> str:
        return read_keys(self.torchserve_key_file)["inference"]


def error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"code": status, "type": HTTPStatus(status).phrase, "message": message}).encode()
    return status, {"Content-Type": "application/json"}, body


class GatewayHandler(BaseHTTPRequestHandler):
    config: GatewayConfig
    timeout = 30  # seconds a client may take to send its request (slow uploads are cut off)
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.respond(*self.forward())

    def do_POST(self):
        self.respond(*self.forward())

    def authorized(self) -> bool:
        offered = self.headers.get("Authorization", "")
        token = offered.removeprefix("Bearer ").strip().encode()
        return bool(token) and any(hmac.compare_digest(token, key) for key in self.config.client_keys())

    def forward(self) -> tuple[int, dict[str, str], bytes]:
        keep_alive = not self.close_connection
        self.close_connection = True  # until the body is read, no further request can follow on this connection
        if not ALLOWED_ROUTE.match(self.path):
            return error(404, f"{urlparse(self.path).path} is not served here: use /predictions/<model>")
        if self.path.startswith("/predictions") and not self.authorized():
            return error(401, "missing or wrong key: send 'Authorization: Bearer <client key>'")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return error(411, "send the body with a Content-Length")
        declared = self.headers.get("Content-Length") or "0"
        if not declared.isdigit():
            return error(400, "Content-Length must be a number of bytes")
        length = int(declared)
        if length > self.config.max_body:
            return error(413, f"request body of {length} bytes exceeds the limit of {self.config.max_body}")
        body = self.rfile.read(length) if length else None
        self.close_connection = not keep_alive
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        try:
            headers["Authorization"] = f"Bearer {self.config.torchserve_key()}"
        except (OSError, KeyError, ValueError):
            return error(503, "TorchServe is starting: its key file is not written yet")
        upstream = http.client.HTTPConnection(self.config.upstream.hostname, self.config.upstream.port, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            passed = {name: value for name, value in response.getheaders() if name.lower() not in HOP_BY_HOP}
            return response.status, passed, response.read()
        except OSError as failure:
            return error(502, f"TorchServe did not answer: {failure.__class__.__name__}")
        finally:
            upstream.close()

    def respond(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # method, path and status only: never headers, so never keys
        logger.info("%s %s", self.address_string(), format % args)


def make_server(listen: str, config: GatewayConfig) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")
    handler = type("ConfiguredGatewayHandler", (GatewayHandler,), {"config": config})
    server = ThreadingHTTPServer((host, int(port)), handler)
    server.daemon_threads = True
    return server


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[gateway] %(message)s", stream=sys.stderr)
    os.umask(0o077)
    keys_file = os.environ.get("SERVE_GATEWAY_KEYS_FILE")
    if not keys_file or not Path(keys_file).is_file():
        logger.error("SERVE_GATEWAY_KEYS_FILE must name the mounted file of client keys (a Secret)")
        return 2
    config = GatewayConfig(Path(keys_file), os.environ.get("SERVE_GATEWAY_UPSTREAM", "http://127.0.0.1:8080"),
                           Path(os.environ.get("SERVE_GATEWAY_TS_KEY_FILE", "/srv/run/key_file.json")),
                           int(os.environ.get("SERVE_GATEWAY_MAX_BODY", 4 * 1024 * 1024)))
    if not config.client_keys():
        logger.error("%s holds no key", keys_file)
        return 2
    server = make_server(os.environ.get("SERVE_GATEWAY_LISTEN", "0.0.0.0:8000"), config)
    # shutdown() waits for serve_forever() to return, so it must run outside the signalled thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    logger.info("listening on %s:%d, forwarding to %s", *server.server_address[:2], config.upstream.geturl())
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
