"""A small TorchServe client: token auth, predictions, and readiness.

Readiness means every expected model has at least one READY worker (management API's
describe), not `/ping`: TorchServe's `/ping` answers Healthy while workers crash-loop.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import requests

# Where `make serve` (the entrypoint with SERVE_RUN_DIR=run) has TorchServe write its keys.
DEFAULT_KEY_FILE = Path("run/key_file.json")


def read_keys(key_file: Path) -> dict[str, str]:
    """{"inference": ..., "management": ..., "API": ...} from TorchServe's key_file.json."""
    keys = json.loads(Path(key_file).read_text())
    return {kind: entry["key"] for kind, entry in keys.items()}


@dataclass
class Readiness:
    ready: bool
    reasons: list[str]  # why not, one line per model that is not ready

    def __bool__(self) -> bool:
        return self.ready


class TorchServeClient:
    def __init__(self, inference_url: str = "http://127.0.0.1:8080",
                 management_url: str = "http://127.0.0.1:8081",
                 key_file: Path | None = DEFAULT_KEY_FILE, timeout: float = 30):
        self.inference_url = inference_url.rstrip("/")
        self.management_url = management_url.rstrip("/")
        self.key_file = key_file
        self.timeout = timeout
        self.session = requests.Session()

    def auth_headers(self, kind: str) -> dict[str, str]:
        if self.key_file is None:
            return {}
        return {"Authorization": f"Bearer {read_keys(self.key_file)[kind]}"}

    def predict(self, model: str, data=None, json_body=None, headers: dict | None = None) -> requests.Response:
        """POST to /predictions/<model>: `data` as the raw body, or `json_body` as JSON."""
        return self.session.post(f"{self.inference_url}/predictions/{model}", data=data, json=json_body,
                                 headers={**self.auth_headers("inference"), **(headers or {})}, timeout=self.timeout)

    def describe(self, model: str) -> list[dict]:
        response = self.session.get(f"{self.management_url}/models/{model}", headers=self.auth_headers("management"),
                                    timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def registered_models(self) -> list[str]:
        response = self.session.get(f"{self.management_url}/models", headers=self.auth_headers("management"),
                                    timeout=self.timeout)
        response.raise_for_status()
        return [entry["modelName"] for entry in response.json()["models"]]

    def readiness(self, models: list[str] | None = None) -> Readiness:
        """Ready when each model (default: every registered one) has a READY worker."""
        try:
            models = models or self.registered_models()
            if not models:
                return Readiness(False, ["no model is registered"])
            reasons = []
            for model in models:
                workers = [worker for version in self.describe(model) for worker in version.get("workers", [])]
                ready = sum(worker["status"] == "READY" for worker in workers)
                if ready == 0:
                    states = ", ".join(sorted({worker["status"] for worker in workers})) or "no workers"
                    reasons.append(f"{model}: 0/{len(workers)} workers READY ({states})")
            return Readiness(not reasons, reasons)
        except (requests.RequestException, OSError, KeyError, ValueError) as error:
            return Readiness(False, [f"management API not answering: {error}"])

    def wait_until_ready(self, models: list[str] | None = None, timeout: float = 120,
                         interval: float = 0.25, is_alive=lambda: True) -> Readiness:
        """Poll readiness until ready, `timeout` seconds pass, or `is_alive()` turns false."""
        deadline = time.monotonic() + timeout
        status = self.readiness(models)
        while not status and time.monotonic() < deadline and is_alive():
            time.sleep(interval)
            status = self.readiness(models)
        return status
