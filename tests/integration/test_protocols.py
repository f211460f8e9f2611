"""The Open Inference Protocol (REST and gRPC) and TorchServe's own gRPC API on a real TorchServe,
spoken by clients no one here wrote: tritonclient (HTTP and gRPC) and stubs generated now from the
.proto files inside TorchServe's jar. Each gets the held-out labels /predictions gives, clean
errors for hostile inputs, and a refusal without the key.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from deploy.client import read_keys
from deploy.frontend_patch import installed_jar
from loadtest import v2_predict
from training.catalog import CATALOG

V2_MODELS = [name for name, entry in CATALOG.items() if entry.speaks_v2]

SAMPLES = 8
TRITON = {"http": triton_http, "grpc": triton_grpc}


@pytest.fixture(scope="module")
def token(server) -> str:
    return read_keys(server.key_file)["inference"]


@pytest.fixture(scope="module", params=["http", "grpc"])
def triton(request, server, token):
    """(module, client, auth headers, url) of tritonclient over one transport."""
    module = TRITON[request.param]
    url = server.inference_url.removeprefix("http://") if request.param == "http" else server.grpc_target
    client = module.InferenceServerClient(url=url)
    yield module, client, {"authorization": f"Bearer {token}"}, url
    client.close()


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """Python modules generated from the .proto files TorchServe ships in its jar (and the one
    Google API file they import, which the jar carries too)."""
    out = tmp_path_factory.mktemp("protos")
    files = {"inference.proto": "proto/inference.proto", "open_inference_grpc.proto": "proto/open_inference_grpc.proto",
             "google/rpc/status.proto": "google/rpc/status.proto"}
    with zipfile.ZipFile(installed_jar()) as jar:
        for name, entry in files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(jar.read(entry))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *files], check=True)
    sys.path.insert(0, str(out))
    try:
        yield {name: importlib.import_module(name) for name in
               ("inference_pb2", "inference_pb2_grpc", "open_inference_grpc_pb2", "open_inference_grpc_pb2_grpc")}
    finally:
        sys.path.remove(str(out))


def heldout(name: str):
    samples = CATALOG[name].heldout_requests(SAMPLES)
    return samples, [CATALOG[name].v2_element(sample) for sample in samples]


def top_label(answer) -> str:
    """The most likely label of a /predictions answer (a dict, or ResNet's ranked list)."""
    return str(answer["label"] if isinstance(answer, dict) else answer[0]["label"])


def v2_top_labels(result, name: str, count: int) -> list[str]:
    """The first output's labels (the most likely first, for ResNet's [n, k]) as text."""
    labels = result.as_numpy(CATALOG[name].handler_class().signature.outputs[0].name).reshape(count, -1)[:, 0]
    return [label.decode() if isinstance(label, bytes) else str(label) for label in labels]


def triton_input(module, name: str, elements: list[bytes], input_name: str | None = None):
    tensor = module.InferInput(input_name or CATALOG[name].handler_class().signature.input.name,
                               [len(elements)], "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_))
    return tensor


# --- tritonclient, HTTP and gRPC -------------------------------------------------------------

@pytest.mark.parametrize("name", V2_MODELS)
def test_tritonclient_gets_the_labels_predictions_gives(triton, client, name):
    module, triton_client, headers, _ = triton
    samples, elements = heldout(name)
    expected = [top_label(client.predict(name, data=s.body, headers={"Content-Type": s.content_type}).json())
                for s in samples]
    result = triton_client.infer(name, [triton_input(module, name, elements)], headers=headers)
    assert v2_top_labels(result, name, len(samples)) == expected
    assert sum(label == s.expected for label, s in zip(expected, samples)) >= SAMPLES // 2  # real answers


def test_tritonclient_reads_readiness_and_the_real_metadata(triton):
    module, triton_client, headers, _ = triton
    assert triton_client.is_server_live(headers=headers) and triton_client.is_server_ready(headers=headers)
    for name, entry in ((name, CATALOG[name]) for name in V2_MODELS):
        assert triton_client.is_model_ready(name, headers=headers)
        metadata = (triton_client.get_model_metadata(name, headers=headers, as_json=True) if module is triton_grpc
                    else triton_client.get_model_metadata(name, headers=headers))
        expected = entry.handler_class().signature.metadata()
        assert [(t["name"], t["datatype"], [int(s) for s in t["shape"]]) for t in metadata["outputs"]] == \
            [(t["name"], t["datatype"], t["shape"]) for t in expected["outputs"]]
        assert [t["name"] for t in metadata["inputs"]] == [expected["inputs"][0]["name"]]


def test_resnet_top_k_is_a_request_parameter(triton):
    module, triton_client, headers, _ = triton
    _, elements = heldout("resnet")
    result = triton_client.infer("resnet", [triton_input(module, "resnet", elements[:2])], headers=headers,
                                 parameters={"topk": 5})
    assert result.as_numpy("labels").shape == result.as_numpy("scores").shape == (2, 5)
    scores = result.as_numpy("scores")
    assert np.all(np.diff(scores, axis=1) <= 0) and np.all(scores.sum(axis=1) <= 1 + 1e-5)


@pytest.mark.parametrize("name, elements, input_name, words", [
    ("mnist", [b"not an image at all"], None, "image"),
    ("resnet", [b"\x89PNG\r\n\x1a\n truncated"], None, "image"),
    ("mnist", [b"x"], "images", "unknown input 'images'"),
    ("sentiment", [b"\xff\xfe not UTF-8"], None, "UTF-8"),
    ("sentiment", [b"   "], None, "empty"),
    ("sentiment", [b"word " * 5000], None, "limit"),
    ("mnist", [b"x"] * 33, None, "limit is 32"),
])
def test_hostile_inputs_get_clean_errors_and_the_next_request_succeeds(triton, name, elements, input_name, words):
    module, triton_client, headers, _ = triton
    with pytest.raises(InferenceServerException) as refused:
        triton_client.infer(name, [triton_input(module, name, elements, input_name)], headers=headers)
    message = refused.value.message()
    assert words in message, message
    assert "Traceback" not in message and "an exception occurred in the client" not in message
    _, good = heldout(name)
    assert len(v2_top_labels(triton_client.infer(name, [triton_input(module, name, good[:1])], headers=headers),
                             name, 1)) == 1


def test_a_bad_request_batched_with_good_ones_fails_alone(triton, client):
    module, _, headers, url = triton
    samples, elements = heldout("mnist")
    expected = [top_label(client.predict("mnist", data=s.body, headers={"Content-Type": s.content_type}).json())
                for s in samples[:4]]
    bodies = [elements[0], b"broken", elements[1], elements[2], elements[3]]

    def send(element):  # the server's 150 ms batch window collects these into one batch
        own_client = module.InferenceServerClient(url=url)  # one per thread: the HTTP client is gevent's
        try:
            return v2_top_labels(own_client.infer("mnist", [triton_input(module, "mnist", [element])],
                                                  headers=headers), "mnist", 1)[0]
        except InferenceServerException as error:
            return error
        finally:
            own_client.close()

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(send, bodies))
    assert isinstance(answers[1], InferenceServerException)
    assert [answers[0], *answers[2:]] == expected


def test_without_the_key_every_call_is_refused(triton):
    module, triton_client, _, _ = triton
    _, elements = heldout("mnist")
    for headers in ({}, {"authorization": "Bearer wrong-key"}):
        with pytest.raises(InferenceServerException) as refused:
            triton_client.infer("mnist", [triton_input(module, "mnist", elements[:1])], headers=headers)
        status = str(refused.value.status())
        assert status in ({"400", "401"} if module is triton_http else {"StatusCode.PERMISSION_DENIED"}), status


def test_the_readme_tritonclient_script_classifies_every_model_over_rest_and_grpc(server, capsys):
    v2_predict.main(["--http", server.inference_url.removeprefix("http://"), "--grpc", server.grpc_target,
                     "--key-file", str(server.key_file), "--count", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(V2_MODELS) * 2 * 2 and all(" v2 REST " in line or " v2 gRPC " in line for line in lines)
    right = [line.split("true=")[1].split()[0] == line.split("answer=")[1] for line in lines]
    assert sum(right) >= len(lines) // 2, lines


# --- REST without a client library: readiness and errors as operators see them ------------------------

def test_v2_readiness_over_rest_needs_the_key_and_tells_the_truth(server, token):
    url = f"{server.inference_url}/v2/health/ready"
    assert requests.get(url, timeout=10).status_code in (400, 401)
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"ready": True})
    for path in ("/v2/models/nosuchmodel", "/v2/models/nosuchmodel/ready"):
        missing = requests.get(f"{server.inference_url}{path}", headers={"Authorization": f"Bearer {token}"},
                               timeout=10)
        assert missing.status_code == 404 and "nosuchmodel" in missing.json()["error"], path


# --- stubs generated from TorchServe's own .proto files -----------------------------------------

def test_torchserves_grpc_predictions_api_answers_every_model_and_refuses_bad_input(stubs, server, token, client):
    pb, pb_grpc = stubs["inference_pb2"], stubs["inference_pb2_grpc"]
    metadata = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(server.grpc_target) as channel:
        api = pb_grpc.InferenceAPIsServiceStub(channel)
        for name in V2_MODELS:
            samples, _ = heldout(name)
            for sample in samples[:3]:
                expected = client.predict(name, data=sample.body, headers={"Content-Type": sample.content_type})
                answer = api.Predictions(pb.PredictionsRequest(model_name=name, input={"data": sample.body}),
                                         metadata=metadata, timeout=30)
                assert top_label(json.loads(answer.prediction)) == top_label(expected.json())
        with pytest.raises(grpc.RpcError) as refused:
            api.Predictions(pb.PredictionsRequest(model_name="mnist", input={"data": b"not an image"}),
                            metadata=metadata, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "image" in refused.value.details()
        with pytest.raises(grpc.RpcError) as unauthorised:
            api.Predictions(pb.PredictionsRequest(model_name="mnist", input={"data": samples[0].body}), timeout=30)
        assert unauthorised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_torchserves_own_oip_service_name_and_typed_contents_work_too(stubs, server, token, client):
    pb, pb_grpc = stubs["open_inference_grpc_pb2"], stubs["open_inference_grpc_pb2_grpc"]
    samples, elements = heldout("sentiment")
    expected = [top_label(client.predict("sentiment", data=s.body, headers={"Content-Type": s.content_type}).json())
                for s in samples]
    request = pb.ModelInferRequest(model_name="sentiment", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=[len(elements)],
        contents=pb.InferTensorContents(bytes_contents=elements))])
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, metadata=[("authorization", f"Bearer {token}")], timeout=30)
    label = next(output for output in answer.outputs if output.name == "label")
    assert list(label.shape) == [len(elements)]
    assert deserialize_bytes_tensor(answer.raw_output_contents[0]).astype(str).tolist() == expected
