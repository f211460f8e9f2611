"""The handler's metrics reach TorchServe's metrics cache as lines the frontend can parse."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import ts
from ts.context import RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from handlers.mnist import MnistHandler
from handlers.sentiment import SentimentHandler
from tests.handler_context import initialized, statuses
from tests.heldout import mnist_test_digits, sentiment_test_tweets
from tests.images import decompression_bomb_png, png_of_pixels

# The frontend's parser (WorkerLifeCycle.METRIC_PATTERN + Metric.PATTERN in TorchServe 0.12): a line
# it does not match is dropped without a trace.
FRONTEND_METRIC_LINE = re.compile(r"\[METRICS\]\s*([\w\s]+)\.([\w\s]+):([0-9\-,.e]+)\|#([^|]*)"
                                  r"(\|#type:([^|,]+))?\|#hostname:([^,]+),([^,]+)(,(.*))?")


@dataclass
class Emitted:
    name: str
    unit: str
    value: float
    labels: dict[str, str]
    type: str


@pytest.fixture
def emitted(caplog):
    """The metric lines the worker prints during the test, parsed as the frontend parses them."""
    caplog.set_level(logging.INFO, logger="ts.metrics")

    def read() -> list[Emitted]:
        lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("[METRICS]")]
        parsed = []
        for line in lines:
            match = FRONTEND_METRIC_LINE.fullmatch(line)
            assert match, f"the frontend would drop {line!r}"
            labels = dict(pair.split(":", 1) for pair in match[4].split(","))
            parsed.append(Emitted(match[1], match[2], float(match[3]), labels, match[6]))
        return parsed
    return read


def handle_in_worker(handler, context, rows: list[dict]) -> list:
    """handler.handle with context.metrics set up as model_service_worker and ts.service do it."""
    metrics = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    metrics.initialize_cache()
    metrics.model_name = context.model_name
    metrics.request_ids = {idx: f"request-{idx}" for idx in range(len(rows))}
    context.metrics = metrics
    context.request_processor = [RequestProcessor({}) for _ in rows]
    return handler.handle(rows, context)


def named(metrics: list[Emitted], name: str) -> list[Emitted]:
    return [metric for metric in metrics if metric.name == name]


@pytest.fixture(scope="module")
def mnist(artifacts):
    return initialized(MnistHandler, artifacts / "mnist", "mnist", batch=8)


def test_rejected_requests_are_counted_per_status_and_only_computed_examples_fill_the_batch(mnist, emitted):
    handler, context = mnist
    pixels, _ = mnist_test_digits()
    rows = [{"body": bytearray(png_of_pixels(pixels[0]))}, {"body": bytearray(b"not an image")},
            {"body": bytearray(png_of_pixels(pixels[1]))}, {}, {"body": bytearray(decompression_bomb_png())},
            {"body": {"json": "object"}}]
    handle_in_worker(handler, context, rows)
    assert statuses(context, len(rows)) == [200, 415, 200, 400, 413, 415]

    rejected = named(emitted(), "HandlerRejectedRequests")
    assert {metric.labels["Status"]: metric.value for metric in rejected} == {"400": 1, "413": 1, "415": 2}
    assert all(metric.type == "COUNTER" and metric.labels["ModelName"] == "mnist" for metric in rejected)
    [examples] = named(emitted(), "HandlerBatchExamples")
    assert (examples.value, examples.type, examples.labels["ModelName"]) == (2, "HISTOGRAM", "mnist")


def test_handler_time_is_recorded_as_torchserve_records_it_and_spans_preprocess_and_model(mnist, emitted):
    handler, context = mnist
    handle_in_worker(handler, context, [{"body": bytearray(png_of_pixels(mnist_test_digits()[0][0]))}])
    metrics = emitted()
    [handler_time] = named(metrics, "HandlerTime")
    assert (handler_time.unit, handler_time.type) == ("Milliseconds", "GAUGE")
    assert handler_time.labels == {"ModelName": "mnist", "Level": "Model"}
    [preprocess], [model] = named(metrics, "HandlerPreprocessSeconds"), named(metrics, "HandlerModelSeconds")
    assert (preprocess.unit, preprocess.type, model.unit, model.type) == ("Seconds", "HISTOGRAM") * 2
    assert preprocess.value > 0 and model.value > 0
    assert handler_time.value >= (preprocess.value + model.value) * 1000 - 0.01  # HandlerTime is rounded to 0.01 ms


def test_decode_time_and_model_time_are_measured_apart(mnist, emitted, monkeypatch):
    handler, context = mnist
    decode, model = handler.decode_request, handler.model

    def slow_decode(payload):
        time.sleep(0.1)
        return decode(payload)

    def slow_model(batch):
        time.sleep(0.3)
        return model(batch)
    monkeypatch.setattr(handler, "decode_request", slow_decode)
    monkeypatch.setattr(handler, "model", slow_model)
    pixels, _ = mnist_test_digits()
    handle_in_worker(handler, context, [{"body": bytearray(png_of_pixels(p))} for p in pixels[:2]])
    [preprocess] = named(emitted(), "HandlerPreprocessSeconds")
    [forward] = named(emitted(), "HandlerModelSeconds")
    assert 0.2 <= preprocess.value < 0.3 <= forward.value


def test_batch_of_only_rejected_requests_records_no_model_time_or_examples(mnist, emitted):
    handler, context = mnist
    handle_in_worker(handler, context, [{"body": bytearray(b"GIF89a")}, {}])
    metrics = emitted()
    assert {m.labels["Status"]: m.value for m in named(metrics, "HandlerRejectedRequests")} == {"400": 1, "415": 1}
    assert named(metrics, "HandlerModelSeconds") == [] and named(metrics, "HandlerBatchExamples") == []
    assert len(named(metrics, "HandlerPreprocessSeconds")) == 1 and len(named(metrics, "HandlerTime")) == 1


def test_unexpected_decode_failure_is_counted_as_500(mnist, emitted, monkeypatch):
    handler, context = mnist
    decode = handler.decode_request

    def decode_failing_on_empty_image(payload):
        if payload == bytearray(b"\x89PNG"):
            raise RuntimeError("a bug, not bad input")
        return decode(payload)
    monkeypatch.setattr(handler, "decode_request", decode_failing_on_empty_image)
    rows = [{"body": bytearray(b"\x89PNG")}, {"body": bytearray(png_of_pixels(mnist_test_digits()[0][0]))}]
    handle_in_worker(handler, context, rows)
    assert statuses(context, 2) == [500, 200]
    assert [(m.labels["Status"], m.value) for m in named(emitted(), "HandlerRejectedRequests")] == [("500", 1)]


def test_examples_per_batch_counts_texts_not_requests(artifacts, emitted):
    handler, context = initialized(SentimentHandler, artifacts / "sentiment", "sentiment", batch=4)
    texts = sentiment_test_tweets()[0]
    rows = [{"body": texts[:3]}, {"body": texts[3]}, {"body": []}]
    handle_in_worker(handler, context, rows)
    assert statuses(context, 3) == [200, 200, 400]
    [examples] = named(emitted(), "HandlerBatchExamples")
    assert (examples.value, examples.labels["ModelName"]) == (4, "sentiment")
