"""The Open Inference Protocol (KServe v2) as plain functions: a v2 inference request in, examples
out; answers in, a v2 response out. No TorchServe here, so another server could use them as is.

A request reaches the handler in one of three forms, all read by `parse_request`:
  - REST JSON, `POST /v2/models/<m>/infer`: a BYTES element is a string: text as is; an image (or
    anything, with the input parameter `"content_type": "base64"`) base64-encoded;
  - REST with the binary tensor extension (tritonclient's default): header
    `Inference-Header-Content-Length: N`, N bytes of JSON, then each input's raw bytes
    (`parameters.binary_data_size`); raw BYTES are a 4-byte little-endian length and the bytes,
    for each element;
  - gRPC ModelInfer: our frontend patch (deploy/frontend/OpenInference.java) hands over the JSON
    form with BYTES base64-encoded and marked `"content_type": "base64"`.
Our models take one BYTES input of shape [n] (or [n, 1]): n examples, answered in order. Output
tensors are always answered as JSON (tritonclient reads both; a binary answer would save little
on labels and scores).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, field

from handlers.transforms.errors import InputError

BINARY_HEADER = "inference-header-content-length"
BASE64 = "base64"


@dataclass(frozen=True)
class Tensor:
    """A v2 tensor: its name, datatype and shape (-1: any size), and data (flat, row-major) if any."""
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list = field(default_factory=list)

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def answer(self) -> dict:
        return {**self.metadata(), "data": self.data}


@dataclass(frozen=True)
class Signature:
    """What a model takes and answers, as its v2 metadata says (one input: our models take one)."""
    input: Tensor
    outputs: tuple[Tensor, ...]
    platform: str = "pytorch_torchscript"

    def metadata(self) -> dict:
        """The archive's oip_metadata.json, which the frontend serves as the model's metadata."""
        return {"platform": self.platform, "inputs": [self.input.metadata()],
                "outputs": [output.metadata() for output in self.outputs]}


@dataclass
class InferRequest:
    id: str | None
    elements: list            # the input's elements: bytes, or str for REST JSON text
    parameters: dict          # the request's parameters (e.g. topk)
    output_names: list[str] | None  # the outputs asked for; None: all


def is_infer_request(payload) -> bool:
    """A v2 inference request rather than a /predictions body? (A JSON object with "inputs", or
    bytes with the binary extension's header.) Only the body is looked at, so the check costs
    nothing for raw image and text bodies."""
    return isinstance(payload, dict) and "inputs" in payload


def is_binary_infer_request(headers: dict) -> bool:
    return any(key.lower() == BINARY_HEADER for key in headers)


def parse_request(payload, headers: dict, signature: Signature, max_examples: int,
                  binary_elements: bool) -> InferRequest:
    """One v2 request -> its examples. `binary_elements`: the model reads bytes (images), so a JSON
    string element is base64; otherwise (text) it is the text itself unless marked base64."""
    binary_tail, binary = b"", is_binary_infer_request(headers)
    if binary:
        header_length = _header_length(headers)
        if not isinstance(payload, (bytes, bytearray)) or header_length > len(payload):
            raise InputError(f"{BINARY_HEADER} is {header_length} but the body has "
                             f"{len(payload) if isinstance(payload, (bytes, bytearray)) else 'no raw'} bytes")
        binary_tail = bytes(payload[header_length:])
        payload = _json(bytes(payload[:header_length]))
    elif isinstance(payload, (bytes, bytearray, str)):
        payload = _json(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise InputError('expected a v2 inference request: {"inputs": [{"name", "datatype", "shape", "data"}]}')
    signature_input, inputs = signature.input, payload["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InputError(f"this model takes one input, {signature_input.name!r}; got {len(inputs)}")
    tensor = inputs[0]
    if tensor.get("name") != signature_input.name:
        raise InputError(f"unknown input {tensor.get('name')!r}: this model's input is {signature_input.name!r}")
    if tensor.get("datatype") != signature_input.datatype:
        raise InputError(f"input {signature_input.name!r} must be {signature_input.datatype}, "
                         f"got {tensor.get('datatype')!r}")
    count = _example_count(tensor.get("shape"), max_examples)
    parameters = tensor.get("parameters") or {}
    if binary and "binary_data_size" in parameters:  # (a gRPC client may leave it on an input it sent raw)
        elements = _split_raw_bytes(binary_tail, parameters["binary_data_size"])
    else:
        elements = _json_elements(tensor.get("data"), binary_elements or parameters.get("content_type") == BASE64)
    if len(elements) != count:
        raise InputError(f"input {signature_input.name!r} has shape {tensor['shape']} but {len(elements)} elements")
    request_parameters = payload.get("parameters") or {}
    if not isinstance(request_parameters, dict):
        raise InputError("parameters must be a JSON object")
    outputs = payload.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, dict) and "name" in o
                                                                    for o in outputs)):
        raise InputError('outputs must be a list of {"name": ...}')
    known = [output.name for output in signature.outputs]
    unknown = [o["name"] for o in outputs or [] if o["name"] not in known]
    if unknown:
        raise InputError(f"unknown output {unknown[0]!r}: this model's outputs are {known}")
    return InferRequest(id=payload.get("id"), elements=elements, parameters=request_parameters,
                        output_names=None if outputs is None else [o["name"] for o in outputs])


def response(model_name: str, model_version: str, request: InferRequest, outputs: list[Tensor]) -> dict:
    """The v2 answer: only the outputs asked for, if the request named some."""
    if request.output_names is not None:
        outputs = [output for output in outputs if output.name in request.output_names]
    answer = {"model_name": model_name, "model_version": model_version,
              "outputs": [output.answer() for output in outputs]}
    if request.id:
        answer["id"] = request.id
    return answer


def error_body(message: str) -> dict:
    """The protocol's error answer (tritonclient reads "error")."""
    return {"error": message}


def _header_length(headers: dict) -> int:
    raw = next(value for key, value in headers.items() if key.lower() == BINARY_HEADER)
    text = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
    if not text.strip().isdigit():
        raise InputError(f"{BINARY_HEADER} must be a number of bytes, got {text[:20]!r}")
    return int(text)


def _json(raw) -> dict:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"the v2 request is not valid JSON ({error})") from None
    except RecursionError:
        raise InputError("the v2 request's JSON is nested too deeply") from None


