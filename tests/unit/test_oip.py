"""The Open Inference Protocol (KServe v2) codec (handlers/oip.py) and the handlers' v2 path, called
directly with a real ts Context: same answers as /predictions, per-request errors in the v2 shape."""

import base64
import json
import struct

import pytest
from ts.context import RequestProcessor

from handlers import oip
from handlers.mnist import MnistHandler
from handlers.resnet import ResnetHandler
from handlers.sentiment import SentimentHandler
from handlers.transforms.errors import InputError
from tests.handler_context import initialized, statuses
from tests.heldout import fashion_target_test_images, mnist_test_digits, sentiment_test_tweets
from tests.images import png_of_pixels
from training.catalog import CATALOG

TEXT = oip.Signature(input=oip.Tensor("text", "BYTES", (-1,)), outputs=(oip.Tensor("label", "BYTES", (-1,)),))


def v2_json(elements: list, name: str = "image", content_type: str | None = None, **extra) -> dict:
    """A REST JSON request: bytes go base64, as a client must send binary data in JSON."""
    data = [base64.b64encode(e).decode() if isinstance(e, bytes) else e for e in elements]
    tensor = {"name": name, "datatype": "BYTES", "shape": [len(data)], "data": data}
    if content_type:
        tensor["parameters"] = {"content_type": content_type}
    return {"inputs": [tensor], **extra}


def v2_binary(elements: list[bytes], name: str = "image", **extra) -> tuple[bytes, dict]:
    """The binary tensor extension, as tritonclient sends it by default."""
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    header = json.dumps({"inputs": [{"name": name, "datatype": "BYTES", "shape": [len(elements)],
                                     "parameters": {"binary_data_size": len(raw)}}], **extra}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


# --- the codec --------------------------------------------------------------------------------

def test_the_three_forms_give_the_same_elements():
    elements, image = [b"\x89PNG one", b"\x00\xff two"], CATALOG["mnist"].handler_class().signature
    as_json = oip.parse_request(v2_json(elements), {}, image, 8, True)
    body, headers = v2_binary(elements)
    as_binary = oip.parse_request(bytearray(body), headers, image, 8, True)
    # gRPC: the frontend patch marks BYTES as base64, which even a text model then decodes
    as_grpc = oip.parse_request(v2_json(elements, name="text", content_type="base64"), {}, TEXT, 8, False)
    assert as_json.elements == as_binary.elements == as_grpc.elements == elements


def test_text_elements_stay_text_and_shape_n_by_1_is_n_examples():
    request = {"id": "r1", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1],
                                       "data": [["good"], ["bad"]]}], "parameters": {"x": 1}}
    parsed = oip.parse_request(request, {}, TEXT, 8, False)
    assert (parsed.id, parsed.elements, parsed.parameters, parsed.output_names) == ("r1", ["good", "bad"], {"x": 1}, None)


@pytest.mark.parametrize("request_body, status, words", [
    ({"inputs": []}, 400, "takes one input"),
    (v2_json(["a"], name="texts"), 400, "unknown input 'texts'"),
    ({"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, 400, "must be BYTES"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a"]}]}, 400, "shape [2] but 1"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 3], "data": ["a"]}]}, 400, "[n] or [n, 1]"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [0], "data": []}]}, 400, "no example"),
    (v2_json(["a"] * 9, name="text"), 413, "limit is 8"),
    (v2_json([1], name="text"), 400, "data[0] must be a string"),
    (v2_json(["%%%"], name="text", content_type="base64"), 400, "data[0] is not valid base64"),
    (v2_json(["a"], name="text", outputs=[{"name": "logits"}]), 400, "unknown output 'logits'"),
    (b'{"inputs": [', 400, "not valid JSON"),
])
def test_bad_requests_name_their_problem(request_body, status, words):
    with pytest.raises(InputError) as error:
        oip.parse_request(request_body, {}, TEXT, 8, False)
    assert error.value.status == status and words in error.value.message


def test_a_binary_request_whose_sizes_disagree_is_refused():
    body, headers = v2_binary([b"abc"], name="text")
    with pytest.raises(InputError, match="overruns|binary_data_size"):
        oip.parse_request(bytearray(body[:-1]), headers, TEXT, 8, False)
    with pytest.raises(InputError, match="has 3 bytes|but the body"):
        oip.parse_request(bytearray(b"{}"), {"Inference-Header-Content-Length": "99"}, TEXT, 8, False)


def test_metadata_and_answers_agree_for_every_model(artifacts):
    for name, entry in ((name, entry) for name, entry in CATALOG.items() if entry.speaks_v2):
        metadata = entry.handler_class().signature.metadata()
        assert [t["datatype"] for t in metadata["inputs"]] == ["BYTES"], name
        assert all(set(t) == {"name", "datatype", "shape"} for t in metadata["inputs"] + metadata["outputs"]), name


