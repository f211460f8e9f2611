"""Overload on a real TorchServe: refusals are quick 503s with Retry-After, nothing else fails, and
the service is back at once. (The goodput it keeps is measured by `python -m loadtest.overload`,
README "Overload"; a test on a shared machine only asserts behaviour.)

Its own server, mnist with a queue of 8 so that a short burst of 640 connections overflows it.
"""

from __future__ import annotations

import shutil
import time

import pytest
import requests

from deploy.client import read_keys
from loadtest.launcher import EntrypointServer
from loadtest.load import BodyFiles, run_wrk
from loadtest.overload import Probe
from training.catalog import CATALOG

BURST_CONNECTIONS = 640
BURST_S = 3
QUEUE = 8
AFTER_S = 3
RECOVERY_BOUND_S = 2


@pytest.fixture(scope="module")
def small_queue_server(model_store, tmp_path_factory):
    settings = {"SERVE_JOB_QUEUE_SIZE": str(QUEUE)}
    with EntrypointServer(tmp_path_factory.mktemp("overload"), model_store, ["mnist"], settings).running() as server:
        yield server


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (make test installs it)")
def test_a_burst_past_the_queue_gets_quick_503s_with_retry_after_and_nothing_else_fails(small_queue_server):
    server = small_queue_server
    url = f"{server.inference_url}{CATALOG['mnist'].endpoint}"
    token = read_keys(server.key_file)["inference"]
    sample = CATALOG["mnist"].heldout_requests(1)[0]
    bodies = BodyFiles(CATALOG["mnist"].heldout_requests(16))
    rss_before = server.frontend().memory_info().rss
    with Probe(url, sample.body, sample.content_type, token) as probe:
        burst = run_wrk(url, bodies, token, BURST_CONNECTIONS, BURST_S, [server.process.pid])
        burst_end = time.monotonic()
        time.sleep(AFTER_S)
    during = probe.between(0, burst_end)
    refused = [outcome for outcome in during if outcome["status"] == 503]
    print(f"burst of {BURST_CONNECTIONS} connections: {burst.requests} requests, {burst.errors} non-2xx, "
          f"{burst.throughput_rps:,.0f} answers/s; probe {len(during)} requests, {len(refused)} refused")

    assert burst.requests - burst.errors > 0 and burst.errors > 0  # some served, the overflow refused
    assert {outcome["status"] for outcome in probe.outcomes} <= {200, 503}  # no timeout, no reset, no other 5xx
    assert refused and all(outcome["retry_after"] == "1" for outcome in refused)
    assert max(outcome["seconds"] for outcome in refused) < 2  # a refusal is quick, not a queued wait
    next_request = requests.post(url, data=sample.body, headers={"Authorization": f"Bearer {token}",
                                                             "Content-Type": sample.content_type}, timeout=10)
    assert next_request.status_code == 200  # recovered: the next request after the burst is served
    # wrk's exit does not end the burst inside the frontend: requests it had already read still fill the
    # queue for a moment, so a few more quick 503s may follow; then every probe is answered.
    after = probe.between(burst_end, float("inf"))
    statuses = [outcome["status"] for outcome in after]
    assert 200 in statuses
    first_answered = statuses.index(200)
    assert set(statuses[:first_answered]) <= {503} and set(statuses[first_answered:]) == {200}
    print(f"after the burst: {first_answered} more refusals, first answer "
          f"{after[first_answered]['sent'] - burst_end:.3f} s after wrk's exit")
    assert after[first_answered]["sent"] - burst_end < RECOVERY_BOUND_S
    assert server.frontend().memory_info().rss < rss_before + 512 * 2**20  # the burst left no heap behind
