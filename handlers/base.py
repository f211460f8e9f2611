"""The one TorchServe handler base every model's handler extends.

A subclass says only what differs, LitServe-style:
  decode_request(payload) -> one model-ready example (raise InputError for bad input)
  collate(examples)       -> the model's batched input (default: torch.stack)
  encode_responses(out, options) -> one JSON-able answer per example
and may override split_request() when one HTTP request carries several examples (or options in
its body), request_options() when a request carries options besides its payload (e.g.
ResNet's top-k header), and answer() when a request's answer is more than its examples'
answers (the generator's images as one JSON object or one PNG).

The Open Inference Protocol (KServe v2; handlers/oip.py) arrives at the same handle(), REST and
gRPC alike: a subclass declares its `signature` and answers `oip_outputs(answers, options)`, the
v2 tensors of its usual answers, and may read request parameters in `oip_options()`. A v2
request's examples go through the same decode_request, batch and encode_responses as any other.

What the base adds over TorchServe's BaseHandler: each request of a batch is validated on its
own, so a bad one gets its own 4xx JSON answer (via context.set_response_status) while its
neighbours are computed normally; limits come from the model's model-config.yaml `handler:`
section; torch runs the thread count set there (`torch_threads`; else OMP_NUM_THREADS, else torch's
default, one per core, as in stock TorchServe).
Sizing workers x threads to the cores is the entrypoint's job (deploy/serve_settings.py).

Metrics, per batch, labelled by ModelName: TorchServe's own HandlerTime (ms), and
HandlerRejectedRequests (by Status), HandlerPreprocessSeconds (decode + collate),
HandlerModelSeconds (forward pass) and HandlerBatchExamples (examples the model computed).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections import Counter
from http import HTTPStatus

import torch
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from handlers import oip
from handlers.transforms.errors import InputError

logger = logging.getLogger(__name__)


def error_body(status: int, message: str) -> dict:
    """The same shape TorchServe uses for its own errors."""
    return {"code": status, "type": HTTPStatus(status).phrase, "message": message}


class ServingHandler(BaseHandler):
    # Defaults for the model-config.yaml `handler:` keys this handler reads; subclasses extend.
    default_settings: dict = {"torch_threads": None, "max_examples_per_request": 32}
    signature: oip.Signature | None  # the model's v2 input and outputs (None: the model does not speak v2)
    oip_elements_are_binary = False  # a v2 JSON string element is base64 (images), not text

    def initialize(self, context):
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        self.settings = {**self.default_settings, **(yaml_config.get("handler") or {})}
        threads = self.settings["torch_threads"] or os.environ.get("OMP_NUM_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        super().initialize(context)  # device from gpu_id, loads the TorchScript file, eval()
        # Everything loaded so far (torch, the model, a vocabulary) leaves the garbage collector's
        # sight: a full collection over it stalls a batch by 0.1-0.2 s, the p99 of a busy worker.
        gc.collect()
        gc.freeze()
        logger.info("%s ready on %s with %d torch threads", type(self).__name__, self.device, torch.get_num_threads())

    # --- per-model hooks -------------------------------------------------------------------
    def split_request(self, payload, options: dict) -> tuple[list, bool]:
        """One request (and its request_options()) -> (examples, answer_is_a_list). Default: one
        example, one answer."""
        return [payload], False

    def decode_request(self, payload):
        raise NotImplementedError

    def collate(self, examples: list):
        return torch.stack(examples).to(self.device)

    def request_options(self, row: dict, idx: int) -> dict:
        """Options of request `idx` besides its payload, from its multipart form fields (`row`) or
        its headers (`request_header`); raise InputError for a bad one. Default: none."""
        return {}

    def request_header(self, idx: int, name: str):
        """A header of request `idx` whatever its case (TorchServe keeps the client's), or None."""
        name = name.lower()
        headers = self.context.get_all_request_header(idx) or {}
        return next((value for key, value in headers.items() if key.lower() == name), None)

    def encode_responses(self, outputs, options: list[dict]) -> list:
        """One answer per example; `options[i]` are the request options of example i."""
        raise NotImplementedError

    def answer(self, idx: int, answers: list, form):
        """Request `idx`'s answer from its examples' answers and split_request's second value.
        Default: the list, or the one answer."""
        return answers if form else answers[0]

    def oip_options(self, parameters: dict) -> dict:
        """A v2 request's options from its parameters; raise InputError for a bad one. Default: none."""
        return {}

    def examples_from_elements(self, elements: list, options: dict) -> list:
        """A v2 request's input elements -> what decode_request takes. Default: the elements."""
        return elements

    def oip_outputs(self, answers: list, options: dict) -> list[oip.Tensor]:
        """The v2 output tensors of one request's answers (those of encode_responses)."""
        raise NotImplementedError

    # --- the request path ------------------------------------------------------------------
    @staticmethod
    def request_payload(row: dict):
        """The body of one request: raw body, or the multipart field named `data`.

        TorchServe hands over bytearray for binary bodies, str for text/*, and an already
        parsed dict/list for application/json.
        """
        for key in ("data", "body"):
            if row.get(key) is not None:
                return row[key]
        raise InputError("empty body: send the input as the request body or a multipart field 'data'")

    def handle(self, data: list[dict], context) -> list:
        started = time.perf_counter()
        self.context = context
        answers: list = [None] * len(data)
        # spans: (request index, first example, end, answer form: a list? or the v2 request)
        examples, options, spans = [], [], []
        rejected: Counter[int] = Counter()  # HTTP status -> requests of this batch answered with it
        for idx, row in enumerate(data):
            context.set_response_content_type(idx, "application/json")
            v2_request = False
            try:
                payload = self.request_payload(row)
                headers = context.get_all_request_header(idx) or {}
                v2_request = self.signature is not None and (oip.is_infer_request(payload)
                                                             or oip.is_binary_infer_request(headers))
                if v2_request:
                    form = oip.parse_request(payload, headers, self.signature,
                                              self.settings["max_examples_per_request"], self.oip_elements_are_binary)
                    request_options = self.oip_options(form.parameters)
                    items = self.examples_from_elements(form.elements, request_options)
                else:
                    request_options = self.request_options(row, idx)
                    items, form = self.split_request(payload, request_options)
                decoded = [self.decode_request(item) for item in items]
            except InputError as error:
                answers[idx] = self._reject(context, idx, error.status, error.message, v2_request)
                rejected[error.status] += 1
                continue
            except Exception:  # a bug in decoding one request must not fail its neighbours
                logger.exception("decoding request %d failed", idx)
                answers[idx] = self._reject(context, idx, 500, "internal error while decoding the input", v2_request)
                rejected[500] += 1
                continue
            spans.append((idx, len(examples), len(examples) + len(decoded), form))
            examples.extend(decoded)
            options.extend([request_options] * len(decoded))

        batch = self.collate(examples) if examples else None
        preprocessed = time.perf_counter()
        model_seconds = 0.0
        if examples:
            outputs = self.forward(batch)
            model_seconds = time.perf_counter() - preprocessed
            encoded = self.encode_responses(outputs, options)
            for idx, start, end, form in spans:
                if isinstance(form, oip.InferRequest):
                    answers[idx] = oip.response(context.model_name, self.model_version,
                                                form, self.oip_outputs(encoded[start:end], options[start]))
                else:
                    answers[idx] = self.answer(idx, encoded[start:end], form)
        self._record_metrics(context, rejected, preprocessed - started, model_seconds, len(examples),
                             handler_ms=(time.perf_counter() - started) * 1000)
        return answers

    def predict(self, examples: list, options: list[dict] | None = None) -> list:
        """Answers for decoded examples: handle() without the per-request decoding and metrics."""
        return self.encode_responses(self.forward(self.collate(examples)), options or [{}] * len(examples))

    def forward(self, batch):
        # No TorchScript graph-executor optimisation: it profiles and re-specialises the graph for
        # each new batch shape, stalling those calls by up to 70 ms, and the int8/fp16 kernels gain
        # nothing from it (measured in README "Performance").
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            outputs = self.model(*batch) if isinstance(batch, tuple) else self.model(batch)
        return outputs.float().cpu()  # the copy also waits for a GPU's kernels, so model time ends here

    @staticmethod
    def _record_metrics(context, rejected: Counter, preprocess_seconds: float, model_seconds: float,
                        examples: int, handler_ms: float) -> None:
        metrics = context.metrics
        if metrics is None:  # a Context built outside a TorchServe worker (unit tests, in-process bench)
            return
        # Each line names only the batch's first request: by default it names all of them, a line that
        # grows with the batch for the worker to write and the frontend to parse, while Prometheus
        # drops the request id anyway.
        first = 0
        metrics.add_time("HandlerTime", round(handler_ms, 2), first, "ms")  # as BaseHandler.handle records it
        model = Dimension("ModelName", context.model_name)
        for status, count in sorted(rejected.items()):
            metrics.add_counter("HandlerRejectedRequests", count, first, [model, Dimension("Status", str(status))])
        # Seconds, because TorchServe's Prometheus histograms use the client's default buckets (5 ms .. 10 s).
        metrics.add_time("HandlerPreprocessSeconds", preprocess_seconds, first, "s", [model], MetricTypes.HISTOGRAM)
        if examples:
            metrics.add_time("HandlerModelSeconds", model_seconds, first, "s", [model], MetricTypes.HISTOGRAM)
            metrics.add_metric("HandlerBatchExamples", examples, "count", first, [model], MetricTypes.HISTOGRAM)

    @property
    def model_version(self) -> str:
        return str((self.manifest or {}).get("model", {}).get("modelVersion", ""))

    @staticmethod
    def _reject(context, idx: int, status: int, message: str, v2_request: bool = False) -> dict:
        context.set_response_status(status, HTTPStatus(status).phrase, idx)
        return oip.error_body(message) if v2_request else error_body(status, message)