# --- the handlers' v2 path ----------------------------------------------------------------------

def test_mnist_v2_requests_batch_with_predictions_and_a_bad_one_fails_alone(artifacts):
    handler, context = initialized(MnistHandler, artifacts / "mnist", "mnist", batch=4)
    digits, _ = mnist_test_digits(4)
    pngs = [png_of_pixels(pixels) for pixels in digits]
    binary_body, binary_headers = v2_binary(pngs[2:4])
    rows = [{"body": v2_json(pngs[:2], id="a")}, {"body": bytearray(pngs[0])},
            {"body": v2_json(pngs[:1], name="images")}, {"body": bytearray(binary_body)}]
    context.request_processor = [RequestProcessor({}), RequestProcessor({}), RequestProcessor({}),
                                 RequestProcessor(binary_headers)]
    answers = handler.handle(rows, context)

    assert statuses(context, 4) == [200, 200, 400, 200]
    assert answers[2] == {"error": "unknown input 'images': this model's input is 'image'"}
    alone = [handler.handle([{"body": bytearray(png)}], context)[0] for png in pngs]
    label, probabilities = answers[0]["outputs"]
    assert answers[0]["id"] == "a" and answers[0]["model_name"] == "mnist"
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "INT64", [2])
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [2, 10])
    assert label["data"] == [answer["label"] for answer in alone[:2]] == [answers[1]["label"], alone[1]["label"]]
    assert probabilities["data"][:10] == pytest.approx(list(alone[0]["probabilities"].values()), abs=1e-5)
    assert answers[3]["outputs"][0]["data"] == [answer["label"] for answer in alone[2:]]


def test_mnist_answers_only_the_outputs_asked_for(artifacts):
    handler, context = initialized(MnistHandler, artifacts / "mnist", "mnist", batch=1)
    digits, _ = mnist_test_digits(1)
    answer = handler.handle([{"body": v2_json([png_of_pixels(digits[0])], outputs=[{"name": "label"}])}], context)[0]
    assert [output["name"] for output in answer["outputs"]] == ["label"]


def test_an_undecodable_image_in_a_v2_request_is_its_own_415(artifacts):
    handler, context = initialized(MnistHandler, artifacts / "mnist", "mnist", batch=2)
    digits, _ = mnist_test_digits(1)
    answers = handler.handle([{"body": v2_json([b"not an image"])}, {"body": v2_json([png_of_pixels(digits[0])])}],
                             context)
    assert statuses(context, 2) == [415, 200]
    assert set(answers[0]) == {"error"} and "image" in answers[0]["error"]


def test_resnet_top_k_is_a_request_parameter(artifacts):
    handler, context = initialized(ResnetHandler, artifacts / "resnet", "resnet", batch=3)
    images, _ = fashion_target_test_images(2)
    pngs = [png_of_pixels(pixels) for pixels in images]
    answers = handler.handle([{"body": v2_json(pngs, parameters={"topk": 2})}, {"body": v2_json(pngs[:1])},
                              {"body": v2_json(pngs[:1], parameters={"topk": 99})}], context)
    assert statuses(context, 3) == [200, 200, 400]
    labels, scores = answers[0]["outputs"]
    assert labels["shape"] == scores["shape"] == [2, 2] and labels["datatype"] == "BYTES"
    assert answers[1]["outputs"][0]["shape"] == [1, 3]  # the model-config's default_topk
    alone = handler.handle([{"body": bytearray(pngs[1])}], context)[0]
    assert labels["data"][2:] == [top["label"] for top in alone[:2]]
    assert scores["data"][2:] == pytest.approx([top["score"] for top in alone[:2]], abs=1e-6)
    assert "topk must be a whole number" in answers[2]["error"]


def test_sentiment_v2_texts_get_the_same_answers_and_limits_as_a_json_list(artifacts):
    handler, context = initialized(SentimentHandler, artifacts / "sentiment", "sentiment", batch=3,
                                   handler_settings=CATALOG["sentiment"].handler_settings())
    texts, _ = sentiment_test_tweets(3)
    too_long = "word " * 5000
    answers = handler.handle([{"body": v2_json(texts, name="text")},
                              {"body": v2_json([t.encode() for t in texts[:1]], name="text", content_type="base64")},
                              {"body": v2_json([too_long], name="text")}], context)
    assert statuses(context, 3)[:2] == [200, 200] and statuses(context, 3)[2] in (400, 413)
    as_list = handler.handle([{"body": texts}], context)[0]
    label, score = answers[0]["outputs"]
    assert label["data"] == [answer["label"] for answer in as_list]
    assert score["data"] == pytest.approx([answer["score"] for answer in as_list], abs=1e-6)
    assert answers[1]["outputs"][0]["data"] == label["data"][:1]
    assert "error" in answers[2]