def _example_count(shape, max_examples: int) -> int:
    if not (isinstance(shape, list) and shape and all(isinstance(size, int) and size >= 0 for size in shape)
            and (len(shape) == 1 or shape[1:] == [1] * (len(shape) - 1))):
        raise InputError(f"input shape must be [n] or [n, 1] with n examples, got {shape!r}")
    count = shape[0]
    if count == 0:
        raise InputError("the input holds no example")
    if count > max_examples:
        raise InputError(f"{count} examples in one request; the limit is {max_examples}", status=413)
    return count


def _json_elements(data, is_base64: bool) -> list:
    if not isinstance(data, list):
        raise InputError("input data must be a list of BYTES elements (strings)")
    if data and all(isinstance(row, list) for row in data):
        data = [element for row in data for element in row]  # [[e0], [e1]] for shape [n, 1]
    elements = []
    for index, element in enumerate(data):
        if not isinstance(element, str):
            raise InputError(f"data[{index}] must be a string, got {type(element).__name__}")
        if is_base64:
            try:
                element = base64.b64decode(element, validate=True)
            except (binascii.Error, ValueError):
                raise InputError(f"data[{index}] is not valid base64") from None
        elements.append(element)
    return elements


def _split_raw_bytes(tail: bytes, size) -> list[bytes]:
    """The binary extension's BYTES tensor (the only input of the request: its bytes are the tail)."""
    if not isinstance(size, int) or size != len(tail):
        raise InputError(f"binary_data_size is {size!r} but {len(tail)} bytes follow the JSON header")
    elements, offset = [], 0
    while offset < len(tail):
        if offset + 4 > len(tail):
            raise InputError("raw BYTES input ends inside an element's length")
        (length,) = struct.unpack_from("<I", tail, offset)
        offset += 4
        if offset + length > len(tail):
            raise InputError(f"raw BYTES element of {length} bytes overruns the input")
        elements.append(tail[offset:offset + length])
        offset += length
    return elements
