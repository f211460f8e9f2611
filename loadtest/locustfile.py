"""Locust load test of the running service: one user class per model, real held-out requests.

    make loadtest                                   # headless, bounded, CSV + HTML in loadtest/results/locust/
    make loadtest LOADTEST_MIX="mnist=3 resnet=1"   # relative weights; models left out get no traffic
    make loadtest USERS=50 SPAWN_RATE=10 DURATION=2m HOST=http://127.0.0.1:8080

Environment: LOADTEST_MIX (default: every registered model, weight 1), LOADTEST_KEY_FILE
(TorchServe's key_file.json, default run/key_file.json), LOADTEST_ALLOW_REMOTE=1 to aim at a
host that is not loopback (only at a service you own).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import gevent
from locust import FastHttpUser, between, events, task
from locust.runners import MasterRunner

from deploy.client import DEFAULT_KEY_FILE, read_keys
from training.catalog import CATALOG, ModelEntry

SAMPLES_PER_MODEL = 64


def parse_mix(text: str) -> dict[str, int]:
    """"mnist=3 resnet=1" (spaces or commas) -> {"mnist": 3, "resnet": 1}; a bare name weighs 1."""
    mix = {}
    for item in text.replace(",", " ").split():
        name, _, weight = item.partition("=")
        if name not in CATALOG:
            raise SystemExit(f"LOADTEST_MIX names unknown model {name!r}; known: {', '.join(CATALOG)}")
        mix[name] = int(weight or 1)
        if mix[name] < 0:
            raise SystemExit(f"LOADTEST_MIX weight for {name} must be >= 0")
    return {name: weight for name, weight in mix.items() if weight > 0}


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (socket.gaierror, ValueError):
        return False


def auth_headers() -> dict[str, str]:
    key_file = Path(os.environ.get("LOADTEST_KEY_FILE", DEFAULT_KEY_FILE))
    if not key_file.exists():
        raise SystemExit(f"{key_file} not found: start the service (`make serve`) or set LOADTEST_KEY_FILE")
    return {"Authorization": f"Bearer {read_keys(key_file)['inference']}"}


def model_user(spec: ModelEntry, weight: int, headers: dict[str, str]) -> type[FastHttpUser]:
    """A user class that posts `spec`'s held-out requests in rotation."""
    samples = spec.heldout_requests(SAMPLES_PER_MODEL)

    class ModelUser(FastHttpUser):
        wait_time = between(0, 0)  # closed loop: each user sends its next request when answered

        def on_start(self):
            self.next_sample = 0

        @task
        def predict(self):
            sample = samples[self.next_sample % len(samples)]
            self.next_sample += 1
            with self.client.post(spec.endpoint, data=sample.body, name=spec.endpoint, catch_response=True,
                                  headers={**headers, "Content-Type": sample.content_type}) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    ModelUser.__name__ = ModelUser.__qualname__ = f"{spec.name.capitalize()}User"
    ModelUser.weight = weight
    return ModelUser


MIX = parse_mix(os.environ.get("LOADTEST_MIX") or " ".join(CATALOG))
HEADERS = auth_headers()
# Locust runs every User subclass bound to a module-level name: bind each one exactly once.
globals().update({user.__name__: user for user in (model_user(CATALOG[name], weight, HEADERS)
                                                   for name, weight in MIX.items())})
# Loading the samples blocked the gevent loop for seconds; without this its cached clock is stale
# and locust's --run-time timer fires at once.
gevent.get_hub().loop.update_now()


@events.test_start.add_listener
def refuse_remote_targets(environment, **_):
    host = environment.host or ""
    if not is_loopback(host) and os.environ.get("LOADTEST_ALLOW_REMOTE") != "1":
        sys.stderr.write(f"refusing to load-test {host!r}: not a loopback address (set LOADTEST_ALLOW_REMOTE=1 "
                         "to aim at a service you own)\n")
        environment.process_exit_code = 2
        environment.runner.quit()


@events.quitting.add_listener
def print_summary(environment, **_):
    if isinstance(environment.runner, MasterRunner):
        return
    print("\nload test summary (latencies in ms)")
    print(f"{'endpoint':<24}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50':>8}{'p95':>8}{'p99':>8}")
    for entry in [*environment.stats.entries.values(), environment.stats.total]:
        name = entry.name if entry is not environment.stats.total else "all"
        print(f"{name:<24}{entry.num_requests:>10}{entry.num_failures:>8}{entry.total_rps:>9.1f}"
              f"{entry.get_response_time_percentile(0.5):>8.0f}{entry.get_response_time_percentile(0.95):>8.0f}"
              f"{entry.get_response_time_percentile(0.99):>8.0f}")
