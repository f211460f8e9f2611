"""One v2 inference with KServe's Python SDK, run in the SDK's own virtualenv (`make kserve-client`:
kserve 0.21 pins pandas < 3 and psutil < 6, older than this project's), so this file imports only
the SDK and numpy. tests/integration/test_kserve_sdk.py writes the request spec, reads the answer.

    .venv-kserve/bin/python tests/clients/kserve_sdk.py SPEC.json   # prints one JSON answer
"""

import asyncio
import base64
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def infer(spec: dict) -> dict:
    elements = [base64.b64decode(element) for element in spec["elements"]]
    tensor = InferInput(name=spec["input"], shape=[len(elements)], datatype="BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_), binary_data=True)
    request = InferRequest(model_name=spec["model"], infer_inputs=[tensor], request_id="kserve-sdk",
                           parameters=spec.get("parameters"))
    token = [("authorization", f"Bearer {spec['token']}")] if spec.get("token") else []
    try:
        if spec["transport"] == "rest":
            client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
            response = await client.infer(spec["base_url"], request, model_name=spec["model"], headers=dict(token))
        else:
            client = InferenceGRPCClient(spec["target"], timeout=30, retries=0)
            response = await client.infer(request, headers=token)
        await client.close()
    except Exception as error:  # the test asserts on what the client raised
        return {"error": type(error).__name__, "message": str(error)}
    first = response.outputs[0].as_numpy().reshape(len(elements), -1)[:, 0]
    return {"id": response.id, "outputs": [output.name for output in response.outputs],
            "labels": [label.decode() if isinstance(label, bytes) else str(label) for label in first.tolist()]}


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        print(json.dumps(asyncio.run(infer(json.load(handle)))))
