"""Where a request's time goes inside its handler: microseconds per example of each stage.

    decode       request bytes -> decoded input: the worker's JSON parsing (torchserve_row), the
                 handler's split_request(), and for images payload_to_image() (PNG/JPEG -> PIL)
    preprocess   decoded input -> the model's batch: decode_request() (image_to_tensor() for
                 images) per example, then collate()
    model        forward() on batches of `batch_size`
    postprocess  encode_responses()

Each stage calls the handler's own methods, in the order handle() calls them, on the model's
held-out requests, with one torch thread (what one worker of the shipped model-configs runs).
"""

from __future__ import annotations

import time
from pathlib import Path

from handlers.image_base import ImageHandler
from loadtest.handler_driver import load_handler, torchserve_row
from training.catalog import CATALOG
from training.heldout import Sample

STAGES = ("decode", "preprocess", "model", "postprocess")
DEFAULT_REQUESTS = 256


def run_stages(handler, samples: list[Sample], batch_size: int) -> tuple[list, dict[str, float]]:
    """The answers to `samples` (one per example, in order) and the seconds each stage took. The
    last batch holds what is left over."""
    if isinstance(handler, ImageHandler):
        decode_example, preprocess_example = handler.payload_to_image, handler.image_to_tensor
    else:
        decode_example, preprocess_example = (lambda item: item), handler.decode_request
    marks = [time.perf_counter()]
    decoded = [decode_example(item) for sample in samples
               for item in handler.split_request(handler.request_payload(torchserve_row(sample)), {})[0]]
    marks.append(time.perf_counter())
    examples = [preprocess_example(item) for item in decoded]
    chunks = [examples[start:start + batch_size] for start in range(0, len(examples), batch_size)]
    batches = [handler.collate(chunk) for chunk in chunks]
    marks.append(time.perf_counter())
    outputs = [handler.forward(batch) for batch in batches]
    marks.append(time.perf_counter())
    answers = [answer for output, chunk in zip(outputs, chunks)
               for answer in handler.encode_responses(output, [{}] * len(chunk))]
    marks.append(time.perf_counter())
    return answers, {stage: end - start for stage, start, end in zip(STAGES, marks, marks[1:])}


def stage_microseconds(name: str, model_dir: Path, batch_size: int, samples: list[Sample] | None = None,
                       repeats: int = 3) -> dict[str, float]:
    """Microseconds per example of each of STAGES for model `name` on `model_dir` (the exported
    artifacts), best of `repeats` runs over `samples` (default: its held-out requests). The first
    run also warms up TorchScript's profiling executor, which is why the best run counts."""
    handler, _ = load_handler(name, model_dir, batch_size, torch_threads=1)
    samples = CATALOG[name].heldout_requests(DEFAULT_REQUESTS) if samples is None else samples
    best = dict.fromkeys(STAGES, float("inf"))
    for _ in range(repeats):
        answers, seconds = run_stages(handler, samples, batch_size)
        best = {stage: min(best[stage], seconds[stage] / len(answers)) for stage in STAGES}
    return {stage: round(best[stage] * 1e6, 1) for stage in STAGES}
