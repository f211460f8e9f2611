"""/metrics after known requests: the handler's metrics count exactly what was sent, per model."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from tests.heldout import mnist_test_digits, sentiment_test_tweets
from tests.images import png_of_pixels
from training.catalog import CATALOG

SAMPLE_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
RELAY_TIMEOUT_S = 15  # the worker's metric lines reach /metrics asynchronously


@dataclass(frozen=True)
class Sent:
    """A request of the burst: body (raw bytes) or json, and the status it must get."""
    status: int
    examples: int = 0
    body: bytes | None = None
    json: object = None


def mnist_burst() -> list[Sent]:
    digits = [Sent(200, 1, body=png_of_pixels(pixels)) for pixels in mnist_test_digits()[0][:8]]
    return [*digits, *[Sent(415, body=b"not an image at all")] * 3, *[Sent(400, body=b"")] * 2]


def sentiment_burst() -> list[Sent]:
    texts = sentiment_test_tweets()[0]
    lists = [Sent(200, 3, json=texts[i:i + 3]) for i in range(0, 12, 3)]
    singles = [Sent(200, 1, body=text.encode()) for text in texts[12:15]]
    too_many = ["ok"] * (CATALOG["sentiment"].handler_settings()["max_texts_per_request"] + 1)
    return [*lists, *singles, *[Sent(400, json=[])] * 2, Sent(413, json=too_many)]


BURSTS = {"mnist": mnist_burst, "sentiment": sentiment_burst}


class Samples(dict):
    """One scrape of /metrics: (name, labels) -> value."""

    def total(self, name: str, **labels: str) -> float:
        """Sum over the series of `name` that carry `labels` (whatever their Hostname, Level)."""
        return sum(value for (metric, series), value in self.items()
                   if metric == name and set(labels.items()) <= set(series))

    def statuses(self, model: str) -> Counter:
        """HTTP status -> requests of `model` the handler refused with it."""
        counts = Counter()
        for (metric, series), value in self.items():
            labels = dict(series)
            if metric == "HandlerRejectedRequests" and labels["ModelName"] == model:
                counts[labels["Status"]] += value
        return counts

    def rejected_since(self, before: Samples, model: str) -> Counter:
        return self.statuses(model) - before.statuses(model)


def scrape(server) -> Samples:
    response = requests.get(f"{server.metrics_url}/metrics", timeout=10)
    response.raise_for_status()
    samples = Samples()
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, labels, value = SAMPLE_LINE.match(line).groups()
            samples[name, frozenset(LABEL.findall(labels or ""))] = float(value)
    return samples


def settled_scrape(server, until=lambda samples: True) -> Samples:
    """A scrape that `until` accepts and whose handler metrics no line still in flight changes
    (stable for 0.5 s). Only the handler's series are compared: each scrape is itself a request
    that the frontend's Requests2XX counts."""
    deadline, previous = time.monotonic() + RELAY_TIMEOUT_S, None
    while time.monotonic() < deadline:
        samples = scrape(server)
        handler_series = {key: value for key, value in samples.items() if key[0].startswith("Handler")}
        if handler_series == previous and until(samples):
            return samples
        previous = handler_series
        time.sleep(0.5)
    return samples


def send(client, model: str, sent: Sent) -> requests.Response:
    return client.predict(model, data=sent.body, json_body=sent.json)


def send_together(client, model: str, burst: list[Sent]) -> list[requests.Response]:
    """All at once (a barrier releases them), so that the frontend batches them together."""
    start = threading.Barrier(len(burst))

    def go(sent: Sent) -> requests.Response:
        start.wait()
        return send(client, model, sent)
    with ThreadPoolExecutor(len(burst)) as pool:
        return list(pool.map(go, burst))


def registered(samples: Samples, model: str) -> bool:
    return bool(samples.statuses(model)) and samples.total("HandlerBatchExamples_count", ModelName=model) > 0


@pytest.fixture
def registered_metrics(server, client):
    """TorchServe's auto-detection registers a metric on its first line and drops that line when two
    workers print a new metric at the same moment; one request at a time registers each first."""
    def register(model: str) -> None:
        burst = BURSTS[model]()
        for sent in (next(s for s in burst if s.status == 200), next(s for s in burst if s.status != 200)):
            assert send(client, model, sent).status_code == sent.status
        assert registered(settled_scrape(server, lambda samples: registered(samples, model)), model)
    return register


@pytest.mark.parametrize("model", sorted(BURSTS))
def test_rejections_by_status_and_examples_per_batch_count_a_concurrent_burst_exactly(
        server, client, registered_metrics, model):
    registered_metrics(model)
    burst = BURSTS[model]()
    rejected = Counter(str(sent.status) for sent in burst if sent.status != 200)
    examples = sum(sent.examples for sent in burst)
    requests_computed = sum(1 for sent in burst if sent.status == 200)

    before = settled_scrape(server)
    responses = send_together(client, model, burst)
    assert [r.status_code for r in responses] == [sent.status for sent in burst], [r.text[:200] for r in responses]

    def delta(samples: Samples, name: str) -> float:
        return samples.total(name, ModelName=model) - before.total(name, ModelName=model)
    after = settled_scrape(server, lambda samples: delta(samples, "HandlerBatchExamples_sum") >= examples
                           and samples.rejected_since(before, model) >= rejected)

    assert after.rejected_since(before, model) == rejected
    assert delta(after, "HandlerBatchExamples_sum") == examples
    batches = delta(after, "HandlerBatchExamples_count")
    assert 1 <= batches < requests_computed, "the burst's requests should share batches"
    assert delta(after, "HandlerModelSeconds_count") == batches
    assert delta(after, "HandlerModelSeconds_sum") > 0
    # Every batch is preprocessed, also one whose requests were all refused.
    assert delta(after, "HandlerPreprocessSeconds_count") >= batches
    assert delta(after, "HandlerPreprocessSeconds_sum") > 0


def test_torchserve_handler_time_is_published_for_every_model(server, client):
    for model, entry in CATALOG.items():
        sample = entry.heldout_requests(1)[0]
        assert client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type}).status_code == 200
    samples = settled_scrape(server, lambda s: all(s.total("HandlerTime", ModelName=m) > 0 for m in CATALOG))
    for model in CATALOG:
        assert samples.total("HandlerTime", ModelName=model, Level="Model") > 0, f"no HandlerTime for {model}"
